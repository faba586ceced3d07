package rfsim_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

// rewardsSeed has one definition of each metric and trigger, with a two-code coupon pool.
func rewardsSeed(t *testing.T) *rfsimtest.Sim {
	t.Helper()
	s := newSim(t)
	s.MustSeed(t, rfsim.SeedData{
		Campaigns: []rfsim.SeedCampaign{{
			Campaign: rfsim.Campaign{ID: 1, Name: "Rewards", Code: "RWD"},
			Rewards: []rfsim.SeedReward{
				{ID: 1, Metric: "amount", Recipient: "person_referring", Currency: "EUR", Amount: 10},
				{ID: 2, Metric: "commission", Recipient: "person_referring", Commission: "20"},
				{ID: 3, Metric: "custom", Recipient: "person_invited", Name: "T-shirt"},
				{ID: 4, Metric: "coupon", Recipient: "person_invited", Coupons: []string{"C-ONE", "C-TWO"}},
				{ID: 5, Metric: "amount", Recipient: "person_referring", Amount: 99, Status: "inactive"},
				{ID: 6, Metric: "amount", Recipient: "person_referring", Amount: 1, Trigger: "join"},
			},
		}},
		Users: []rfsim.SeedUser{{ID: 1, CampaignID: 1, Code: "rEfErReR", FirstName: "Ref", Email: "ref@example.com"}},
	})
	return s
}

func TestDueRewardCreation(t *testing.T) {
	s := rewardsSeed(t)
	lead := s.Lead(t, 1, "rEfErReR", "l1@example.com")

	// Joining earns only the join-triggered definition.
	if due := s.Server.DueRewards("amount"); len(due) != 1 || due[0].RewardID != 6 || due[0].RecipientID != 1 || *due[0].Total != 1 {
		t.Fatalf("join rewards %+v", due)
	}
	s.Qualify(t, lead.ID)

	amount := s.Server.DueRewards("amount")
	if len(amount) != 2 || amount[1].RewardID != 1 || amount[1].RecipientID != 1 || *amount[1].Total != 10 || *amount[1].Count != 1 {
		t.Fatalf("amount %+v", amount)
	}
	if c := s.Server.DueRewards("commission"); len(c) != 1 || c[0].RecipientID != 1 || *c[0].Total != 0 || *c[0].Count != 1 {
		t.Fatalf("commission %+v", c)
	}
	if c := s.Server.DueRewards("custom"); len(c) != 1 || c[0].RecipientID != lead.ID || *c[0].Total != 0 {
		t.Fatalf("custom %+v", c)
	}
	coupon := s.Server.DueRewards("coupon")
	if len(coupon) != 1 || coupon[0].RecipientID != lead.ID || *coupon[0].Coupon != "C-ONE" || !coupon[0].CanBeIssued {
		t.Fatalf("coupon %+v", coupon)
	}

	// The pool runs dry on the third lead: an empty coupon that cannot be issued.
	for i, email := range []string{"l2@example.com", "l3@example.com"} {
		l := s.Lead(t, 1, "rEfErReR", email)
		s.Qualify(t, l.ID)
		got := dueFor(s.Server.DueRewards("coupon"), l.ID)
		want := []string{"C-TWO", ""}[i]
		if len(got) != 1 || *got[0].Coupon != want || got[0].CanBeIssued != (want != "") {
			t.Fatalf("lead %d coupon %+v, want %q", l.ID, got, want)
		}
	}

	// Wire shapes: coupon rewards carry coupon only, the others count and total only.
	var couponPage, amountPage struct{ Data []map[string]any }
	s.Do(t, "GET", "/rewards/due/coupon", nil).Decode(t, &couponPage)
	s.Do(t, "GET", "/rewards/due/amount", nil).Decode(t, &amountPage)
	wantKeys(t, couponPage.Data[0], "id", "reward_id", "recipient_id", "can_be_issued", "coupon")
	wantKeys(t, amountPage.Data[0], "id", "reward_id", "recipient_id", "can_be_issued", "count", "total")
}

func wantKeys(t *testing.T, m map[string]any, want ...string) {
	t.Helper()
	got := keys(m)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
}

func TestRewardDefinitions(t *testing.T) {
	s := rewardsSeed(t)
	get := func(metric string) []map[string]any {
		var page struct{ Data []map[string]any }
		r := s.Do(t, "GET", "/rewards/dashboard/"+metric, nil)
		wantStatus(t, r, 200)
		r.Decode(t, &page)
		return page.Data
	}
	base := []string{"id", "metric", "campaign_id", "name", "status", "auto_issue", "created_at", "type", "recipient", "method"}
	amount := get("amount")
	if len(amount) != 3 {
		t.Fatalf("amount definitions %v", amount)
	}
	wantKeys(t, amount[0], append(base, "currency", "amount")...)
	if amount[0]["currency"] != "EUR" || amount[0]["amount"] != 10.0 || amount[2]["status"] != "active" || amount[1]["status"] != "inactive" {
		t.Fatalf("amount %v", amount)
	}
	commission := get("commission")
	wantKeys(t, commission[0], append(base, "currency", "commission", "commission_cap")...)
	if commission[0]["commission"] != "20" || commission[0]["commission_cap"] != nil || commission[0]["currency"] != "USD" {
		t.Fatalf("commission %v", commission)
	}
	coupon := get("coupon")
	wantKeys(t, coupon[0], base...) // no trigger, no pool
	b, _ := json.Marshal(coupon[0])
	var typed rfsim.RewardDefinition
	_ = json.Unmarshal(b, &typed)
	want := rfsim.RewardDefinition{ID: 4, Metric: "coupon", CampaignID: 1, Name: "Reward 4", Status: "active", CreatedAt: today,
		Type: rfsim.LabelValue{Label: "Standard", Value: "standard"}, Recipient: rfsim.LabelValue{Label: "Person Invited", Value: "person_invited"},
		Method: rfsim.LabelValue{Label: "Issue Yourself", Value: "manual"}}
	if typed.ID != want.ID || typed.Type != want.Type || typed.Recipient != want.Recipient || typed.Method != want.Method || typed.CreatedAt != today {
		t.Fatalf("coupon definition %+v", typed)
	}
	if r := get("custom"); r[0]["recipient"].(map[string]any)["label"] != "Person Invited" {
		t.Fatalf("custom %v", r)
	}
	wantStatus(t, s.Do(t, "GET", "/rewards/dashboard/points", nil), 404)
}

func TestIssueAndCancel(t *testing.T) {
	for _, method := range []string{"POST", "PUT"} {
		t.Run(method, func(t *testing.T) {
			s := demo(t)
			// Demo: due reward 1 (Alice's $25 for Dave), 3 (Erin's coupon); 2 already issued.
			r := s.Do(t, method, "/rewards/issue/1", nil)
			wantStatus(t, r, 200)
			wantJSON(t, r, `{"data":{"id":1,"reward_id":1,"recipient_id":1,"status":"Issued","count":1,"total":25,"issued_at":"`+today+`"}}`)
			if due := s.Server.DueRewards("amount"); len(due) != 0 {
				t.Fatalf("issued reward still due: %+v", due)
			}
			if issued := s.Server.IssuedRewards("amount"); len(issued) != 1 || issued[0].ID != 1 {
				t.Fatalf("issued %+v", issued)
			}

			r = s.Do(t, method, "/rewards/cancel/3", nil)
			wantStatus(t, r, 200)
			wantJSON(t, r, `{"data":{"id":3,"reward_id":2,"recipient_id":5,"status":"Canceled","coupon":"WELCOME-9XTA","issued_at":"`+today+`"}}`)
			issued := s.Server.IssuedRewards("coupon")
			if len(issued) != 2 || issued[1].Status != "Canceled" {
				t.Fatalf("cancelled reward not listed as issued: %+v", issued)
			}

			for _, path := range []string{"/rewards/issue/1", "/rewards/cancel/1", "/rewards/issue/2", "/rewards/issue/3"} {
				r := s.Do(t, method, path, nil)
				wantStatus(t, r, 422)
				wantJSON(t, r, `{"code":422,"message":"This reward is not due."}`)
			}
			for _, path := range []string{"/rewards/issue/99", "/rewards/cancel/99", "/rewards/issue/abc"} {
				r := s.Do(t, method, path, nil)
				wantStatus(t, r, 404)
				wantJSON(t, r, `{"code":404,"message":"Reward not found."}`)
			}
		})
	}
}

func TestIssueNotIssuable(t *testing.T) {
	s := demo(t)
	if _, err := s.Server.SetCanBeIssued(3, false); err != nil {
		t.Fatal(err)
	}
	r := s.Do(t, "POST", "/rewards/issue/3", nil)
	wantStatus(t, r, 422)
	wantJSON(t, r, `{"code":422,"message":"This reward cannot be issued."}`)
	if len(s.Server.DueRewards("coupon")) != 1 {
		t.Fatal("a refused issue moved the reward")
	}
	wantStatus(t, s.Do(t, "POST", "/rewards/cancel/3", nil), 200) // cancelling is still allowed
}

func TestAutoIssueAndJoinTrigger(t *testing.T) {
	s := newSim(t)
	s.MustSeed(t, rfsim.SeedData{
		Campaigns: []rfsim.SeedCampaign{{Campaign: rfsim.Campaign{ID: 1, Code: "AUTO"}, Rewards: []rfsim.SeedReward{
			{ID: 1, Metric: "amount", Amount: 5, AutoIssue: true, Recipient: "person_referring"},
			{ID: 2, Metric: "coupon", Recipient: "person_invited", Trigger: "join", Coupons: []string{"J1"}},
		}}},
		Users: []rfsim.SeedUser{{ID: 1, CampaignID: 1, Code: "aUtOrEfR", FirstName: "A", Email: "a@example.com"}},
	})
	lead := s.Lead(t, 1, "aUtOrEfR", "lead@example.com")
	if due := s.Server.DueRewards("coupon"); len(due) != 1 || *due[0].Coupon != "J1" || due[0].RecipientID != lead.ID {
		t.Fatalf("join coupon %+v", due)
	}
	if len(s.Server.DueRewards("amount")) != 0 {
		t.Fatal("qualification reward earned at join")
	}
	s.Qualify(t, lead.ID)
	if len(s.Server.DueRewards("amount")) != 0 {
		t.Fatal("auto-issued reward left due")
	}
	if issued := s.Server.IssuedRewards("amount"); len(issued) != 1 || issued[0].Status != "Issued" || issued[0].RecipientID != 1 {
		t.Fatalf("auto issue %+v", issued)
	}
}

// A cancelled coupon reward keeps its code: the code never returns to the pool.
func TestCancelledCouponNotReused(t *testing.T) {
	s := demo(t)
	wantStatus(t, s.Do(t, "POST", "/rewards/cancel/3", nil), 200) // Erin's WELCOME-9XTA
	// The three codes left of the five-code pool, then nothing.
	for i := range 3 {
		lead := s.Lead(t, 1, "aLiCeRef", fmt.Sprintf("pool%d@example.com", i))
		c := dueFor(s.Server.DueRewards("coupon"), lead.ID)
		if len(c) != 1 || c[0].Coupon == nil || *c[0].Coupon == "" || *c[0].Coupon == "WELCOME-9XTA" || *c[0].Coupon == "WELCOME-7KQ2" {
			t.Fatalf("lead %d got %+v", i, c)
		}
	}
	last := s.Lead(t, 1, "aLiCeRef", "empty@example.com")
	if c := dueFor(s.Server.DueRewards("coupon"), last.ID); len(c) != 1 || *c[0].Coupon != "" || c[0].CanBeIssued {
		t.Fatalf("the pool should be exhausted: %+v", c)
	}
}
