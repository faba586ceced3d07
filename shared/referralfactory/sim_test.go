package referralfactory_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

// These tests run the client against the project's simulator of the RF API: the same calls the
// unit tests check for shape, now against a stateful server with RF's semantics.

func newSimClient(t *testing.T, sim *rfsimtest.Sim, opts ...rf.Option) *rf.Client {
	t.Helper()
	opts = append([]rf.Option{rf.WithLimiter(nil)}, opts...)
	c, err := rf.New(sim.URL, sim.Token, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func countCalls(sim *rfsimtest.Sim, method, pathPrefix string) int {
	n := 0
	for _, c := range sim.Server.Calls() {
		if c.Method == method && strings.HasPrefix(c.Path, pathPrefix) {
			n++
		}
	}
	return n
}

func TestSimulatorLifecycle(t *testing.T) {
	ctx := context.Background()
	sim := rfsimtest.New(t)
	sim.SeedDemo(t)
	c := newSimClient(t, sim)

	// A lead credited to Alice (code aLiCeRef, id 1).
	lead, err := c.CreateUser(ctx, rf.CreateUserInput{CampaignID: 1, FirstName: "Fay", Email: " Fay@Example.com",
		Referrer: rf.ReferrerByCode("aLiCeRef")})
	if err != nil {
		t.Fatalf("create lead: %v", err)
	}
	if !lead.IsLead() || lead.ReferrerID != 1 || lead.Qualified() || lead.Email != "fay@example.com" || lead.Code == "" {
		t.Fatalf("created %+v", lead)
	}

	// RF's 422s name the field, which is how callers tell "email exists" from "unknown referrer".
	_, err = c.CreateUser(ctx, rf.CreateUserInput{CampaignID: 1, FirstName: "Fay", Email: "FAY@example.com", Referrer: rf.ReferrerByCode("aLiCeRef")})
	if !rf.IsValidation(err) || !errorHasField(err, "email") {
		t.Fatalf("duplicate email: %v", err)
	}
	_, err = c.CreateUser(ctx, rf.CreateUserInput{CampaignID: 1, FirstName: "Gus", Email: "gus@example.com", Referrer: rf.ReferrerByCode("nobody00")})
	if !rf.IsValidation(err) || !errorHasField(err, "referrer") {
		t.Fatalf("unknown referrer: %v", err)
	}

	byCode, err := c.GetUser(ctx, lead.Code)
	if err != nil || byCode.ID != lead.ID {
		t.Fatalf("get by code: %+v %v", byCode, err)
	}
	byID, err := c.GetUserByID(ctx, lead.ID, "user.analytics")
	if err != nil || byID.Code != lead.Code {
		t.Fatalf("get by id: %+v %v", byID, err)
	}
	if _, err := c.GetUser(ctx, "fay@example.com"); !rf.IsNotFound(err) {
		t.Fatalf("get by email should be 404: %v", err)
	}
	found, err := c.FindUsersByEmail(ctx, 1, "FAY@EXAMPLE.COM ")
	if err != nil || len(found) != 1 || found[0].ID != lead.ID {
		t.Fatalf("find by email: %+v %v", found, err)
	}

	// Qualify by email + campaign: the referrer's amount reward becomes due.
	q, err := c.Qualify(ctx, rf.UserRef{Email: "fay@example.com", CampaignID: 1})
	if err != nil || !q.Qualified() {
		t.Fatalf("qualify: %+v %v", q, err)
	}
	sim.Server.Advance(48 * time.Hour)
	again, err := c.Qualify(ctx, rf.UserRef{ID: lead.ID})
	if err != nil || again.QualifiedAt != q.QualifiedAt {
		t.Fatalf("re-qualify changed qualified_at: %v → %v (%v)", q.QualifiedAt, again.QualifiedAt, err)
	}
	due, err := c.DueRewards(rf.MetricAmount, rf.ListOptions{PerPage: 250}).Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mine []rf.DueReward
	for _, d := range due {
		if d.RecipientID == 1 {
			mine = append(mine, d)
		}
	}
	if len(mine) != 2 { // the seeded one for Dave, and Fay's
		t.Fatalf("Alice's due amount rewards: %+v", mine)
	}
	newest := mine[len(mine)-1]
	if total, _ := newest.Total.Float64(); total != 25 || !newest.CanBeIssued {
		t.Fatalf("due reward %+v", newest)
	}

	if _, err := c.Qualify(ctx, rf.UserRef{Code: "aLiCeRef"}); !rf.IsValidation(err) {
		t.Fatalf("qualifying a referrer: %v", err)
	}
	if _, err := c.Qualify(ctx, rf.UserRef{Email: "nobody@example.com", CampaignID: 1}); !rf.IsNotFound(err) {
		t.Fatalf("qualifying an unknown email: %v", err)
	}

	// Issue once; a second issue of the same id is a 4xx, not an unknown outcome.
	issued, err := c.IssueReward(ctx, newest.ID)
	if err != nil || issued.Status != rf.StatusIssued || issued.ID != newest.ID || issued.IssuedAt.IsZero() {
		t.Fatalf("issue: %+v %v", issued, err)
	}
	_, err = c.IssueReward(ctx, newest.ID)
	if err == nil || rf.IsOutcomeUnknown(err) || rf.IsRetryable(err) {
		t.Fatalf("second issue: %v", err)
	}
	if _, err := c.IssueReward(ctx, 99999); !rf.IsNotFound(err) {
		t.Fatalf("issue unknown: %v", err)
	}
	// Cancel the seeded due reward; it shows in the issued list as Canceled.
	canceled, err := c.CancelReward(ctx, mine[0].ID)
	if err != nil || canceled.Status != rf.StatusCanceled {
		t.Fatalf("cancel: %+v %v", canceled, err)
	}
	issuedList, err := c.IssuedRewards(rf.MetricAmount, rf.ListOptions{}).Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[int64]string{}
	for _, r := range issuedList {
		statuses[r.ID] = r.Status
	}
	if statuses[newest.ID] != rf.StatusIssued || statuses[mine[0].ID] != rf.StatusCanceled {
		t.Fatalf("issued list statuses %v", statuses)
	}

	// Unqualify returns the lead to pending.
	un, err := c.Unqualify(ctx, rf.UserRef{ID: lead.ID})
	if err != nil || un.Qualified() {
		t.Fatalf("unqualify: %+v %v", un, err)
	}

	camps, err := c.Campaigns(rf.ListOptions{}).Collect(ctx)
	if err != nil || len(camps) != 1 || camps[0].Code != "DEMO2026" {
		t.Fatalf("campaigns %+v %v", camps, err)
	}
	camp, err := c.GetCampaign(ctx, "DEMO2026")
	if err != nil || camp.ID != 1 || camp.Status != "launched" {
		t.Fatalf("campaign %+v %v", camp, err)
	}
	for _, m := range rf.AllMetrics() {
		defs, err := c.RewardDefinitions(m, rf.ListOptions{}).Collect(ctx)
		if err != nil {
			t.Fatalf("definitions %s: %v", m, err)
		}
		for _, d := range defs {
			if d.Metric != m || d.CampaignID != 1 || d.Recipient.Value == "" {
				t.Errorf("definition %+v", d)
			}
		}
	}
}

func errorHasField(err error, field string) bool {
	var e *rf.Error
	return errors.As(err, &e) && e.HasField(field)
}

func TestSimulatorPaginationAndSearch(t *testing.T) {
	ctx := context.Background()
	sim := rfsimtest.New(t)
	seed := rfsim.SeedData{Campaigns: []rfsim.SeedCampaign{{Campaign: rfsim.Campaign{ID: 1, Name: "A", Code: "AAAA"}},
		{Campaign: rfsim.Campaign{ID: 2, Name: "B", Code: "BBBB"}}}}
	for i := 1; i <= 601; i++ {
		seed.Users = append(seed.Users, rfsim.SeedUser{CampaignID: 1 + i%2, FirstName: "U", Email: fmt.Sprintf("u%d@x.io", i)})
	}
	sim.MustSeed(t, seed)
	c := newSimClient(t, sim)

	sim.Server.ClearCalls()
	all, err := c.Users(rf.ListOptions{PerPage: 250}).Collect(ctx)
	if err != nil || len(all) != 601 {
		t.Fatalf("got %d users, %v", len(all), err)
	}
	seen := map[int64]bool{}
	for _, u := range all {
		if seen[u.ID] {
			t.Fatalf("user %d listed twice", u.ID)
		}
		seen[u.ID] = true
	}
	if n := countCalls(sim, "GET", "/api/v2/users"); n != 3 {
		t.Errorf("pages fetched = %d, want 3", n)
	}

	f := rf.And(rf.Eq("campaign_id", 2), rf.Where("email", "like", "u1%"))
	got, err := c.Users(rf.ListOptions{Filter: &f, PerPage: 10}).Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for i := 1; i <= 601; i++ {
		if 1+i%2 == 2 && strings.HasPrefix(fmt.Sprintf("u%d", i), "u1") {
			want++
		}
	}
	if len(got) != want {
		t.Fatalf("search returned %d, want %d", len(got), want)
	}
	for _, u := range got {
		if u.CampaignID != 2 {
			t.Fatalf("search returned campaign %d", u.CampaignID)
		}
	}
}

func TestSimulatorAuthAndRateLimit(t *testing.T) {
	ctx := context.Background()
	sim := rfsimtest.New(t, rfsim.WithRatePerMinute(5), rfsim.WithRateBlock(0, 0))
	sim.MustSeed(t, rfsim.SeedData{RatePerMinute: 5, Campaigns: []rfsim.SeedCampaign{{Campaign: rfsim.Campaign{ID: 1, Name: "A", Code: "AAAA"}}}})
	c := newSimClient(t, sim, rf.WithRetryPolicy(rf.RetryPolicy{MaxAttempts: 1}))
	var limited error
	for range 10 {
		if _, err := c.GetCampaign(ctx, "1"); err != nil {
			limited = err
			break
		}
	}
	var e *rf.Error
	if !rf.IsRateLimited(limited) || !errors.As(limited, &e) || e.RetryAfter <= 0 {
		t.Fatalf("expected a 429 with Retry-After, got %v", limited)
	}
	if st := c.Stats(); st.RateLimited != 1 {
		t.Errorf("stats %+v", st)
	}

	old := sim.Token
	sim.RotateToken(t)
	stale, _ := rf.New(sim.URL, old, rf.WithLimiter(nil))
	if _, err := stale.GetCampaign(ctx, "1"); !rf.IsUnauthorized(err) || strings.Contains(err.Error(), old) {
		t.Fatalf("old token after rotation: %v", err)
	}
}

// TestSimulatorLostAnswerIsNeverRepeated is the case the exactly-once design rests on: RF applies
// an issue but the answer is lost. The client must say "outcome unknown" and not call again, and
// reading RF's issued list shows what happened.
func TestSimulatorLostAnswerIsNeverRepeated(t *testing.T) {
	tests := []struct {
		name  string
		fault rfsim.Fault
	}{
		{"500 after applying", rfsim.Fault{Match: "/api/v2/rewards/issue/", Status: http.StatusInternalServerError, When: rfsim.WhenAfter, Count: 1}},
		{"connection reset after applying", rfsim.Fault{Match: "/api/v2/rewards/issue/", Reset: true, When: rfsim.WhenAfter, Count: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			sim := rfsimtest.New(t)
			sim.SeedDemo(t)
			if _, err := sim.Server.AddFault(tt.fault); err != nil {
				t.Fatal(err)
			}
			c := newSimClient(t, sim)
			_, err := c.IssueReward(ctx, 1)
			if !rf.IsOutcomeUnknown(err) {
				t.Fatalf("err = %v, want outcome unknown", err)
			}
			if n := countCalls(sim, "POST", "/api/v2/rewards/issue/"); n != 1 {
				t.Fatalf("issue sent %d times", n)
			}
			issued, err := c.IssuedRewards(rf.MetricAmount, rf.ListOptions{}).Collect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(issued) != 1 || issued[0].ID != 1 || issued[0].Status != rf.StatusIssued {
				t.Fatalf("issued list after a lost answer: %+v", issued)
			}
		})
	}
}

func TestSimulatorTransientFaultsAreRetried(t *testing.T) {
	ctx := context.Background()
	sim := rfsimtest.New(t)
	sim.SeedDemo(t)
	if _, err := sim.Server.AddFault(rfsim.Fault{Match: "PUT /api/v2/users/qualification", Status: 503, Count: 2}); err != nil {
		t.Fatal(err)
	}
	c := newSimClient(t, sim, rf.WithRetryPolicy(rf.RetryPolicy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, MaxRetryAfter: time.Second}))
	u, err := c.Qualify(ctx, rf.UserRef{Code: "eRiNlEad"})
	if err != nil || !u.Qualified() {
		t.Fatalf("qualify through 503s: %+v %v", u, err)
	}
	if n := countCalls(sim, "PUT", "/api/v2/users/qualification"); n != 3 {
		t.Errorf("qualification calls = %d, want 3", n)
	}
}
