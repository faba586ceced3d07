package referralfactory

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hangUp closes the connection without answering, after the server has read the request: the
// client sent it, so for a state-changing call the outcome is unknown.
func hangUp(t *testing.T, w http.ResponseWriter) {
	t.Helper()
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Fatalf("hijack: %v", err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// script answers the n-th request (1-based) with steps[n-1], repeating the last step.
func script(t *testing.T, steps ...func(w http.ResponseWriter)) (*fakeRF, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	f := newFakeRF(t, func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		steps[min(i, len(steps)-1)](w)
	})
	return f, &n
}

func status(code int, headers ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		body := `{"code":` + strconv.Itoa(code) + `,"message":"` + http.StatusText(code) + `"}`
		if code < 300 {
			body = `{"data":{"id":5,"status":"Issued","type":"person_invited"}}`
		}
		writeJSON(w, code, body)
	}
}

func TestRetries(t *testing.T) {
	ctx := context.Background()
	get := func(c *Client) error { _, err := c.GetUser(ctx, "abc"); return err }
	qualify := func(c *Client) error { _, err := c.Qualify(ctx, UserRef{Code: "abc"}); return err }
	issue := func(c *Client) error { _, err := c.IssueReward(ctx, 5); return err }
	create := func(c *Client) error {
		_, err := c.CreateUser(ctx, CreateUserInput{CampaignID: 1, FirstName: "A", Email: "a@b.c", Referrer: ReferrerByCode("R")})
		return err
	}
	tests := []struct {
		name         string
		steps        []func(http.ResponseWriter)
		call         func(*Client) error
		wantRequests int32
		wantErr      func(error) bool
		wantSleeps   []time.Duration // exact sleeps; nil = don't check values
	}{
		{name: "read retried through 5xx", steps: []func(http.ResponseWriter){status(503), status(502), status(200)},
			call: get, wantRequests: 3, wantErr: func(err error) bool { return err == nil }},
		{name: "qualification retried through 500", steps: []func(http.ResponseWriter){status(500), status(200)},
			call: qualify, wantRequests: 2, wantErr: func(err error) bool { return err == nil }},
		{name: "429 honours Retry-After", steps: []func(http.ResponseWriter){status(429, "Retry-After", "3"), status(200)},
			call: get, wantRequests: 2, wantErr: func(err error) bool { return err == nil }, wantSleeps: []time.Duration{3 * time.Second}},
		{name: "429 on create is retried (throttled before handling)", steps: []func(http.ResponseWriter){status(429, "Retry-After", "1"), status(201)},
			call: create, wantRequests: 2, wantErr: func(err error) bool { return err == nil }, wantSleeps: []time.Duration{time.Second}},
		{name: "429 Retry-After beyond the cap is returned", steps: []func(http.ResponseWriter){status(429, "Retry-After", "3600")},
			call: get, wantRequests: 1, wantErr: IsRateLimited, wantSleeps: []time.Duration{}},
		{name: "503 Retry-After beyond the cap is returned", steps: []func(http.ResponseWriter){status(503, "Retry-After", "3600"), status(200)},
			call: get, wantRequests: 1, wantErr: func(err error) bool { return statusOf(err) == 503 }, wantSleeps: []time.Duration{}},
		{name: "503 Retry-After within the cap is honoured", steps: []func(http.ResponseWriter){status(503, "Retry-After", "2"), status(200)},
			call: get, wantRequests: 2, wantErr: func(err error) bool { return err == nil }, wantSleeps: []time.Duration{2 * time.Second}},
		{name: "gives up after MaxAttempts with the last error", steps: []func(http.ResponseWriter){status(500), status(502), status(503), status(504)},
			call: get, wantRequests: 4, wantErr: func(err error) bool { return statusOf(err) == 504 }},
		{name: "404 not retried", steps: []func(http.ResponseWriter){status(404)},
			call: get, wantRequests: 1, wantErr: IsNotFound},
		{name: "422 not retried", steps: []func(http.ResponseWriter){status(422)},
			call: create, wantRequests: 1, wantErr: IsValidation},
		{name: "create 500 is outcome unknown, not retried", steps: []func(http.ResponseWriter){status(500), status(201)},
			call: create, wantRequests: 1, wantErr: func(err error) bool { return IsOutcomeUnknown(err) && statusOf(err) == 500 }},
		{name: "issue 503 is outcome unknown, not retried", steps: []func(http.ResponseWriter){status(503), status(200)},
			call: issue, wantRequests: 1, wantErr: IsOutcomeUnknown},
		{name: "issue hang-up after sending is outcome unknown", steps: []func(http.ResponseWriter){func(w http.ResponseWriter) { hangUp(t, w) }, status(200)},
			call: issue, wantRequests: 1, wantErr: IsOutcomeUnknown},
		{name: "issue with unreadable success body is outcome unknown", steps: []func(http.ResponseWriter){func(w http.ResponseWriter) { writeJSON(w, 200, "<html>ok") }},
			call: issue, wantRequests: 1, wantErr: IsOutcomeUnknown},
		{name: "read hang-up is retried", steps: []func(http.ResponseWriter){func(w http.ResponseWriter) { hangUp(t, w) }, status(200)},
			call: get, wantRequests: 2, wantErr: func(err error) bool { return err == nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n := script(t, tt.steps...)
			var s sleeps
			c := newClient(t, f.URL+"/api/v2", withSleep(s.sleep))
			err := tt.call(c)
			if !tt.wantErr(err) {
				t.Fatalf("unexpected err: %v", err)
			}
			if got := n.Load(); got != tt.wantRequests {
				t.Errorf("requests = %d, want %d", got, tt.wantRequests)
			}
			if st := c.Stats(); st.Requests != int64(tt.wantRequests) || st.Retries != int64(tt.wantRequests-1) {
				t.Errorf("stats = %+v", st)
			}
			got := s.all()
			if len(got) != int(tt.wantRequests)-1 {
				t.Errorf("slept %d times, want %d", len(got), tt.wantRequests-1)
			}
			if tt.wantSleeps != nil && !equalDurations(got, tt.wantSleeps) {
				t.Errorf("sleeps = %v, want %v", got, tt.wantSleeps)
			}
			for _, d := range got {
				if d <= 0 || d > DefaultRetryPolicy().MaxRetryAfter {
					t.Errorf("sleep %v out of bounds", d)
				}
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// failingTransport fails before anything is written, as a refused connection does.
type failingTransport struct {
	fails int32
	n     atomic.Int32
	next  http.RoundTripper
}

func (ft *failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if ft.n.Add(1) <= ft.fails {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	}
	return ft.next.RoundTrip(r)
}

func TestCreateRetriedWhenNeverSent(t *testing.T) {
	f, n := script(t, status(201))
	ft := &failingTransport{fails: 2, next: http.DefaultTransport}
	c := newClient(t, f.URL+"/api/v2", WithHTTPClient(&http.Client{Transport: ft}))
	_, err := c.CreateUser(context.Background(), CreateUserInput{CampaignID: 1, FirstName: "A", Email: "a@b.c"})
	if err != nil {
		t.Fatalf("err = %v", err)
	}
	if ft.n.Load() != 3 || n.Load() != 1 {
		t.Errorf("attempts %d, server saw %d", ft.n.Load(), n.Load())
	}
}

func TestBackoffIsJitteredAndBounded(t *testing.T) {
	c := newClient(t, "http://127.0.0.1:1/api/v2", WithRetryPolicy(RetryPolicy{MaxAttempts: 10, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}))
	distinct := map[time.Duration]bool{}
	for attempt := 1; attempt <= 8; attempt++ {
		bound := min(100*time.Millisecond<<(attempt-1), time.Second)
		for range 50 {
			d := c.backoff(attempt)
			if d <= 0 || d > bound {
				t.Fatalf("attempt %d: delay %v outside (0, %v]", attempt, d, bound)
			}
			distinct[d] = true
		}
	}
	if len(distinct) < 100 {
		t.Errorf("only %d distinct delays in 400 draws: not jittered", len(distinct))
	}
}

func TestContextDeadlineStopsRetries(t *testing.T) {
	f, n := script(t, status(503))
	c, err := New(f.URL+"/api/v2", testToken, WithLimiter(nil),
		WithRetryPolicy(RetryPolicy{MaxAttempts: 5, BaseDelay: time.Hour, MaxDelay: time.Hour, MaxRetryAfter: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err = c.GetUser(ctx, "abc")
	if statusOf(err) != 503 {
		t.Fatalf("err = %v, want the 503", err)
	}
	if n.Load() != 1 || time.Since(start) > time.Second {
		t.Errorf("requests %d after %v: a backoff past the deadline was slept", n.Load(), time.Since(start))
	}
}

func TestAttemptTimeoutRetriesReads(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	f, n := script(t, func(w http.ResponseWriter) { <-release }, status(200))
	c := newClient(t, f.URL+"/api/v2", WithAttemptTimeout(50*time.Millisecond))
	if _, err := c.GetUser(context.Background(), "abc"); err != nil {
		t.Fatalf("err = %v", err)
	}
	if n.Load() != 2 {
		t.Errorf("requests = %d", n.Load())
	}
	// The same hang on issue must not be repeated.
	f2, n2 := script(t, func(w http.ResponseWriter) { <-release }, status(200))
	c2 := newClient(t, f2.URL+"/api/v2", WithAttemptTimeout(50*time.Millisecond))
	if _, err := c2.IssueReward(context.Background(), 3); !IsOutcomeUnknown(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if n2.Load() != 1 {
		t.Errorf("issue was sent %d times", n2.Load())
	}
}

func TestCanceledContextSendsNothing(t *testing.T) {
	f, n := script(t, status(200))
	c := newClient(t, f.URL+"/api/v2")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.GetUser(ctx, "abc"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if n.Load() != 0 {
		t.Errorf("requests = %d", n.Load())
	}
}

// countingLimiter counts waits and can refuse.
type countingLimiter struct {
	n   atomic.Int32
	err error
}

func (l *countingLimiter) Wait(ctx context.Context) error {
	l.n.Add(1)
	return l.err
}

func TestLimiterWaitedBeforeEveryAttempt(t *testing.T) {
	f, n := script(t, status(500), status(200))
	l := &countingLimiter{}
	c := newClient(t, f.URL+"/api/v2", WithLimiter(l))
	if _, err := c.GetUser(context.Background(), "abc"); err != nil {
		t.Fatal(err)
	}
	if l.n.Load() != 2 || n.Load() != 2 {
		t.Errorf("waits %d, requests %d", l.n.Load(), n.Load())
	}

	refusing := &countingLimiter{err: errors.New("bucket empty")}
	c = newClient(t, f.URL+"/api/v2", WithLimiter(refusing))
	if _, err := c.GetUser(context.Background(), "abc"); err == nil || !strings.Contains(err.Error(), "rate limiter") {
		t.Fatalf("err = %v", err)
	}
	if n.Load() != 2 {
		t.Errorf("a request was sent although the limiter refused")
	}
}

func TestDefaultLimiterPacesRequests(t *testing.T) {
	l := newRateLimiter(600) // 10/s, burst 10
	if l.Burst() != 10 || float64(l.Limit()) != 10 {
		t.Fatalf("limit %v burst %d", l.Limit(), l.Burst())
	}
	for range 10 {
		if !l.Allow() {
			t.Fatal("burst smaller than configured")
		}
	}
	if l.Allow() {
		t.Fatal("limiter let an 11th request through at once")
	}
}

func TestRateLimitedCounterAndObserver(t *testing.T) {
	f, _ := script(t, status(429, "Retry-After", "1"), status(429), status(200))
	var seen []Attempt
	c := newClient(t, f.URL+"/api/v2", WithObserver(func(_ context.Context, a Attempt) { seen = append(seen, a) }))
	if _, err := c.GetUser(context.Background(), "abc"); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.RateLimited != 2 || st.Requests != 3 {
		t.Errorf("stats = %+v", st)
	}
	if len(seen) != 3 || seen[0].Status != 429 || seen[1].Status != 429 || seen[2].Status != 200 ||
		seen[2].Method != "GET" || seen[2].Path != "/users/abc" || seen[2].Duration <= 0 {
		t.Errorf("observed %+v", seen)
	}
}

func TestRetryLogsNeverCarryTheToken(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	f, _ := script(t, func(w http.ResponseWriter) {
		writeJSON(w, 503, `{"message":"upstream said Bearer `+testToken+`"}`)
	}, status(200))
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{mu: &mu, w: &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := newClient(t, f.URL+"/api/v2", WithLogger(logger))
	if _, err := c.GetUser(context.Background(), "abc"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, "retrying") {
		t.Fatalf("no retry logged: %q", out)
	}
	if strings.Contains(out, testToken) {
		t.Fatalf("token in logs: %s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestCertificateErrorsAreNotRetried(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, `{}`) }))
	defer srv.Close()
	var n atomic.Int32
	c := newClient(t, srv.URL+"/api/v2", WithHTTPClient(&http.Client{Transport: countingTransport{&n, http.DefaultTransport}}))
	_, err := c.GetUser(context.Background(), "abc")
	if err == nil || IsRetryable(err) {
		t.Fatalf("err = %v", err)
	}
	if n.Load() != 1 {
		t.Errorf("attempts = %d, want 1", n.Load())
	}
}

type countingTransport struct {
	n    *atomic.Int32
	next http.RoundTripper
}

func (ct countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ct.n.Add(1)
	return ct.next.RoundTrip(r)
}

// penalizingLimiter records penalties.
type penalizingLimiter struct {
	countingLimiter
	mu        sync.Mutex
	penalties []time.Duration
}

func (p *penalizingLimiter) Penalize(ctx context.Context, d time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.penalties = append(p.penalties, d)
	return nil
}

func TestRateLimitedPenalizesASharedLimiter(t *testing.T) {
	f, _ := script(t, status(429, "Retry-After", "7"), status(429), status(200))
	l := &penalizingLimiter{}
	c := newClient(t, f.URL+"/api/v2", WithLimiter(l))
	if _, err := c.GetUser(context.Background(), "abc"); err != nil {
		t.Fatal(err)
	}
	if !equalDurations(l.penalties, []time.Duration{7 * time.Second, time.Second}) {
		t.Fatalf("penalties %v", l.penalties)
	}
}
