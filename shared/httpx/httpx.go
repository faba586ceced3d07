// Package httpx is the transport edge of refbridge's two webhook functions: it turns a Lambda
// Function URL event (or a plain net/http request, for the local server) into a Request, runs a
// Handler, and turns its Outcome into the HTTP answer. The mapping from outcomes to status codes
// lives here, in one table, so both functions and the local server answer alike.
package httpx

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// MaxBody is the largest body accepted (1 MiB); larger ones get 413.
const MaxBody = 1 << 20

// Kind classifies what happened to a request.
type Kind int

// The outcomes of the HTTP contract (PRODUCT.md).
const (
	Processed    Kind = iota // done
	Ignored                  // valid but irrelevant: other type, other mode, not referred, below threshold
	Duplicate                // seen before; the stored answer was replayed
	Invalid                  // bad signature, expired timestamp, malformed body: retrying cannot help
	Unauthorized             // missing or wrong shared secret
	NotFound                 // no such route
	TooLarge                 // body over MaxBody
	Transient                // RF 429/5xx/timeout, DynamoDB error, same event in progress: retry later
)

// status is the one outcome → status table.
var status = map[Kind]int{
	Processed:    http.StatusOK,
	Ignored:      http.StatusOK,
	Duplicate:    http.StatusOK,
	Invalid:      http.StatusBadRequest,
	Unauthorized: http.StatusUnauthorized,
	NotFound:     http.StatusNotFound,
	TooLarge:     http.StatusRequestEntityTooLarge,
	Transient:    http.StatusServiceUnavailable,
}

// Status returns the HTTP status for k.
func (k Kind) Status() int { return status[k] }

var names = map[Kind]string{Processed: "processed", Ignored: "ignored", Duplicate: "duplicate"}

// Outcome is a handler's answer. Reason is shown to the caller: it must never hold internal
// details, secrets or personal data (log those instead).
type Outcome struct {
	Kind   Kind
	Reason string
}

// Body renders the outcome as the contract's JSON: {"status","reason"} for 2xx, {"error"}
// otherwise.
func (o Outcome) Body() []byte {
	var v any
	if o.Kind.Status() < 300 {
		v = struct {
			Status string `json:"status"`
			Reason string `json:"reason,omitempty"`
		}{names[o.Kind], o.Reason}
	} else {
		msg := o.Reason
		if o.Kind == Unauthorized {
			msg = "unauthorized" // no detail about which check failed
		}
		v = struct {
			Error string `json:"error"`
		}{msg}
	}
	b, _ := json.Marshal(v)
	return b
}

// Request is what a handler sees: the decoded body and lower-cased header names.
type Request struct {
	Method string
	Path   string
	Header map[string]string
	Body   []byte
}

// Handler handles one webhook delivery.
type Handler interface {
	Handle(ctx context.Context, r Request) Outcome
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, r Request) Outcome

// Handle implements Handler.
func (f HandlerFunc) Handle(ctx context.Context, r Request) Outcome { return f(ctx, r) }

// FunctionURL adapts h to a Lambda Function URL (or API Gateway HTTP API v2) handler.
func FunctionURL(h Handler) func(context.Context, events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
	return func(ctx context.Context, ev events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
		out := serveEvent(ctx, h, ev)
		return events.LambdaFunctionURLResponse{
			StatusCode: out.Kind.Status(),
			Headers:    map[string]string{"Content-Type": "application/json"},
			Body:       string(out.Body()),
		}, nil
	}
}

func serveEvent(ctx context.Context, h Handler, ev events.LambdaFunctionURLRequest) Outcome {
	// Oversize is refused before the body is copied or decoded, so it costs nothing.
	var body []byte
	if ev.IsBase64Encoded {
		// A base64 body is 4/3 of the decoded one.
		if len(ev.Body) > base64.StdEncoding.EncodedLen(MaxBody) {
			return Outcome{Kind: TooLarge, Reason: "body over 1 MiB"}
		}
		var err error
		if body, err = base64.StdEncoding.DecodeString(ev.Body); err != nil {
			return Outcome{Kind: Invalid, Reason: "body is not valid base64"}
		}
	} else {
		if len(ev.Body) > MaxBody {
			return Outcome{Kind: TooLarge, Reason: "body over 1 MiB"}
		}
		body = []byte(ev.Body)
	}
	if len(body) > MaxBody {
		return Outcome{Kind: TooLarge, Reason: "body over 1 MiB"}
	}
	hdr := make(map[string]string, len(ev.Headers))
	for k, v := range ev.Headers {
		hdr[strings.ToLower(k)] = v
	}
	return h.Handle(ctx, Request{Method: ev.RequestContext.HTTP.Method, Path: ev.RawPath, Header: hdr, Body: body})
}

// HTTP adapts h to net/http, for the local server; the request's path is passed through.
func HTTP(h Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := serveHTTP(h, r)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(out.Kind.Status())
		_, _ = w.Write(out.Body())
	})
}

func serveHTTP(h Handler, r *http.Request) Outcome {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return Outcome{Kind: TooLarge, Reason: "body over 1 MiB"}
	case err != nil:
		return Outcome{Kind: Invalid, Reason: "could not read the body"}
	}
	hdr := make(map[string]string, len(r.Header))
	for k, v := range r.Header {
		hdr[strings.ToLower(k)] = strings.Join(v, ",")
	}
	return h.Handle(r.Context(), Request{Method: r.Method, Path: r.URL.Path, Header: hdr, Body: body})
}
