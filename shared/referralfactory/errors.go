package referralfactory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"
)

var (
	// ErrOutcomeUnknown reports that a call which changes state in Referral Factory (create a
	// user, issue or cancel a reward) may or may not have been applied: the request was sent but
	// no definitive answer came back (timeout, reset, 5xx, unreadable success body). Such calls
	// are never retried by the client; the caller must reconcile by reading RF's state.
	ErrOutcomeUnknown = errors.New("outcome unknown: the request may have been applied")

	// ErrInvalidInput reports a request the client refused to send because it cannot be valid.
	ErrInvalidInput = errors.New("invalid input")
)

// FieldError is one validation message about one request field, as RF documents it.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is a non-2xx answer from Referral Factory.
type Error struct {
	// StatusCode is the HTTP status of the response.
	StatusCode int
	// Code is RF's "code" field (usually equal to StatusCode; 0 when absent).
	Code int
	// Message is RF's "message", or a short excerpt of a non-JSON body.
	Message string
	// Fields holds per-field validation errors (422), keyed by field name.
	Fields map[string][]FieldError
	// Body is the raw response body (capped), with the API token redacted.
	Body []byte
	// Method and Path name the request (path relative to the API base, no query).
	Method, Path string
	// RetryAfter is the server's Retry-After, when it sent one.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "referral factory: %s %s: %d", e.Method, e.Path, e.StatusCode)
	if e.Message != "" {
		b.WriteString(" ")
		b.WriteString(e.Message)
	}
	if len(e.Fields) > 0 {
		names := make([]string, 0, len(e.Fields))
		for name := range e.Fields {
			names = append(names, name)
		}
		sort.Strings(names)
		parts := make([]string, 0, len(names))
		for _, name := range names {
			for _, fe := range e.Fields[name] {
				parts = append(parts, name+": "+fe.Message)
			}
		}
		b.WriteString(" (")
		b.WriteString(strings.Join(parts, "; "))
		b.WriteString(")")
	}
	return b.String()
}

// HasField reports whether the error carries a validation error for field, or for one of its
// sub-fields ("referrer" matches "referrer.value").
func (e *Error) HasField(field string) bool {
	for name := range e.Fields {
		if name == field || strings.HasPrefix(name, field+".") {
			return true
		}
	}
	return false
}

// errorBody is RF's documented error shape, decoded leniently: "errors" may map a field to
// objects {field,message} (documented), to plain strings (Laravel's default), or to one string.
type errorBody struct {
	Code    json.Number     `json:"code"`
	Message string          `json:"message"`
	Errors  json.RawMessage `json:"errors"`
}

func newError(method, path string, status int, header http.Header, body []byte) *Error {
	e := &Error{StatusCode: status, Method: method, Path: path, Body: body}
	e.RetryAfter = parseRetryAfter(header.Get("Retry-After"), time.Now())
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err == nil {
		if n, err := eb.Code.Int64(); err == nil {
			e.Code = int(n)
		}
		e.Message = eb.Message
		e.Fields = decodeFieldErrors(eb.Errors)
	} else {
		e.Message = excerpt(body)
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

func decodeFieldErrors(raw json.RawMessage) map[string][]FieldError {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var byField map[string]json.RawMessage
	if err := json.Unmarshal(raw, &byField); err != nil {
		return nil
	}
	out := make(map[string][]FieldError, len(byField))
	for name, v := range byField {
		var objs []FieldError
		if err := json.Unmarshal(v, &objs); err == nil {
			for i := range objs {
				if objs[i].Field == "" {
					objs[i].Field = name
				}
			}
			out[name] = objs
			continue
		}
		var strs []string
		if err := json.Unmarshal(v, &strs); err == nil {
			for _, s := range strs {
				out[name] = append(out[name], FieldError{Field: name, Message: s})
			}
			continue
		}
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			out[name] = []FieldError{{Field: name, Message: s}}
		}
	}
	return out
}

// excerpt turns a non-JSON body (an HTML error page from a proxy, say) into a short, single-line
// message.
func excerpt(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	const max = 200
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// IsNotFound reports whether err is RF's 404.
func IsNotFound(err error) bool { return statusOf(err) == http.StatusNotFound }

// IsRateLimited reports whether err is RF's 429.
func IsRateLimited(err error) bool { return statusOf(err) == http.StatusTooManyRequests }

// IsUnauthorized reports whether RF rejected the token (401): it was rotated or is wrong.
func IsUnauthorized(err error) bool { return statusOf(err) == http.StatusUnauthorized }

// IsValidation reports whether err is RF's 422 validation error.
func IsValidation(err error) bool { return statusOf(err) == http.StatusUnprocessableEntity }

// IsOutcomeUnknown reports whether a state-changing call may have been applied.
func IsOutcomeUnknown(err error) bool { return errors.Is(err, ErrOutcomeUnknown) }

// IsRetryable reports whether err is a transient failure that a plain retry may fix: a network
// error or timeout, RF's 429 or 5xx on a call that is safe to repeat. It is false for
// ErrOutcomeUnknown (check IsOutcomeUnknown: the call may have been applied, so reconcile by
// reading RF's state before calling again), for a canceled context, and for certificate errors.
// Callers that answer a webhook map retryable and outcome-unknown failures alike to 503.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, context.Canceled) || isCertificateError(err) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if s := statusOf(err); s != 0 {
		return s == http.StatusTooManyRequests || s >= 500
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// isCertificateError reports a TLS verification failure: retrying cannot fix it.
func isCertificateError(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}
