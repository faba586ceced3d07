package httpx

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

// echo records what it saw and answers with a fixed outcome.
type echo struct {
	out  Outcome
	seen *Request
}

func (e *echo) Handle(_ context.Context, r Request) Outcome {
	e.seen = &r
	return e.out
}

func TestOutcomeTable(t *testing.T) {
	tests := []struct {
		out        Outcome
		wantStatus int
		wantBody   string
	}{
		{Outcome{Processed, "qualified lead 7"}, 200, `{"status":"processed","reason":"qualified lead 7"}`},
		{Outcome{Ignored, "not referred"}, 200, `{"status":"ignored","reason":"not referred"}`},
		{Outcome{Duplicate, ""}, 200, `{"status":"duplicate"}`},
		{Outcome{Invalid, "bad signature"}, 400, `{"error":"bad signature"}`},
		{Outcome{Unauthorized, "secret mismatch for header X"}, 401, `{"error":"unauthorized"}`},
		{Outcome{NotFound, "unknown kind"}, 404, `{"error":"unknown kind"}`},
		{Outcome{TooLarge, "body over 1 MiB"}, 413, `{"error":"body over 1 MiB"}`},
		{Outcome{Transient, "referral factory unavailable"}, 503, `{"error":"referral factory unavailable"}`},
	}
	for _, tt := range tests {
		if got := tt.out.Kind.Status(); got != tt.wantStatus {
			t.Errorf("%v: status %d, want %d", tt.out, got, tt.wantStatus)
		}
		if got := string(tt.out.Body()); got != tt.wantBody {
			t.Errorf("%v: body %s, want %s", tt.out, got, tt.wantBody)
		}
	}
}

func TestFunctionURL(t *testing.T) {
	big := strings.Repeat("x", MaxBody+1)
	tests := []struct {
		name       string
		ev         events.LambdaFunctionURLRequest
		wantStatus int
		wantBody   string // what the handler saw; "-" = handler not called
	}{
		{"plain body", events.LambdaFunctionURLRequest{Body: `{"a":1}`}, 200, `{"a":1}`},
		{"base64 body", events.LambdaFunctionURLRequest{Body: base64.StdEncoding.EncodeToString([]byte(`{"b":2}`)), IsBase64Encoded: true}, 200, `{"b":2}`},
		{"bad base64", events.LambdaFunctionURLRequest{Body: "%%%", IsBase64Encoded: true}, 400, "-"},
		{"too large", events.LambdaFunctionURLRequest{Body: big}, 413, "-"},
		{"too large base64", events.LambdaFunctionURLRequest{Body: base64.StdEncoding.EncodeToString([]byte(big)), IsBase64Encoded: true}, 413, "-"},
		{"exactly 1 MiB", events.LambdaFunctionURLRequest{Body: big[:MaxBody]}, 200, big[:MaxBody]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &echo{out: Outcome{Kind: Processed}}
			tt.ev.Headers = map[string]string{"Stripe-Signature": "t=1,v1=x"}
			tt.ev.RawPath = "/stripe/webhook"
			tt.ev.RequestContext.HTTP.Method = "POST"
			resp, err := FunctionURL(h)(context.Background(), tt.ev)
			if err != nil || resp.StatusCode != tt.wantStatus || resp.Headers["Content-Type"] != "application/json" || !json.Valid([]byte(resp.Body)) {
				t.Fatalf("resp %d %q %v", resp.StatusCode, resp.Body, err)
			}
			if tt.wantBody == "-" {
				if h.seen != nil {
					t.Fatal("handler was called")
				}
				return
			}
			if h.seen == nil || string(h.seen.Body) != tt.wantBody || h.seen.Header["stripe-signature"] != "t=1,v1=x" ||
				h.seen.Path != "/stripe/webhook" || h.seen.Method != "POST" {
				t.Fatalf("handler saw %+v", h.seen)
			}
		})
	}
}

func TestHTTP(t *testing.T) {
	h := &echo{out: Outcome{Kind: Transient, Reason: "in progress"}}
	srv := httptest.NewServer(HTTP(h))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/rf/webhook/lead-created", "application/json", strings.NewReader(`{"id":1}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || string(b) != `{"error":"in progress"}` || h.seen.Path != "/rf/webhook/lead-created" || string(h.seen.Body) != `{"id":1}` {
		t.Fatalf("%d %s %+v", resp.StatusCode, b, h.seen)
	}
	h.seen = nil
	resp, err = http.Post(srv.URL+"/x", "application/json", strings.NewReader(strings.Repeat("y", MaxBody+10)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 || h.seen != nil {
		t.Fatalf("oversize: %d, handler called %v", resp.StatusCode, h.seen != nil)
	}
}
