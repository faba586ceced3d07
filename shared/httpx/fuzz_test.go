package httpx

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

// FuzzFunctionURL sends arbitrary bodies, plain or flagged base64, with an arbitrary header, to
// the Function URL adapter: the handler sees exactly the decoded body, never more than MaxBody,
// and header names lower-cased; a body it does not see is answered 400 (bad base64) or 413
// (too large); every answer is the contract's JSON.
func FuzzFunctionURL(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "events", "*", "*.*"))
	if len(files) == 0 {
		f.Fatal("no samples in events/")
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b), false, "Stripe-Signature", "t=1,v1=00")
		f.Add(base64.StdEncoding.EncodeToString(b), true, "X-Webhook-Secret", "s")
	}
	f.Add("", true, "", "")
	f.Add("%%%", true, "Content-Type", "application/json")
	f.Add("eyJ9\n", true, "x", "y")
	f.Add("YQ", true, "A", "b")       // unpadded
	f.Add("YQ==YQ==", true, "A", "b") // padding inside
	f.Fuzz(func(t *testing.T, body string, isBase64 bool, key, value string) {
		h := &echo{out: Outcome{Kind: Processed, Reason: "ok"}}
		ev := events.LambdaFunctionURLRequest{Body: body, IsBase64Encoded: isBase64, Headers: map[string]string{key: value}, RawPath: "/p"}
		resp, err := FunctionURL(h)(context.Background(), ev)
		if err != nil || !json.Valid([]byte(resp.Body)) {
			t.Fatalf("%d %q %v", resp.StatusCode, resp.Body, err)
		}
		want, decodeErr := []byte(body), error(nil)
		if isBase64 {
			want, decodeErr = base64.StdEncoding.DecodeString(body)
		}
		switch {
		case decodeErr != nil && len(body) <= base64.StdEncoding.EncodedLen(MaxBody):
			if resp.StatusCode != 400 || h.seen != nil {
				t.Fatalf("bad base64: %d, handler called %v", resp.StatusCode, h.seen != nil)
			}
		case len(want) > MaxBody || len(body) > base64.StdEncoding.EncodedLen(MaxBody) && isBase64:
			if resp.StatusCode != 413 || h.seen != nil {
				t.Fatalf("too large: %d, handler called %v", resp.StatusCode, h.seen != nil)
			}
		default:
			if resp.StatusCode != 200 || h.seen == nil {
				t.Fatalf("handler not called: %d %s", resp.StatusCode, resp.Body)
			}
			if !bytes.Equal(h.seen.Body, want) {
				t.Fatalf("handler saw %q, want %q", h.seen.Body, want)
			}
			if got, ok := h.seen.Header[strings.ToLower(key)]; !ok || got != value {
				t.Fatalf("header %q: %q %v", key, got, ok)
			}
		}
		if h.seen != nil && len(h.seen.Body) > MaxBody {
			t.Fatalf("handler saw %d bytes", len(h.seen.Body))
		}
	})
}

// TestBodyHandlingIsBounded: the adapter's own allocation for a body at the limit is a small
// multiple of it (the copy out of the event, and the decoded bytes for base64), and a body over
// the limit costs nothing, base64 or not: it is refused before any copy or decoding.
func TestBodyHandlingIsBounded(t *testing.T) {
	h := HandlerFunc(func(context.Context, Request) Outcome { return Outcome{Kind: Processed} })
	plain := strings.Repeat("x", MaxBody)
	cases := []struct {
		name  string
		ev    events.LambdaFunctionURLRequest
		limit uint64
	}{
		{"1 MiB plain", events.LambdaFunctionURLRequest{Body: plain}, 2 * MaxBody},
		{"1 MiB base64", events.LambdaFunctionURLRequest{Body: base64.StdEncoding.EncodeToString([]byte(plain)), IsBase64Encoded: true}, 3 * MaxBody},
		{"8 MiB plain", events.LambdaFunctionURLRequest{Body: strings.Repeat(plain, 8)}, 64 << 10},
		{"8 MiB base64", events.LambdaFunctionURLRequest{Body: strings.Repeat("eHh4", 2*MaxBody), IsBase64Encoded: true}, 64 << 10},
	}
	for _, c := range cases {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		resp, _ := FunctionURL(h)(context.Background(), c.ev)
		runtime.ReadMemStats(&after)
		if allocated := after.TotalAlloc - before.TotalAlloc; allocated > c.limit {
			t.Errorf("%s: %d bytes allocated, over %d (status %d)", c.name, allocated, c.limit, resp.StatusCode)
		}
	}
}
