package rfsim_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

func TestOptionTokens(t *testing.T) {
	s := newSim(t, rfsim.WithToken("opt_token"), rfsim.WithWebhookToken("opt_hook"))
	if s.Token != "opt_token" || !strings.HasSuffix(s.WebhookURL, "/webhook/opt_hook/qualify") {
		t.Fatalf("token %q webhook %q", s.Token, s.WebhookURL)
	}
	s.MustSeed(t, rfsim.SeedData{Token: "seed_token"}) // a seed's token wins...
	wantStatus(t, s.Do(t, "GET", "/users", nil), 200)
	s.Server.Reset() // ...until a reset restores the option's
	if s.Server.Token() != "opt_token" {
		t.Fatalf("token after reset %q", s.Server.Token())
	}
}

func TestOptionRateWindow(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s := newSim(t, rfsim.WithRateClock(clk.Now), rfsim.WithRatePerMinute(1), rfsim.WithRateWindow(10*time.Second))
	wantStatus(t, s.Do(t, "GET", "/users", nil), 200)
	if r := s.Do(t, "GET", "/users", nil); r.Status != 429 || r.Header.Get("Retry-After") != "10" {
		t.Fatalf("status %d Retry-After %q", r.Status, r.Header.Get("Retry-After"))
	}
	clk.Advance(10 * time.Second)
	wantStatus(t, s.Do(t, "GET", "/users", nil), 200)
}

// recordingTransport shows WithHTTPClient is what delivers webhooks.
type recordingTransport struct {
	mu   sync.Mutex
	urls []string
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.urls = append(rt.urls, r.URL.String())
	rt.mu.Unlock()
	return &http.Response{StatusCode: 204, Body: http.NoBody, Request: r}, nil
}

func TestOptionHTTPClientAndLogger(t *testing.T) {
	rt := &recordingTransport{}
	var logs safeBuffer
	s := demo(t, rfsim.WithHTTPClient(&http.Client{Transport: rt}),
		rfsim.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	addWebhook(t, s, rfsim.Webhook{Event: "lead_created", URL: "https://receiver.invalid/hook"})
	s.Lead(t, 1, "aLiCeRef", "client@example.com")
	s.Do(t, "GET", "/users", nil)
	s.WaitIdle(t)
	if len(rt.urls) != 1 || rt.urls[0] != "https://receiver.invalid/hook" {
		t.Fatalf("transport saw %v", rt.urls)
	}
	out := logs.String()
	if !strings.Contains(out, "rfsim call") || !strings.Contains(out, "rfsim webhook") || strings.Contains(out, s.Token) {
		t.Fatalf("logs:\n%s", out)
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestSearchCorners(t *testing.T) {
	s := newSim(t)
	s.MustSeed(t, rfsim.SeedData{
		Campaigns: []rfsim.SeedCampaign{{Campaign: rfsim.Campaign{ID: 1, Code: "C"},
			Rewards: []rfsim.SeedReward{{ID: 1, Metric: "amount", Amount: 2.5}}}},
		Users: []rfsim.SeedUser{
			{ID: 1, CampaignID: 1, FirstName: "100%", Email: "a@example.com"},
			{ID: 2, CampaignID: 1, FirstName: "100 percent", Email: "b@example.com"},
		},
		DueRewards: []rfsim.SeedDue{
			{ID: 1, RewardID: 1, RecipientID: 1},
			{ID: 2, RewardID: 1, RecipientID: 2, CanBeIssued: ptrTo(false), Total: ptrTo(7.25)},
		},
	})
	ids := func(path string, filters any) []int {
		t.Helper()
		r := s.Do(t, "POST", path, map[string]any{"filters": filters})
		wantStatus(t, r, 200)
		var p page[struct{ ID int }]
		r.Decode(t, &p)
		var out []int
		for _, it := range p.Data {
			out = append(out, it.ID)
		}
		return out
	}
	tests := []struct {
		name    string
		path    string
		filters any
		want    []int
	}{
		{"like with escaped %", "/users/search", group("AND", cond("first_name", "like", `100\%`)), []int{1}},
		{"like % matches both", "/users/search", group("AND", cond("first_name", "like", "100%")), []int{1, 2}},
		{"boolean true", "/rewards/due/amount/search", group("AND", cond("can_be_issued", "=", true)), []int{1}},
		{"boolean as 0", "/rewards/due/amount/search", group("AND", cond("can_be_issued", "=", 0)), []int{2}},
		{"decimal comparison", "/rewards/due/amount/search", group("AND", cond("total", ">", "2.5")), []int{2}},
		{"decimal equality", "/rewards/due/amount/search", group("AND", cond("total", "=", 2.5)), []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ids(tt.path, tt.filters)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ids %v, want %v", got, tt.want)
			}
		})
	}
}

// WithRatePerMinute sets the limit of a simulator that was never seeded; a seed without
// rate_per_minute (or with 0) keeps it, and WithRatePerMinute(0) disables the limit.
func TestOptionRatePerMinute(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s := rfsimtest.New(t, rfsim.WithRateClock(clk.Now), rfsim.WithRatePerMinute(3))
	for i := range 3 {
		r := s.Do(t, "GET", "/campaigns", nil)
		wantStatus(t, r, 200)
		if r.Header.Get("X-RateLimit-Limit") != "3" {
			t.Fatalf("call %d: limit %q", i+1, r.Header.Get("X-RateLimit-Limit"))
		}
	}
	wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 429)

	clk.Advance(time.Minute)
	s.MustSeed(t, rfsim.SeedData{RatePerMinute: 0})
	for range 3 {
		wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 200)
	}
	wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 429)

	off := rfsimtest.New(t, rfsim.WithRatePerMinute(0))
	for range 20 {
		r := off.Do(t, "GET", "/campaigns", nil)
		wantStatus(t, r, 200)
		if r.Header.Get("X-RateLimit-Limit") != "" {
			t.Fatalf("a disabled limit sent headers %v", r.Header)
		}
	}
}
