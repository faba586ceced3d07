package rfsim_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

// today is the simulated date every test starts on.
const today = "2026-03-01"

func fixedClock() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

// newSim starts an empty simulator on the fixed clock.
func newSim(t *testing.T, opts ...rfsim.Option) *rfsimtest.Sim {
	t.Helper()
	return rfsimtest.New(t, append([]rfsim.Option{rfsim.WithClock(fixedClock)}, opts...)...)
}

// demo starts a simulator loaded with the demo seed.
func demo(t *testing.T, opts ...rfsim.Option) *rfsimtest.Sim {
	t.Helper()
	s := newSim(t, opts...)
	s.SeedDemo(t)
	return s
}

// data decodes {"data": T}.
func data[T any](t *testing.T, r *rfsimtest.Response) T {
	t.Helper()
	var env struct{ Data T }
	r.Decode(t, &env)
	return env.Data
}

func wantStatus(t *testing.T, r *rfsimtest.Response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
}

// wantJSON compares a body with the expected JSON, ignoring formatting.
func wantJSON(t *testing.T, r *rfsimtest.Response, want string) {
	t.Helper()
	var got, exp any
	r.Decode(t, &got)
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatalf("bad expectation %s: %v", want, err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Fatalf("body %s\nwant %s", r.Body, want)
	}
}

// wantInvalid checks a 422 in RF's shape with an error on each field (and on no other).
func wantInvalid(t *testing.T, r *rfsimtest.Response, fields ...string) map[string][]rfsim.FieldError {
	t.Helper()
	wantStatus(t, r, http.StatusUnprocessableEntity)
	var e rfsim.Error
	r.Decode(t, &e)
	if e.Code != 422 || e.Message != "Validation errors in your request" {
		t.Fatalf("422 body %s", r.Body)
	}
	if len(e.Errors) != len(fields) {
		t.Fatalf("errors on %v, want on %v; body %s", keys(e.Errors), fields, r.Body)
	}
	for _, f := range fields {
		fes := e.Errors[f]
		if len(fes) == 0 || fes[0].Field != f || fes[0].Message == "" {
			t.Fatalf("no error on %q; body %s", f, r.Body)
		}
	}
	return e.Errors
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func ptrTo[T any](v T) *T { return &v }

// receiver is an httptest webhook receiver that records what it gets and answers with the
// statuses queued in fail (then 200).
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []received
	fail []int
}

type received struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   string
}

func newReceiver(t *testing.T, fail ...int) *receiver {
	t.Helper()
	rc := &receiver{fail: fail}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), string(b)})
		status := http.StatusOK
		if len(rc.fail) > 0 {
			status, rc.fail = rc.fail[0], rc.fail[1:]
		}
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// payloads decodes every JSON body received.
func (rc *receiver) payloads(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range rc.requests() {
		var m map[string]any
		if err := json.Unmarshal([]byte(r.Body), &m); err != nil {
			t.Fatalf("webhook body %q: %v", r.Body, err)
		}
		out = append(out, m)
	}
	return out
}

// waitFor polls cond until it holds, failing the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// idleWithin fails unless WaitIdle returns within d.
func idleWithin(t *testing.T, s *rfsimtest.Sim, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	start := time.Now()
	if err := s.Server.WaitIdle(ctx); err != nil {
		t.Fatalf("WaitIdle still blocked after %v: %v", time.Since(start), err)
	}
}

// holdingReceiver is a webhook receiver that never answers: each request is held until the
// sender gives up (or the test ends). hits counts the requests that arrived.
type holdingReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	hits int
}

func newHoldingReceiver(t *testing.T) *holdingReceiver {
	t.Helper()
	rc := &holdingReceiver{}
	release := make(chan struct{})
	rc.Server = httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		rc.hits++
		rc.mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() {
		close(release)
		rc.Close()
	})
	return rc
}

func (rc *holdingReceiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.hits
}
