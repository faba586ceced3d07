package rfsim_test

import (
	"strings"
	"testing"

	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

// TestDemoSeed checks that the shipped demo seed parses and says what docs/rfsim.md says.
func TestDemoSeed(t *testing.T) {
	s := demo(t)
	if s.Token != "sim_test_token" || s.Server.WebhookToken() != "sim_webhook_token" {
		t.Fatalf("tokens %q %q", s.Token, s.Server.WebhookToken())
	}
	camps := s.Server.Campaigns()
	if len(camps) != 1 || camps[0].ID != 1 || camps[0].Code != "DEMO2026" || camps[0].Status != "launched" {
		t.Fatalf("campaigns %+v", camps)
	}
	amount := s.Server.RewardDefinitions("amount")
	if len(amount) != 1 || *amount[0].Amount != 25 || amount[0].Currency != "USD" || amount[0].Recipient.Value != "person_referring" {
		t.Fatalf("amount reward %+v", amount)
	}
	coupon := s.Server.RewardDefinitions("coupon")
	if len(coupon) != 1 || coupon[0].Recipient.Value != "person_invited" {
		t.Fatalf("coupon reward %+v", coupon)
	}
	state := s.Server.State()
	if got := state.Campaigns[0].Rewards; got[0].Trigger != "qualification" || got[1].Trigger != "join" || len(got[1].Coupons) < 3 {
		t.Fatalf("definitions %+v", got)
	}

	var referrers, qualified, pending int
	for _, u := range s.Server.Users() {
		switch {
		case u.Type == "person_referring":
			referrers++
		case u.QualifiedAt != nil:
			qualified++
		default:
			pending++
		}
		if u.Type == "person_invited" {
			if ref, found := s.Server.User(*u.ReferrerID); !found || ref.Type != "person_referring" || ref.CampaignID != u.CampaignID {
				t.Fatalf("lead %d has referrer %+v", u.ID, ref)
			}
		}
	}
	if referrers != 3 || qualified != 1 || pending != 1 {
		t.Fatalf("%d referrers, %d qualified and %d pending leads", referrers, qualified, pending)
	}
	// Consistency: the qualified lead's referrer has the amount reward due; each lead holds a
	// distinct coupon from the pool.
	if due := s.Server.DueRewards("amount"); len(due) != 1 || due[0].RecipientID != 1 || *due[0].Total != 25 {
		t.Fatalf("due amount %+v", due)
	}
	seen := map[string]bool{}
	all := state.DueRewards
	for _, r := range state.IssuedRewards {
		all = append(all, r.SeedDue)
	}
	for _, c := range all {
		if c.Metric != "coupon" {
			continue
		}
		if seen[c.Coupon] || !strings.HasPrefix(c.Coupon, "WELCOME-") {
			t.Fatalf("coupon %q reused or outside the pool", c.Coupon)
		}
		seen[c.Coupon] = true
	}
	// A new lead gets the next unused coupon, not one already handed out.
	lead := s.Lead(t, 1, "cArOlRef", "fresh@example.com")
	if c := dueFor(s.Server.DueRewards("coupon"), lead.ID); len(c) != 1 || seen[*c[0].Coupon] || *c[0].Coupon == "" {
		t.Fatalf("new lead's coupon %+v", c)
	}
}

func TestSeedDefaultsAndIDs(t *testing.T) {
	s := newSim(t)
	s.MustSeed(t, rfsim.SeedData{
		Campaigns: []rfsim.SeedCampaign{{Campaign: rfsim.Campaign{ID: 7}}, {}},
		Users: []rfsim.SeedUser{
			{CampaignID: 7, FirstName: "Lee", Email: "lee@example.com", ReferrerCode: "rEfErRer"}, // referrer seeded later
			{ID: 3, CampaignID: 7, FirstName: "Ref", Email: "ref@example.com", Code: "rEfErRer"},
			{CampaignID: 8, FirstName: "Other", Email: "other@example.com"},
		},
	})
	camps := s.Server.Campaigns()
	if camps[0].ID != 7 || camps[1].ID != 8 || camps[0].Name != "Campaign 7" || camps[0].Lang != "en" || camps[0].CreatedAt != today || camps[1].Code == "" {
		t.Fatalf("campaigns %+v", camps)
	}
	users := s.Server.Users()
	if users[0].ID != 3 || users[1].ID != 4 || users[2].ID != 5 {
		t.Fatalf("ids %d %d %d", users[0].ID, users[1].ID, users[2].ID)
	}
	lead := users[1]
	if lead.Type != "person_invited" || *lead.ReferrerID != 3 || lead.Source != "Referred" || lead.SignedUpAt != today || !codeRE.MatchString(lead.Code) {
		t.Fatalf("lead %+v", lead)
	}
	if users[0].Source != "Direct" {
		t.Fatalf("seeded referrer source %q", users[0].Source)
	}
	// Created users continue after the highest id.
	if u := s.Referrer(t, 7, "next@example.com"); u.ID != 6 {
		t.Fatalf("next id %d", u.ID)
	}
}

func TestSeedFiresNothing(t *testing.T) {
	s := fastSim(t)
	rc := newReceiver(t)
	d := rfsimtest.DemoSeed(t)
	d.Webhooks = []rfsim.Webhook{{Event: "lead_created", URL: rc.URL}, {Event: "lead_qualified", URL: rc.URL}}
	d.DueRewards = nil
	d.IssuedRewards = nil
	s.MustSeed(t, d)
	s.WaitIdle(t)
	if len(rc.requests()) != 0 || len(s.Server.Deliveries()) != 0 {
		t.Fatal("seeding delivered webhooks")
	}
	for _, m := range []string{"amount", "commission", "coupon", "custom"} {
		if len(s.Server.DueRewards(m)) != 0 || len(s.Server.IssuedRewards(m)) != 0 {
			t.Fatalf("seeding created %s rewards", m)
		}
	}
}

func TestSeedValidation(t *testing.T) {
	camp := rfsim.SeedCampaign{Campaign: rfsim.Campaign{ID: 1, Code: "C1"}, Rewards: []rfsim.SeedReward{{ID: 1, Metric: "amount"}}}
	user := func(id int, email string) rfsim.SeedUser {
		return rfsim.SeedUser{ID: id, CampaignID: 1, FirstName: "U", Email: email}
	}
	tests := []struct {
		name string
		data rfsim.SeedData
		want string
	}{
		{"duplicate campaign id", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{camp, {Campaign: rfsim.Campaign{ID: 1}}}}, "duplicate id 1"},
		{"duplicate campaign code", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{camp, {Campaign: rfsim.Campaign{Code: "c1"}}}}, "duplicate code"},
		{"bad campaign status", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{{Campaign: rfsim.Campaign{Status: "live"}}}}, "status"},
		{"bad metric", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{{Rewards: []rfsim.SeedReward{{Metric: "points"}}}}}, "metric"},
		{"bad trigger", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{{Rewards: []rfsim.SeedReward{{Metric: "amount", Trigger: "payment"}}}}}, "trigger"},
		{"coupons on amount", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{{Rewards: []rfsim.SeedReward{{Metric: "amount", Coupons: []string{"X"}}}}}}, "coupon metric"},
		{"unknown campaign", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{camp}, Users: []rfsim.SeedUser{{CampaignID: 2, FirstName: "U", Email: "u@example.com"}}}, "campaign_id 2"},
		{"duplicate user id", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{camp}, Users: []rfsim.SeedUser{user(1, "a@example.com"), user(1, "b@example.com")}}, "duplicate id"},
		{"duplicate email", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{camp}, Users: []rfsim.SeedUser{user(1, "a@example.com"), user(2, "A@example.com")}}, "already taken"},
		{"bad email", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{camp}, Users: []rfsim.SeedUser{user(1, "nope")}}, "valid address"},
		{"unknown referrer code", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{camp}, Users: []rfsim.SeedUser{{CampaignID: 1, FirstName: "U", Email: "u@example.com", ReferrerCode: "ghost"}}}, "referrer_code"},
		{"qualified referrer", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{camp}, Users: []rfsim.SeedUser{{CampaignID: 1, FirstName: "U", Email: "u@example.com", QualifiedAt: ptrTo("2026-01-01")}}}, "only leads"},
		{"bad date", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{camp}, Users: []rfsim.SeedUser{{CampaignID: 1, FirstName: "U", Email: "u@example.com", SignedUpAt: "01/02/2026"}}}, "YYYY-MM-DD"},
		{"reward of unknown definition", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{camp}, DueRewards: []rfsim.SeedDue{{RewardID: 9, RecipientID: 1}}}, "reward_id 9"},
		{"due and issued share ids", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{camp}, DueRewards: []rfsim.SeedDue{{ID: 1, RewardID: 1, RecipientID: 1}},
			IssuedRewards: []rfsim.SeedIssued{{SeedDue: rfsim.SeedDue{ID: 1, RewardID: 1, RecipientID: 1}}}}, "duplicate id"},
		{"bad issued status", rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{camp}, IssuedRewards: []rfsim.SeedIssued{{SeedDue: rfsim.SeedDue{RewardID: 1, RecipientID: 1}, Status: "Cancelled"}}}, "status"},
		{"webhook with four headers", rfsim.SeedData{Webhooks: []rfsim.Webhook{{Event: "lead_created", URL: "http://x.test", Headers: map[string]string{"A": "", "B": "", "C": "", "D": ""}}}}, "headers"},
		{"bad now", rfsim.SeedData{Now: "yesterday"}, "now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := demo(t)
			err := s.Server.Seed(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			}
			if len(s.Server.Users()) != 5 {
				t.Fatal("a failed seed changed the state")
			}
		})
	}
}

func TestParseSeedStrict(t *testing.T) {
	if _, err := rfsim.ParseSeed([]byte(`{"users":[{"campaign_id":1,"first_name":"U","email":"u@example.com","referer_code":"x"}]}`)); err == nil {
		t.Fatal("a misspelt key was accepted")
	}
	if _, err := rfsim.LoadSeedFile("testdata/none.json"); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

func TestSeedNowMovesClock(t *testing.T) {
	s := newSim(t)
	s.MustSeed(t, rfsim.SeedData{Now: "2030-06-15T08:00:00Z"})
	if got := s.Server.Now().Format("2006-01-02"); got != "2030-06-15" {
		t.Fatalf("now %s", got)
	}
	s.MustSeed(t, rfsim.SeedData{}) // without now, the clock stays
	if got := s.Server.Now().Format("2006-01-02"); got != "2030-06-15" {
		t.Fatalf("now %s", got)
	}
	s.Server.Reset()
	if got := s.Server.Now().Format("2006-01-02"); got != today {
		t.Fatalf("after reset %s", got)
	}
}

// The demo seed built into the binaries parses and loads.
func TestDemoSeedLoads(t *testing.T) {
	s := rfsim.New()
	defer s.Close()
	if err := s.Seed(rfsim.DemoSeed()); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Users()); n != 5 {
		t.Fatalf("%d users", n)
	}
}
