package rfsim_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/rfsim"
)

// In the demo, Erin (5) is Bob's (2) pending lead; qualifying her earns Bob the $25 reward.

func TestQualifyBy(t *testing.T) {
	tests := []struct {
		name string
		body map[string]any
	}{
		{"id", map[string]any{"id": 5, "qualified": true}},
		{"id as string", map[string]any{"id": "5", "qualified": "1"}},
		{"code", map[string]any{"code": "eRiNlEad", "qualified": true}},
		{"email and campaign", map[string]any{"email": " ERIN@example.com", "campaign_id": 1, "qualified": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := demo(t)
			r := s.Do(t, "PUT", "/users/qualification", tt.body)
			wantStatus(t, r, 200)
			u := data[rfsim.User](t, r)
			if u.ID != 5 || u.QualifiedAt == nil || *u.QualifiedAt != today {
				t.Fatalf("user %+v", u)
			}
			due := dueFor(s.Server.DueRewards("amount"), 2)
			if len(due) != 1 || *due[0].Total != 25 || *due[0].Count != 1 || due[0].RewardID != 1 || !due[0].CanBeIssued {
				t.Fatalf("bob's due amount rewards %+v", due)
			}
		})
	}
}

func TestQualificationValidation(t *testing.T) {
	tests := []struct {
		name   string
		body   map[string]any
		fields []string
	}{
		{"qualified missing", map[string]any{"id": 5}, []string{"qualified"}},
		{"qualified not boolean", map[string]any{"id": 5, "qualified": "maybe"}, []string{"qualified"}},
		{"nobody named", map[string]any{"qualified": true}, []string{"id"}},
		{"id and code", map[string]any{"id": 5, "code": "eRiNlEad", "qualified": true}, []string{"id"}},
		{"id and email", map[string]any{"id": 5, "email": "erin@example.com", "campaign_id": 1, "qualified": true}, []string{"id"}},
		{"code and email", map[string]any{"code": "eRiNlEad", "email": "erin@example.com", "campaign_id": 1, "qualified": true}, []string{"code"}},
		{"email without campaign", map[string]any{"email": "erin@example.com", "qualified": true}, []string{"campaign_id"}},
		{"id not integer", map[string]any{"id": "five", "qualified": true}, []string{"id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := demo(t)
			wantInvalid(t, s.Do(t, "PUT", "/users/qualification", tt.body), tt.fields...)
			if u, _ := s.Server.User(5); u.QualifiedAt != nil {
				t.Fatal("a rejected call qualified the lead")
			}
		})
	}
}

func TestQualifyNotFound(t *testing.T) {
	s := twoCampaigns(t)
	for _, body := range []map[string]any{
		{"id": 99, "qualified": true},
		{"code": "nobody12", "qualified": true},
		{"email": "erin@example.com", "campaign_id": 2, "qualified": true}, // a lead, but of campaign 1
		{"email": "erin@example.com", "campaign_id": 7, "qualified": true},
	} {
		r := s.Do(t, "PUT", "/users/qualification", body)
		wantStatus(t, r, 404)
		wantJSON(t, r, `{"code":404,"message":"User not found."}`)
	}
}

func TestQualifyReferrerRejected(t *testing.T) {
	s := demo(t)
	for _, q := range []bool{true, false} {
		r := s.Do(t, "PUT", "/users/qualification", map[string]any{"code": "aLiCeRef", "qualified": q})
		wantStatus(t, r, 422)
		wantJSON(t, r, `{"code":422,"message":"Only referred users (leads) can be qualified."}`)
	}
}

func TestQualificationLifecycle(t *testing.T) {
	s := demo(t)
	qualify := func(q bool) rfsim.User {
		t.Helper()
		r := s.Do(t, "PUT", "/users/qualification", map[string]any{"code": "eRiNlEad", "qualified": q})
		wantStatus(t, r, 200)
		return data[rfsim.User](t, r)
	}
	bobDue := func() []rfsim.DueReward { return dueFor(s.Server.DueRewards("amount"), 2) }

	if u := qualify(true); *u.QualifiedAt != "2026-03-01" {
		t.Fatalf("qualified_at %v", u.QualifiedAt)
	}
	first := bobDue()
	if len(first) != 1 {
		t.Fatalf("due %+v", first)
	}

	// Re-qualifying is a no-op: the first date stays and nothing more is earned.
	s.Server.Advance(24 * time.Hour)
	if u := qualify(true); *u.QualifiedAt != "2026-03-01" {
		t.Fatalf("re-qualify moved qualified_at to %v", *u.QualifiedAt)
	}
	if len(bobDue()) != 1 {
		t.Fatalf("re-qualify earned again: %+v", bobDue())
	}

	// Unqualifying makes the lead pending again but leaves the due reward for the caller to cancel.
	if u := qualify(false); u.QualifiedAt != nil {
		t.Fatalf("unqualified lead has qualified_at %v", *u.QualifiedAt)
	}
	if due := bobDue(); len(due) != 1 || due[0].ID != first[0].ID {
		t.Fatalf("unqualify touched the due reward: %+v", due)
	}
	qualify(false) // unqualifying a pending lead is fine too

	// Qualifying again after an unqualification takes a new date but earns nothing new while the
	// first reward is still due.
	s.Server.Advance(24 * time.Hour)
	if u := qualify(true); *u.QualifiedAt != "2026-03-03" {
		t.Fatalf("qualified_at %v", u.QualifiedAt)
	}
	if due := bobDue(); len(due) != 1 || due[0].ID != first[0].ID {
		t.Fatalf("requalify duplicated the reward: %+v", due)
	}

	// An issued reward also blocks a second one...
	if _, err := s.Server.IssueReward(first[0].ID); err != nil {
		t.Fatal(err)
	}
	qualify(false)
	qualify(true)
	if due := bobDue(); len(due) != 0 {
		t.Fatalf("requalify after issue earned again: %+v", due)
	}

	// ...but a cancelled one can be earned again.
	s2 := demo(t)
	due := dueFor(s2.Server.DueRewards("amount"), 1) // Alice's reward for Dave
	if _, err := s2.Server.CancelReward(due[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Server.Qualify(rfsim.UserRef{ID: 4}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Server.Qualify(rfsim.UserRef{ID: 4}, true); err != nil {
		t.Fatal(err)
	}
	again := dueFor(s2.Server.DueRewards("amount"), 1)
	if len(again) != 1 || again[0].ID == due[0].ID {
		t.Fatalf("cancelled reward not earned again: %+v", again)
	}
}

func TestInboundWebhook(t *testing.T) {
	form := func(s string) []byte { return []byte(s) }
	tests := []struct {
		name      string
		ctype     string
		body      []byte
		qualified bool
	}{
		{"form code", "application/x-www-form-urlencoded", form("code=eRiNlEad"), true},
		{"json code", "application/json", []byte(`{"code":"eRiNlEad"}`), true},
		{"json without content type", "", []byte(`{"code":"eRiNlEad"}`), true},
		{"form coupon", "application/x-www-form-urlencoded", form("coupon=welcome-9xta"), true},
		{"json coupon", "application/json", []byte(`{"coupon":"WELCOME-9XTA"}`), true},
		{"form email", "application/x-www-form-urlencoded", form("email=ERIN%40example.com&campaign_id=1"), true},
		{"json email", "application/json", []byte(`{"email":"erin@example.com","campaign_id":1}`), true},
		{"email without campaign", "application/x-www-form-urlencoded", form("email=erin%40example.com"), false},
		{"unknown code", "application/x-www-form-urlencoded", form("code=nobody12"), false},
		{"unknown coupon", "application/x-www-form-urlencoded", form("coupon=NOPE"), false},
		{"unused pool coupon", "application/x-www-form-urlencoded", form("coupon=WELCOME-8VWC"), false},
		{"garbage", "application/json", []byte(`{not json`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := demo(t)
			h := http.Header{}
			if tt.ctype != "" {
				h.Set("Content-Type", tt.ctype)
			}
			r := s.DoRaw(t, "POST", s.WebhookURL, tt.body, h)
			wantStatus(t, r, 200)
			wantJSON(t, r, `{}`)
			u, _ := s.Server.User(5)
			if (u.QualifiedAt != nil) != tt.qualified {
				t.Fatalf("qualified_at %v, want qualified=%v", u.QualifiedAt, tt.qualified)
			}
			if tt.qualified && len(dueFor(s.Server.DueRewards("amount"), 2)) != 1 {
				t.Fatal("inbound qualification earned no reward")
			}
		})
	}
	t.Run("referrer code is ignored", func(t *testing.T) {
		s := fastSim(t)
		rc := newReceiver(t)
		for _, ev := range []string{"referrer_joined", "lead_created", "lead_qualified", "reward_issued"} {
			addWebhook(t, s, rfsim.Webhook{Event: ev, URL: rc.URL + "/" + ev})
		}
		dueBefore := map[string]int{}
		for _, m := range []string{"amount", "coupon"} {
			dueBefore[m] = len(s.Server.DueRewards(m))
		}
		h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
		r := s.DoRaw(t, "POST", s.WebhookURL, []byte("code=aLiCeRef"), h)
		wantStatus(t, r, 200)
		wantJSON(t, r, `{}`)
		s.WaitIdle(t)
		if u, _ := s.Server.User(1); u.QualifiedAt != nil {
			t.Fatalf("the referrer was qualified: %+v", u)
		}
		for m, n := range dueBefore {
			if got := len(s.Server.DueRewards(m)); got != n {
				t.Fatalf("%s due rewards %d -> %d", m, n, got)
			}
		}
		if len(dueFor(s.Server.DueRewards("amount"), 1)) != 1 { // only Alice's seeded reward for Dave
			t.Fatalf("due rewards for the referrer %+v", dueFor(s.Server.DueRewards("amount"), 1))
		}
		if d := s.Server.Deliveries(); len(d) != 0 || len(rc.requests()) != 0 {
			t.Fatalf("webhooks fired: deliveries %+v, received %+v", d, rc.requests())
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		s := demo(t)
		url := strings.Replace(s.WebhookURL, "sim_webhook_token", "sim_test_token", 1)
		r := s.DoRaw(t, "POST", url, []byte("code=eRiNlEad"), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
		wantStatus(t, r, 404)
		if u, _ := s.Server.User(5); u.QualifiedAt != nil {
			t.Fatal("wrong token qualified the lead")
		}
	})
	t.Run("token kept out of the call log", func(t *testing.T) {
		s := demo(t)
		s.DoRaw(t, "POST", s.WebhookURL, []byte("code=eRiNlEad"), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
		calls := s.Server.Calls()
		if len(calls) != 1 || strings.Contains(calls[0].Path, "sim_webhook_token") || calls[0].Route != "POST /webhook/{token}/qualify" {
			t.Fatalf("calls %+v", calls)
		}
	})
}
