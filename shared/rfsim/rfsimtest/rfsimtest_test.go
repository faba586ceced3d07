package rfsimtest_test

import (
	"testing"

	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

func TestSim(t *testing.T) {
	s := rfsimtest.New(t)
	d := s.SeedDemo(t)
	if len(d.Users) != 5 || s.Token != "sim_test_token" || s.URL != s.HTTP.URL+"/api/v2" {
		t.Fatalf("sim %+v", s)
	}
	ref := s.Referrer(t, 1, "helper@example.com")
	lead := s.Lead(t, 1, ref.Code, "helper-lead@example.com")
	if lead.ReferrerID == nil || *lead.ReferrerID != ref.ID {
		t.Fatalf("lead %+v", lead)
	}
	if q := s.Qualify(t, lead.ID); q.QualifiedAt == nil {
		t.Fatalf("not qualified: %+v", q)
	}

	r := s.Do(t, "GET", "/users/"+lead.Code, nil)
	var got struct{ Data rfsim.User }
	r.Decode(t, &got)
	if r.Status != 200 || got.Data.ID != lead.ID {
		t.Fatalf("GET %d %s", r.Status, r.Body)
	}

	old := s.Token
	if tok := s.RotateToken(t); tok == old || s.Token != tok {
		t.Fatalf("rotation %q -> %q", old, s.Token)
	}
	if r := s.Do(t, "GET", "/users", nil); r.Status != 200 {
		t.Fatalf("helper did not follow the rotation: %d", r.Status)
	}
	if r := s.Do(t, "GET", s.URL+"/campaigns", nil); r.Status != 200 {
		t.Fatalf("absolute URL: %d", r.Status)
	}
	s.WaitIdle(t)
}

// Reset keeps Token and WebhookURL current: after a seed and a rotation they revert to the
// options' tokens, and the request helpers work at once.
func TestSimReset(t *testing.T) {
	s := rfsimtest.New(t, rfsim.WithToken("opt_token"), rfsim.WithWebhookToken("opt_hook"))
	s.MustSeed(t, rfsim.SeedData{Token: "seed_token", WebhookToken: "seed_hook"})
	s.RotateToken(t)
	s.Reset(t)
	if s.Token != "opt_token" || s.Token != s.Server.Token() || s.WebhookURL != s.HTTP.URL+"/webhook/opt_hook/qualify" {
		t.Fatalf("after reset: token %q webhook %q", s.Token, s.WebhookURL)
	}
	if r := s.Do(t, "GET", "/users", nil); r.Status != 200 {
		t.Fatalf("GET /users after reset: %d %s", r.Status, r.Body)
	}
	if r := s.DoRaw(t, "POST", s.WebhookURL, []byte("code=nobody12"), nil); r.Status != 200 {
		t.Fatalf("inbound webhook after reset: %d", r.Status)
	}
}
