package observe

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

// LogOptions configure NewLogger.
type LogOptions struct {
	// Function names the function ("stripe-webhook", ...) on every record.
	Function string
	// Level is the lowest level written; see Level for AWS_LAMBDA_LOG_LEVEL.
	Level slog.Leveler
	// Secrets are replaced by [REDACTED] wherever they appear in a message or a string
	// attribute: a secret that slips into an error message still never reaches the logs.
	Secrets []string
}

// NewLogger returns refbridge's JSON logger writing to w. Every record carries the function
// and, inside a Lambda invocation, its request id (request_id); emails in messages and string
// attributes are masked (e***@example.com) and the configured secrets redacted.
func NewLogger(w io.Writer, o LogOptions) *slog.Logger {
	r := newRedactor(o.Secrets)
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: o.Level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindString {
				a.Value = slog.StringValue(r.redact(a.Value.String()))
			}
			return a
		},
	})
	var log *slog.Logger = slog.New(requestIDHandler{h})
	if o.Function != "" {
		log = log.With("function", o.Function)
	}
	return log
}

// Level reads AWS_LAMBDA_LOG_LEVEL, which Lambda sets from the function's LoggingConfig
// (TRACE, DEBUG, INFO, WARN, ERROR, FATAL); anything else is INFO.
func Level(v string) slog.Level {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "TRACE", "DEBUG":
		return slog.LevelDebug
	case "WARN", "WARNING":
		return slog.LevelWarn
	case "ERROR", "FATAL":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// requestIDHandler adds the Lambda request id of the record's context.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, rec slog.Record) error {
	if lc, ok := lambdacontext.FromContext(ctx); ok && lc.AwsRequestID != "" {
		rec.AddAttrs(slog.String("request_id", lc.AwsRequestID))
	}
	return h.Handler.Handle(ctx, rec)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// emailPattern finds addresses in free text (an RF error echoing a payload, say), in any script:
// an ASCII-only pattern would leave "jörg@exämple.com" whole and "jörg@example.com" as
// "jö" + a masked "r***@example.com". Compiled at its first use, by a string holding an "@":
// its Unicode classes cost a quarter of a millisecond, which a cold start need not pay.
var emailPattern = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}\-]+(\.[\p{L}\p{N}\-]+)+`)
})

type redactor struct{ secrets *strings.Replacer }

func newRedactor(secrets []string) redactor {
	var pairs []string
	for _, s := range secrets {
		if len(strings.TrimSpace(s)) >= 4 { // a tiny "secret" would redact ordinary words
			pairs = append(pairs, s, "[REDACTED]")
		}
	}
	r := redactor{}
	if len(pairs) > 0 {
		r.secrets = strings.NewReplacer(pairs...)
	}
	return r
}

func (r redactor) redact(s string) string {
	if r.secrets != nil {
		s = r.secrets.Replace(s)
	}
	if strings.Contains(s, "@") {
		s = emailPattern().ReplaceAllStringFunc(s, MaskEmail)
	}
	return s
}

// MaskEmail keeps an address's first character and domain: erin@example.com → e***@example.com.
func MaskEmail(email string) string {
	local, domain, ok := strings.Cut(email, "@")
	if !ok || local == "" {
		return "***"
	}
	first, _ := utf8.DecodeRuneInString(local) // whole, so the line stays valid UTF-8
	return string(first) + "***@" + domain
}
