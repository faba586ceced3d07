package rfsim_test

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

// fakeClock is the rate limiter's clock: tests step through windows instead of sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func limited(t *testing.T, opts ...rfsim.Option) (*rfsimtest.Sim, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s := newSim(t, append([]rfsim.Option{rfsim.WithRateClock(clk.Now), rfsim.WithRatePerMinute(3)}, opts...)...)
	d := rfsimtest.DemoSeed(t)
	d.RatePerMinute = 0 // the demo's 600 would override WithRatePerMinute
	s.MustSeed(t, d)
	return s, clk
}

func TestRateLimit(t *testing.T) {
	s, clk := limited(t)
	for i := range 3 {
		r := s.Do(t, "GET", "/campaigns", nil)
		wantStatus(t, r, 200)
		if r.Header.Get("X-RateLimit-Limit") != "3" || r.Header.Get("X-RateLimit-Remaining") != strconv.Itoa(2-i) {
			t.Fatalf("call %d headers %v", i+1, r.Header)
		}
	}
	r := s.Do(t, "GET", "/campaigns", nil)
	wantStatus(t, r, 429)
	wantJSON(t, r, `{"code":429,"message":"Too Many Attempts."}`)
	if r.Header.Get("Retry-After") != "60" || r.Header.Get("X-RateLimit-Remaining") != "0" ||
		r.Header.Get("X-RateLimit-Reset") != strconv.FormatInt(clk.Now().Unix()+60, 10) {
		t.Fatalf("429 headers %v", r.Header)
	}

	clk.Advance(30*time.Second + 200*time.Millisecond)
	if r := s.Do(t, "GET", "/campaigns", nil); r.Status != 429 || r.Header.Get("Retry-After") != "30" {
		t.Fatalf("status %d Retry-After %q", r.Status, r.Header.Get("Retry-After"))
	}

	// The window is fixed: it reopens a minute after its first call.
	clk.Advance(30 * time.Second)
	wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 200)

	// Every 429 is counted against the token's fingerprint, never the token itself.
	c := s.Server.Counters()
	if c.RateLimited["…oken"] != 2 || len(c.RateLimited) != 1 {
		t.Fatalf("rate-limited counters %v", c.RateLimited)
	}
	if c.Requests["GET /api/v2/campaigns"][429] != 2 || c.Requests["GET /api/v2/campaigns"][200] != 4 {
		t.Fatalf("request counters %v", c.Requests)
	}
}

func TestRateLimitPerToken(t *testing.T) {
	s, _ := limited(t)
	for range 3 {
		wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 200)
	}
	wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 429)
	s.RotateToken(t) // a new token has its own budget
	wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 200)
}

func TestRateLimitBlocksIP(t *testing.T) {
	s, clk := limited(t, rfsim.WithRateBlock(1, 10*time.Minute))
	exceed := func() {
		t.Helper()
		for range 3 {
			wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 200)
		}
		wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 429)
		wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 429) // same window: counts once
		clk.Advance(time.Minute)
	}
	exceed() // first excess window: tolerated
	exceed() // second: more than 1, so the IP is blocked for 10 minutes from that refusal

	for _, path := range []string{"/campaigns", "/nope"} {
		r := s.Do(t, "GET", path, nil)
		wantStatus(t, r, 429)
		if r.Header.Get("Retry-After") != "540" {
			t.Fatalf("blocked Retry-After %q", r.Header.Get("Retry-After"))
		}
	}
	if s.Server.Counters().IPBlocks != 1 {
		t.Fatalf("counters %+v", s.Server.Counters())
	}
	clk.Advance(9 * time.Minute)
	wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 200)
}

func TestRateLimitBlockDisabled(t *testing.T) {
	s, clk := limited(t, rfsim.WithRateBlock(0, 0))
	for range 3 {
		for range 4 {
			s.Do(t, "GET", "/campaigns", nil)
		}
		clk.Advance(time.Minute)
	}
	wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 200)
}

func TestRateLimitFromSeed(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s := newSim(t, rfsim.WithRateClock(clk.Now))
	s.MustSeed(t, rfsim.SeedData{RatePerMinute: 1})
	wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 200)
	wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 429)
}
