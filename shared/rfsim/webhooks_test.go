package rfsim_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

func addWebhook(t *testing.T, s *rfsimtest.Sim, h rfsim.Webhook) {
	t.Helper()
	if err := s.Server.AddWebhook(h); err != nil {
		t.Fatalf("add webhook: %v", err)
	}
}

// fastSim is a demo simulator whose webhook retries do not wait.
func fastSim(t *testing.T) *rfsimtest.Sim {
	t.Helper()
	return demo(t, rfsim.WithWebhookBackoff(time.Millisecond))
}

func TestWebhookDefaultPayloads(t *testing.T) {
	s := fastSim(t)
	rc := newReceiver(t)
	for _, ev := range []string{"referrer_joined", "lead_created", "lead_qualified", "reward_issued"} {
		addWebhook(t, s, rfsim.Webhook{Event: ev, URL: rc.URL + "/" + ev})
	}
	wantStatus(t, s.Do(t, "POST", "/users", map[string]any{"campaign_id": 1, "first_name": "Zed", "email": "zed@example.com",
		"referrer": map[string]any{"field": "code", "value": "aLiCeRef"}}), 201)
	wantStatus(t, s.Do(t, "PUT", "/users/qualification", map[string]any{"email": "zed@example.com", "campaign_id": 1, "qualified": true}), 200)
	wantStatus(t, s.Do(t, "PUT", "/users/qualification", map[string]any{"email": "zed@example.com", "campaign_id": 1, "qualified": true}), 200)
	wantStatus(t, s.Do(t, "POST", "/rewards/issue/1", nil), 200)
	wantStatus(t, s.Do(t, "POST", "/users", map[string]any{"campaign_id": 1, "first_name": "Yan", "email": "yan@example.com"}), 201)
	s.WaitIdle(t)

	byPath := map[string][]map[string]any{}
	for _, r := range rc.requests() {
		if r.Method != "POST" || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("User-Agent") == "" {
			t.Fatalf("request %+v", r)
		}
	}
	for i, p := range rc.payloads(t) {
		byPath[rc.requests()[i].Path] = append(byPath[rc.requests()[i].Path], p)
	}
	user := []string{"id", "code", "email", "first_name", "campaign_id", "referrer_id", "type", "source", "signed_up_at", "qualified_at", "url"}

	// lead_created: the lead plus its referrer's details.
	created := byPath["/lead_created"]
	if len(created) != 1 {
		t.Fatalf("lead_created deliveries %d", len(created))
	}
	wantKeys(t, created[0], append(user, "referrer_code", "referrer_email")...)
	if created[0]["email"] != "zed@example.com" || created[0]["referrer_code"] != "aLiCeRef" ||
		created[0]["referrer_email"] != "alice@example.com" || created[0]["referrer_id"] != 1.0 || created[0]["qualified_at"] != nil {
		t.Fatalf("lead_created %v", created[0])
	}

	// lead_qualified fires once: the second qualification was a no-op.
	if q := byPath["/lead_qualified"]; len(q) != 1 || q[0]["qualified_at"] != today {
		t.Fatalf("lead_qualified %v", q)
	}

	// reward_issued: the recipient (Alice, for Dave's seeded reward) and the reward.
	issued := byPath["/reward_issued"]
	if len(issued) != 1 {
		t.Fatalf("reward_issued %v", issued)
	}
	wantKeys(t, issued[0], append(user, "reward_id", "reward_issued_id", "reward_status", "total")...)
	if issued[0]["id"] != 1.0 || issued[0]["reward_id"] != 1.0 || issued[0]["reward_issued_id"] != 1.0 ||
		issued[0]["reward_status"] != "Issued" || issued[0]["total"] != 25.0 {
		t.Fatalf("reward_issued %v", issued[0])
	}

	// referrer_joined: the user fields only.
	if j := byPath["/referrer_joined"]; len(j) != 1 || j[0]["source"] != "Api" {
		t.Fatalf("referrer_joined %v", j)
	} else {
		wantKeys(t, j[0], user...)
	}
	if c := s.Server.Counters(); c.WebhookAttempts["lead_created"] != 1 || c.WebhookFailures["lead_created"] != 0 {
		t.Fatalf("counters %+v", c)
	}
}

func TestWebhookCouponPayload(t *testing.T) {
	s := fastSim(t)
	rc := newReceiver(t)
	addWebhook(t, s, rfsim.Webhook{Event: "reward_issued", URL: rc.URL})
	wantStatus(t, s.Do(t, "POST", "/rewards/issue/3", nil), 200)
	s.WaitIdle(t)
	p := rc.payloads(t)
	if len(p) != 1 || p[0]["coupon"] != "WELCOME-9XTA" || p[0]["id"] != 5.0 || p[0]["total"] != nil {
		t.Fatalf("payload %v", p)
	}
}

func TestWebhookMapping(t *testing.T) {
	s := fastSim(t)
	rc := newReceiver(t)
	addWebhook(t, s, rfsim.Webhook{
		Event:   "lead_created",
		URL:     rc.URL + "/hook?existing=1",
		Fields:  map[string]string{"code": "referral_code", "email": "mail", "signed_up_at": "", "url": "", "ip": "ip_address", "referrer_email": ""},
		Hidden:  map[string]string{"source_system": "rf", "env": "test"},
		Headers: map[string]string{"X-Webhook-Secret": "s3cret", "X-One": "1", "X-Two": "2"},
	})
	s.Lead(t, 1, "aLiCeRef", "mapped@example.com")
	s.WaitIdle(t)
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d deliveries", len(reqs))
	}
	if reqs[0].Header.Get("X-Webhook-Secret") != "s3cret" || reqs[0].Header.Get("X-Two") != "2" || reqs[0].Query != "existing=1" {
		t.Fatalf("request %+v", reqs[0])
	}
	wantKeys(t, rc.payloads(t)[0], "id", "referral_code", "mail", "first_name", "campaign_id", "referrer_id",
		"type", "source", "qualified_at", "ip_address", "referrer_code", "source_system", "env")
	if p := rc.payloads(t)[0]; p["mail"] != "mapped@example.com" || p["source_system"] != "rf" {
		t.Fatalf("payload %v", p)
	}
}

func TestWebhookFormAndGet(t *testing.T) {
	s := fastSim(t)
	rc := newReceiver(t)
	addWebhook(t, s, rfsim.Webhook{Event: "lead_qualified", URL: rc.URL + "/form", Format: "form"})
	addWebhook(t, s, rfsim.Webhook{Event: "lead_qualified", URL: rc.URL + "/get", Method: "get", Hidden: map[string]string{"k": "v"}})
	s.Qualify(t, 5)
	s.WaitIdle(t)
	for _, r := range rc.requests() {
		var vals url.Values
		switch r.Path {
		case "/form":
			if r.Method != "POST" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
				t.Fatalf("form request %+v", r)
			}
			vals, _ = url.ParseQuery(r.Body)
		case "/get":
			if r.Method != "GET" || r.Body != "" {
				t.Fatalf("GET request %+v", r)
			}
			vals, _ = url.ParseQuery(r.Query)
			if vals.Get("k") != "v" {
				t.Fatalf("hidden field missing from %q", r.Query)
			}
		}
		if vals.Get("code") != "eRiNlEad" || vals.Get("qualified_at") != today || vals.Get("referrer_id") != "2" || vals.Get("referrer_code") != "bObbYRef" {
			t.Fatalf("%s values %v", r.Path, vals)
		}
	}
	if len(rc.requests()) != 2 {
		t.Fatalf("%d deliveries", len(rc.requests()))
	}
}

func TestWebhookSourcesAndCampaign(t *testing.T) {
	s := fastSim(t)
	rc := newReceiver(t)
	addWebhook(t, s, rfsim.Webhook{Event: "referrer_joined", URL: rc.URL + "/direct", Sources: []string{"Direct"}})
	addWebhook(t, s, rfsim.Webhook{Event: "referrer_joined", URL: rc.URL + "/other-campaign", CampaignID: 2})
	s.Referrer(t, 1, "api@example.com") // source Api: filtered out
	if _, err := s.Server.CreateUser(rfsim.NewUser{CampaignID: 1, FirstName: "D", Email: "direct@example.com", Source: "Direct"}); err != nil {
		t.Fatal(err)
	}
	s.WaitIdle(t)
	reqs := rc.requests()
	if len(reqs) != 1 || reqs[0].Path != "/direct" || !strings.Contains(reqs[0].Body, "direct@example.com") {
		t.Fatalf("deliveries %+v", reqs)
	}
}

func TestWebhookDuplicatesAndRetries(t *testing.T) {
	t.Run("duplicates", func(t *testing.T) {
		s := fastSim(t)
		rc := newReceiver(t)
		addWebhook(t, s, rfsim.Webhook{Event: "lead_created", URL: rc.URL, Duplicates: 2})
		s.Lead(t, 1, "aLiCeRef", "dup@example.com")
		s.WaitIdle(t)
		reqs := rc.requests()
		if len(reqs) != 3 || reqs[0].Body != reqs[1].Body || reqs[1].Body != reqs[2].Body {
			t.Fatalf("deliveries %+v", reqs)
		}
	})
	t.Run("retries until 2xx", func(t *testing.T) {
		s := fastSim(t)
		rc := newReceiver(t, 500, 503)
		addWebhook(t, s, rfsim.Webhook{Event: "lead_created", URL: rc.URL})
		s.Lead(t, 1, "aLiCeRef", "retry@example.com")
		s.WaitIdle(t)
		d := s.Server.Deliveries()
		if len(d) != 3 || d[0].Status != 500 || d[1].Status != 503 || d[2].Status != 200 || d[2].Attempt != 3 {
			t.Fatalf("deliveries %+v", d)
		}
		if c := s.Server.Counters(); c.WebhookAttempts["lead_created"] != 3 || c.WebhookFailures["lead_created"] != 2 {
			t.Fatalf("counters %+v", c)
		}
	})
	t.Run("gives up after retries", func(t *testing.T) {
		s := fastSim(t)
		rc := newReceiver(t, 500, 500, 500, 500)
		addWebhook(t, s, rfsim.Webhook{Event: "lead_created", URL: rc.URL, Retries: ptrTo(1)})
		s.Lead(t, 1, "aLiCeRef", "giveup@example.com")
		s.WaitIdle(t)
		if d := s.Server.Deliveries(); len(d) != 2 || d[1].Status != 500 {
			t.Fatalf("deliveries %+v", d)
		}
	})
	t.Run("network error", func(t *testing.T) {
		s := fastSim(t)
		rc := newReceiver(t)
		dead := rc.URL
		rc.Close()
		addWebhook(t, s, rfsim.Webhook{Event: "lead_created", URL: dead})
		s.Lead(t, 1, "aLiCeRef", "dead@example.com")
		s.WaitIdle(t)
		d := s.Server.Deliveries()
		if len(d) != 3 || d[2].Status != 0 || d[2].Error == "" {
			t.Fatalf("deliveries %+v", d)
		}
	})
}

func TestWebhookAsync(t *testing.T) {
	// A receiver that blocks until released proves the API answered without waiting for it.
	release := make(chan struct{})
	blocked := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	t.Cleanup(blocked.Close)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // runs first, so a failing test does not hang in blocked.Close
	s := fastSim(t)
	addWebhook(t, s, rfsim.Webhook{Event: "lead_created", URL: blocked.URL, Retries: ptrTo(0)})
	wantStatus(t, s.Do(t, "POST", "/users", map[string]any{"campaign_id": 1, "first_name": "A", "email": "async@example.com",
		"referrer": map[string]any{"field": "id", "value": 1}}), 201)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Server.WaitIdle(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitIdle with a delivery in flight: %v", err)
	}
	unblock()
	s.WaitIdle(t)
	if d := s.Server.Deliveries(); len(d) != 1 || d[0].Status != 200 {
		t.Fatalf("deliveries %+v", d)
	}
}

func TestWebhookConfigValidation(t *testing.T) {
	s := demo(t)
	tests := []struct {
		name  string
		hook  rfsim.Webhook
		field string
	}{
		{"four headers", rfsim.Webhook{Event: "lead_created", URL: "http://x.test", Headers: map[string]string{"A": "1", "B": "2", "C": "3", "D": "4"}}, "headers"},
		{"unknown event", rfsim.Webhook{Event: "user.join", URL: "http://x.test"}, "event"},
		{"bad url", rfsim.Webhook{Event: "lead_created", URL: "ftp://x.test"}, "url"},
		{"bad format", rfsim.Webhook{Event: "lead_created", URL: "http://x.test", Format: "xml"}, "format"},
		{"bad method", rfsim.Webhook{Event: "lead_created", URL: "http://x.test", Method: "DELETE"}, "method"},
		{"unknown field", rfsim.Webhook{Event: "lead_created", URL: "http://x.test", Fields: map[string]string{"password": "p"}}, "fields.password"},
		{"reward field on a user event", rfsim.Webhook{Event: "lead_created", URL: "http://x.test", Fields: map[string]string{"coupon": "c"}}, "fields.coupon"},
		{"too many duplicates", rfsim.Webhook{Event: "lead_created", URL: "http://x.test", Duplicates: 11}, "duplicates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Server.AddWebhook(tt.hook)
			var e *rfsim.Error
			if !errors.As(err, &e) || e.Code != 422 || len(e.Errors[tt.field]) == 0 {
				t.Fatalf("error %v, want 422 on %s", err, tt.field)
			}
			wantInvalid(t, s.DoRaw(t, "POST", s.HTTP.URL+"/_sim/webhooks", tt.hook, nil), tt.field)
		})
	}
	if n := len(s.Server.Webhooks()); n != 0 {
		t.Fatalf("%d invalid webhooks stored", n)
	}
}

// A Reset stops the deliveries of the state it throws away: a retry waiting in its backoff is
// dropped, and an attempt on the wire is aborted. The old receivers get nothing more, nothing
// is logged, and WaitIdle does not wait for the old generation's retries.
func TestResetStopsDeliveries(t *testing.T) {
	const backoff = 2 * time.Second
	t.Run("retry waiting in backoff", func(t *testing.T) {
		s := demo(t, rfsim.WithWebhookBackoff(backoff))
		rc := newReceiver(t, 500, 500, 500)
		addWebhook(t, s, rfsim.Webhook{Event: "lead_created", URL: rc.URL})
		s.Lead(t, 1, "aLiCeRef", "retry@example.com")
		waitFor(t, "the first attempt", func() bool { return len(s.Server.Deliveries()) == 1 })

		s.Reset(t)
		idleWithin(t, s, time.Second)
		time.Sleep(backoff + 300*time.Millisecond) // past the first retry's due time
		if n := len(rc.requests()); n != 1 {
			t.Fatalf("the receiver got %d requests, want only the one before the reset", n)
		}
		if d := s.Server.Deliveries(); len(d) != 0 {
			t.Fatalf("deliveries after reset %+v", d)
		}
		if c := s.Server.Counters(); len(c.WebhookAttempts) != 0 {
			t.Fatalf("webhook counters after reset %+v", c)
		}
	})
	t.Run("attempt on the wire", func(t *testing.T) {
		s := demo(t, rfsim.WithWebhookBackoff(backoff))
		rc := newHoldingReceiver(t)
		addWebhook(t, s, rfsim.Webhook{Event: "lead_created", URL: rc.URL})
		s.Lead(t, 1, "aLiCeRef", "held@example.com")
		waitFor(t, "the attempt to arrive", func() bool { return rc.count() == 1 })

		s.Reset(t)
		idleWithin(t, s, time.Second) // not the 10 s attempt timeout
		time.Sleep(backoff + 300*time.Millisecond)
		if n := rc.count(); n != 1 {
			t.Fatalf("the receiver got %d requests, want 1", n)
		}
		if d := s.Server.Deliveries(); len(d) != 0 {
			t.Fatalf("the aborted attempt was logged: %+v", d)
		}
	})
}

// A Seed replaces the webhooks and the users they describe, so it stops deliveries in flight
// as Reset does; unlike Reset it keeps the delivery log.
func TestSeedStopsDeliveries(t *testing.T) {
	const backoff = 2 * time.Second
	s := demo(t, rfsim.WithWebhookBackoff(backoff))
	rc := newReceiver(t, 500, 500, 500)
	addWebhook(t, s, rfsim.Webhook{Event: "lead_created", URL: rc.URL})
	s.Lead(t, 1, "aLiCeRef", "retry@example.com")
	waitFor(t, "the first attempt", func() bool { return len(s.Server.Deliveries()) == 1 })

	s.SeedDemo(t)
	idleWithin(t, s, time.Second)
	time.Sleep(backoff + 300*time.Millisecond)
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("the receiver got %d requests after the seed, want only the one before", n)
	}
	if d := s.Server.Deliveries(); len(d) != 1 || d[0].Attempt != 1 || d[0].Status != 500 {
		t.Fatalf("delivery log after seed %+v", d)
	}

	// A failed seed changes nothing, so it leaves deliveries alone.
	rc2 := newReceiver(t, 500)
	addWebhook(t, s, rfsim.Webhook{Event: "lead_created", URL: rc2.URL})
	s.Lead(t, 1, "aLiCeRef", "again@example.com")
	waitFor(t, "the first attempt", func() bool { return len(rc2.requests()) == 1 })
	if err := s.Server.Seed(rfsim.SeedData{RatePerMinute: -1}); err == nil {
		t.Fatal("a negative rate seeded")
	}
	s.WaitIdle(t)
	if n := len(rc2.requests()); n != 2 {
		t.Fatalf("after a failed seed the receiver got %d requests, want the retry too", n)
	}
}
