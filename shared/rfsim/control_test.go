package rfsim_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

func ctl(t *testing.T, s *rfsimtest.Sim, method, path string, body any) *rfsimtest.Response {
	t.Helper()
	return s.DoRaw(t, method, s.HTTP.URL+"/_sim"+path, body, nil)
}

func TestControlSeedAndReset(t *testing.T) {
	s := newSim(t)
	d := rfsimtest.DemoSeed(t)
	r := ctl(t, s, "POST", "/seed", d)
	wantStatus(t, r, 200)
	if got := data[map[string]int](t, r); got["users"] != 5 || got["campaigns"] != 1 || got["rewards"] != 3 || got["reward_definitions"] != 2 {
		t.Fatalf("seed summary %v", got)
	}
	wantStatus(t, s.Do(t, "GET", "/users/4", nil), 200)

	bad := ctl(t, s, "POST", "/seed", map[string]any{"users": []any{map[string]any{"campaign_id": 9, "first_name": "x", "email": "x@example.com"}}})
	wantStatus(t, bad, 422)
	if !strings.Contains(string(bad.Body), "campaign_id 9") {
		t.Fatalf("seed error %s", bad.Body)
	}
	wantStatus(t, s.Do(t, "GET", "/users/4", nil), 200) // a failed seed changes nothing
	wantStatus(t, ctl(t, s, "POST", "/seed", []byte(`{"campains":[]}`)), 400)

	s.Do(t, "GET", "/users", nil)
	wantStatus(t, ctl(t, s, "POST", "/reset", nil), 200)
	if len(s.Server.Users()) != 0 || len(s.Server.Calls()) != 0 || len(s.Server.Counters().Requests) != 0 {
		t.Fatal("reset left state behind")
	}
}

func TestControlStateRoundTrip(t *testing.T) {
	s := fastSim(t)
	rc := newReceiver(t)
	addWebhook(t, s, rfsim.Webhook{Event: "lead_created", URL: rc.URL, Headers: map[string]string{"X-A": "1"}})
	s.Qualify(t, 5)
	lead := s.Lead(t, 1, "cArOlRef", "new@example.com")
	if _, err := s.Server.IssueReward(3); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, s.Do(t, "DELETE", "/users/3", nil), 200) // a dangling referrer_id survives the dump
	s.WaitIdle(t)

	r := ctl(t, s, "GET", "/state", nil)
	wantStatus(t, r, 200)
	dump := data[rfsim.SeedData](t, r)
	if len(dump.Users) != 5 || len(dump.DueRewards) != 3 || len(dump.IssuedRewards) != 2 || len(dump.Webhooks) != 1 || dump.Now == "" {
		t.Fatalf("dump %+v", dump)
	}

	other := newSim(t)
	wantStatus(t, ctl(t, other, "POST", "/seed", dump), 200)
	a, _ := json.Marshal(dump)
	b, _ := json.Marshal(other.Server.State())
	if string(a) != string(b) {
		t.Fatalf("state did not round-trip:\n%s\n%s", a, b)
	}
	// The coupon pool continues where it was: the new lead took the third code.
	next := other.Lead(t, 1, "aLiCeRef", "another@example.com")
	if c := dueFor(other.Server.DueRewards("coupon"), next.ID); len(c) != 1 || *c[0].Coupon != "WELCOME-5RHD" {
		t.Fatalf("coupon after round trip %+v (lead %d got %+v)", c, lead.ID, dueFor(s.Server.DueRewards("coupon"), lead.ID))
	}
}

func TestControlCalls(t *testing.T) {
	s := demo(t)
	s.Do(t, "GET", "/users?page=2", nil)
	big := strings.Repeat("a", 70<<10)
	s.Do(t, "POST", "/users", map[string]any{"campaign_id": 1, "first_name": big, "email": "big@example.com"})
	s.Do(t, "GET", "/campaigns", nil)

	calls := data[[]rfsim.Call](t, ctl(t, s, "GET", "/calls", nil))
	if len(calls) != 3 {
		t.Fatalf("calls %+v", calls)
	}
	c := calls[0]
	if c.Method != "GET" || c.Path != "/api/v2/users" || c.Query != "page=2" || c.Route != "GET /api/v2/users" ||
		c.Status != 200 || c.Token != "…oken" || c.Seq == 0 || c.Time.IsZero() {
		t.Fatalf("call %+v", c)
	}
	if len(calls[1].Body) != 64<<10 || !calls[1].BodyTruncated || calls[1].Status != 201 {
		t.Fatalf("big body logged as %d bytes, truncated=%v", len(calls[1].Body), calls[1].BodyTruncated)
	}
	raw := ctl(t, s, "GET", "/calls", nil).Body
	if strings.Contains(string(raw), s.Token) || strings.Contains(string(raw), "Authorization") {
		t.Fatal("the call log holds the token")
	}

	since := data[[]rfsim.Call](t, ctl(t, s, "GET", "/calls?since="+strconv.FormatInt(calls[1].Seq, 10), nil))
	if len(since) != 1 || since[0].Path != "/api/v2/campaigns" {
		t.Fatalf("since %+v", since)
	}
	wantStatus(t, ctl(t, s, "DELETE", "/calls", nil), 200)
	if got := data[[]rfsim.Call](t, ctl(t, s, "GET", "/calls", nil)); len(got) != 0 {
		t.Fatalf("calls after delete %+v", got)
	}
	s.Do(t, "GET", "/campaigns", nil)
	if got := s.Server.Calls(); len(got) != 1 || got[0].Seq != calls[2].Seq+1 {
		t.Fatalf("sequence restarted: %+v", got)
	}
}

func TestControlCounters(t *testing.T) {
	s := demo(t)
	s.Do(t, "GET", "/users/1", nil)
	s.Do(t, "GET", "/users/999", nil)
	s.Do(t, "GET", "/nowhere", nil)
	s.DoRaw(t, "GET", s.URL+"/users/1", nil, nil)
	c := data[rfsim.Counters](t, ctl(t, s, "GET", "/counters", nil))
	want := map[string]map[int]int{"GET /api/v2/users/{identifier}": {200: 1, 404: 1, 401: 1}, "unmatched": {404: 1}}
	if !reflect.DeepEqual(c.Requests, want) {
		t.Fatalf("requests %v", c.Requests)
	}
}

func TestControlClock(t *testing.T) {
	s := demo(t)
	r := ctl(t, s, "GET", "/clock", nil)
	if got := data[map[string]string](t, r); got["today"] != today {
		t.Fatalf("clock %v", got)
	}
	r = ctl(t, s, "POST", "/clock", map[string]string{"advance": "72h"})
	if got := data[map[string]string](t, r); got["today"] != "2026-03-04" {
		t.Fatalf("after advance %v", got)
	}
	s.Qualify(t, 5)
	if u, _ := s.Server.User(5); *u.QualifiedAt != "2026-03-04" {
		t.Fatalf("qualified_at %v", *u.QualifiedAt)
	}
	r = ctl(t, s, "POST", "/clock", map[string]string{"now": "2027-01-31T23:30:00-05:00"})
	if got := data[map[string]string](t, r); got["today"] != "2027-02-01" { // dates are UTC
		t.Fatalf("after set %v", got)
	}
	for _, bad := range []any{map[string]string{"now": "tomorrow"}, map[string]string{"advance": "3 days"}, map[string]string{}} {
		wantStatus(t, ctl(t, s, "POST", "/clock", bad), 422)
	}
}

func TestControlWebhooks(t *testing.T) {
	s := fastSim(t)
	rc := newReceiver(t)
	r := ctl(t, s, "POST", "/webhooks", map[string]any{"event": "lead_created", "url": rc.URL, "format": "FORM"})
	wantStatus(t, r, 201)
	hooks := data[[]rfsim.Webhook](t, ctl(t, s, "GET", "/webhooks", nil))
	if len(hooks) != 1 || hooks[0].Method != "POST" || hooks[0].Format != "form" {
		t.Fatalf("webhooks %+v", hooks)
	}
	s.Lead(t, 1, "aLiCeRef", "hooked@example.com")
	r = ctl(t, s, "POST", "/webhooks/flush", nil)
	wantStatus(t, r, 200)
	if d := data[[]rfsim.Delivery](t, r); len(d) != 1 || d[0].Status != 200 || !strings.Contains(d[0].Body, "hooked%40example.com") {
		t.Fatalf("deliveries %+v", d)
	}
	if d := data[[]rfsim.Delivery](t, ctl(t, s, "GET", "/webhooks/deliveries", nil)); len(d) != 1 {
		t.Fatalf("deliveries %+v", d)
	}
	wantStatus(t, ctl(t, s, "DELETE", "/webhooks/deliveries", nil), 200)
	wantStatus(t, ctl(t, s, "DELETE", "/webhooks", nil), 200)
	s.Lead(t, 1, "aLiCeRef", "unhooked@example.com")
	s.WaitIdle(t)
	if len(s.Server.Deliveries()) != 0 || len(rc.requests()) != 1 {
		t.Fatal("deleted webhook still delivered")
	}
}

func TestControlRewards(t *testing.T) {
	s := demo(t)
	r := ctl(t, s, "PATCH", "/rewards/due/1", map[string]any{"can_be_issued": false})
	wantStatus(t, r, 200)
	if d := data[rfsim.DueReward](t, r); d.CanBeIssued {
		t.Fatalf("due %+v", d)
	}
	wantStatus(t, s.Do(t, "POST", "/rewards/issue/1", nil), 422)
	wantStatus(t, ctl(t, s, "PATCH", "/rewards/due/1", map[string]any{"can_be_issued": true}), 200)
	wantStatus(t, s.Do(t, "POST", "/rewards/issue/1", nil), 200)
	wantStatus(t, ctl(t, s, "PATCH", "/rewards/due/1", map[string]any{"can_be_issued": true}), 404) // issued now
	wantStatus(t, ctl(t, s, "PATCH", "/rewards/due/3", map[string]any{}), 422)

	r = ctl(t, s, "POST", "/rewards/issued/1/status", map[string]string{"status": "Sent"})
	wantStatus(t, r, 200)
	if got := data[rfsim.IssuedReward](t, r); got.Status != "Sent" || got.ID != 1 {
		t.Fatalf("issued %+v", got)
	}
	var p page[rfsim.IssuedReward]
	s.Do(t, "GET", "/rewards/issued/amount", nil).Decode(t, &p)
	if p.Data[0].Status != "Sent" {
		t.Fatalf("API shows %+v", p.Data)
	}
	wantStatus(t, ctl(t, s, "POST", "/rewards/issued/1/status", map[string]string{"status": "Lost"}), 422)
	wantStatus(t, ctl(t, s, "POST", "/rewards/issued/3/status", map[string]string{"status": "Sent"}), 404) // still due
}

func TestControlRouting(t *testing.T) {
	s := demo(t)
	wantStatus(t, ctl(t, s, "GET", "/nothing", nil), 404)
	r := ctl(t, s, "DELETE", "/state", nil)
	wantStatus(t, r, 405)
	if r.Header.Get("Allow") != "GET" {
		t.Fatalf("Allow %q", r.Header.Get("Allow"))
	}
	// The control API needs no token; the API does.
	wantStatus(t, s.DoRaw(t, "GET", s.HTTP.URL+"/_sim/state", nil, http.Header{}), 200)
}

// POST /_sim/reset clears everything the docs list: state, faults, rate-limit windows and IP
// blocks, webhooks, deliveries (including those in flight), calls, counters and the clock shift.
func TestControlResetClearsEverything(t *testing.T) {
	const backoff = 2 * time.Second
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s := newSim(t, rfsim.WithRateClock(clk.Now), rfsim.WithRatePerMinute(2), rfsim.WithRateBlock(0, time.Hour),
		rfsim.WithWebhookBackoff(backoff))
	d := rfsimtest.DemoSeed(t)
	d.RatePerMinute = 0 // keep the option's 2
	s.MustSeed(t, d)

	// Rate-limit state: a window used up, and the IP blocked after its first excess window.
	wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 200)
	wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 200)
	wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 429)
	if r := s.Do(t, "GET", "/campaigns", nil); r.Status != 429 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("not blocked: %d", r.Status)
	}
	if s.Server.Counters().IPBlocks != 1 {
		t.Fatalf("counters %+v", s.Server.Counters())
	}
	// A fault, a webhook with a delivery in flight (its retry waiting), a shifted clock.
	addFault(t, s, rfsim.Fault{Match: "GET /api/v2/campaigns", Status: 503})
	rc := newReceiver(t, 500, 500, 500)
	addWebhook(t, s, rfsim.Webhook{Event: "lead_created", URL: rc.URL})
	s.Lead(t, 1, "aLiCeRef", "inflight@example.com")
	waitFor(t, "the first attempt", func() bool { return len(s.Server.Deliveries()) == 1 })
	s.Server.Advance(72 * time.Hour)

	wantStatus(t, ctl(t, s, "POST", "/reset", nil), 200)
	idleWithin(t, s, time.Second)

	srv := s.Server
	if len(srv.Users()) != 0 || len(srv.Campaigns()) != 0 || len(srv.DueRewards("amount")) != 0 {
		t.Fatal("reset left domain state behind")
	}
	if len(srv.Calls()) != 0 {
		t.Fatalf("calls %+v", srv.Calls())
	}
	if c := srv.Counters(); len(c.Requests) != 0 || len(c.RateLimited) != 0 || c.IPBlocks != 0 ||
		c.Notifications != 0 || len(c.WebhookAttempts) != 0 || len(c.WebhookFailures) != 0 {
		t.Fatalf("counters %+v", c)
	}
	if f := srv.Faults(); len(f) != 0 {
		t.Fatalf("faults %+v", f)
	}
	if h := srv.Webhooks(); len(h) != 0 {
		t.Fatalf("webhooks %+v", h)
	}
	if d := srv.Deliveries(); len(d) != 0 {
		t.Fatalf("deliveries %+v", d)
	}
	if !srv.Now().Equal(fixedClock()) {
		t.Fatalf("clock %v", srv.Now())
	}
	// No block, no fault, a fresh window at the option's rate.
	r := s.Do(t, "GET", "/campaigns", nil)
	wantStatus(t, r, 200)
	if r.Header.Get("X-RateLimit-Limit") != "2" || r.Header.Get("X-RateLimit-Remaining") != "1" {
		t.Fatalf("rate headers %v", r.Header)
	}
	// The in-flight delivery's retries never come.
	time.Sleep(backoff + 300*time.Millisecond)
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("the old receiver got %d requests, want only the one before the reset", n)
	}
	if d := srv.Deliveries(); len(d) != 0 {
		t.Fatalf("deliveries %+v", d)
	}
}
