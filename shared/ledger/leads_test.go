package ledger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
)

func lead(id int64, code, email string, campaign int64) ledger.Lead {
	l := ledger.Lead{ID: id, Code: code, ReferrerID: 900, CampaignID: campaign,
		SignedUpAt: at(1, 9), Source: ledger.SourceRFWebhook}
	l.SetEmail(email)
	return l
}

func testLeads(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	in := lead(1, "ALICE1", "  Alice@Example.com ", 10)
	in.StripeCustomerID = "cus_A"
	got, err := s.PutLead(ctx, in)
	must(t, err)
	if got.EmailMasked != "a***@example.com" || got.EmailHash != ledger.HashEmail("alice@example.com") {
		t.Errorf("email stored as %q / %q", got.EmailMasked, got.EmailHash)
	}
	sameTime(t, "UpdatedAt", got.UpdatedAt, clk.Now())

	lookups := map[string]func() (ledger.Lead, error){
		"ByID":       func() (ledger.Lead, error) { return s.LeadByID(ctx, 1) },
		"ByCode":     func() (ledger.Lead, error) { return s.LeadByCode(ctx, "ALICE1") },
		"ByEmail":    func() (ledger.Lead, error) { return leadInCampaign(ctx, s, in.EmailHash, 10) },
		"ByCustomer": func() (ledger.Lead, error) { return s.LeadByCustomer(ctx, "cus_A") },
	}
	for name, lookup := range lookups {
		l, err := lookup()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !equalLead(l, got) {
			t.Errorf("%s = %+v, want %+v", name, l, got)
		}
		sameTime(t, name+" SignedUpAt", l.SignedUpAt, at(1, 9))
	}
	all, err := s.LeadsByEmail(ctx, ledger.HashEmail("ALICE@example.com"))
	must(t, err)
	if len(all) != 1 || all[0].ID != 1 {
		t.Errorf("LeadsByEmail = %+v", all)
	}
	m, err := s.CustomerMapping(ctx, "cus_A")
	must(t, err)
	if m.LeadID != 1 || m.Rule != "lead:rf_webhook" {
		t.Errorf("mapping from PutLead = %+v", m)
	}

	// A person may be a lead in several campaigns: one lead per campaign, by campaign id.
	_, err = s.PutLead(ctx, lead(2, "ALICE2", "alice@example.com", 5))
	must(t, err)
	all, err = s.LeadsByEmail(ctx, in.EmailHash)
	must(t, err)
	if len(all) != 2 || all[0].ID != 2 || all[1].ID != 1 {
		t.Errorf("LeadsByEmail over two campaigns = %+v", all)
	}

	notFound := map[string]func() (ledger.Lead, error){
		"ByID":            func() (ledger.Lead, error) { return s.LeadByID(ctx, 404) },
		"ByCode":          func() (ledger.Lead, error) { return s.LeadByCode(ctx, "NOPE") },
		"ByEmailCampaign": func() (ledger.Lead, error) { return leadInCampaign(ctx, s, in.EmailHash, 99) },
		"ByCustomer":      func() (ledger.Lead, error) { return s.LeadByCustomer(ctx, "cus_none") },
	}
	for name, lookup := range notFound {
		if _, err := lookup(); err == nil {
			t.Errorf("%s: found a lead that does not exist", name)
		} else {
			wantErr(t, err, ledger.ErrNotFound)
		}
	}
	none, err := s.LeadsByEmail(ctx, ledger.HashEmail("nobody@example.com"))
	must(t, err)
	if len(none) != 0 {
		t.Errorf("LeadsByEmail(unknown) = %+v", none)
	}

	invalid := map[string]ledger.Lead{
		"no id":                 {Code: "X"},
		"raw email as hash":     {ID: 3, EmailHash: "alice@example.com"},
		"upper-case hex digest": {ID: 3, EmailHash: "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789"},
	}
	for name, l := range invalid {
		_, err := s.PutLead(ctx, l)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		wantErr(t, err, ledger.ErrInvalid)
	}
	_, err = s.LeadsByEmail(ctx, "alice@example.com")
	wantErr(t, err, ledger.ErrInvalid)
}

// leadInCampaign is the lead LeadsByEmail lists for the campaign (a flow picks one this way).
func leadInCampaign(ctx context.Context, s ledger.Store, emailHash string, campaignID int64) (ledger.Lead, error) {
	leads, err := s.LeadsByEmail(ctx, emailHash)
	if err != nil {
		return ledger.Lead{}, err
	}
	for _, l := range leads {
		if l.CampaignID == campaignID {
			return l, nil
		}
	}
	return ledger.Lead{}, fmt.Errorf("no lead in campaign %d: %w", campaignID, ledger.ErrNotFound)
}

// equalLead compares leads, times by instant.
func equalLead(a, b ledger.Lead) bool {
	ta, tb := [2]time.Time{a.SignedUpAt, a.UpdatedAt}, [2]time.Time{b.SignedUpAt, b.UpdatedAt}
	a.SignedUpAt, a.UpdatedAt, b.SignedUpAt, b.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return a == b && ta[0].Equal(tb[0]) && ta[1].Equal(tb[1])
}

func testLeadLookupsFollowChanges(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	old := lead(7, "OLDCODE", "old@example.com", 10)
	_, err := s.PutLead(ctx, old)
	must(t, err)
	clk.Advance(time.Minute)

	changed := lead(7, "NEWCODE", "new@example.com", 11)
	got, err := s.PutLead(ctx, changed)
	must(t, err)
	sameTime(t, "UpdatedAt", got.UpdatedAt, clk.Now())

	_, err = s.LeadByCode(ctx, "OLDCODE")
	wantErr(t, err, ledger.ErrNotFound)
	_, err = leadInCampaign(ctx, s, old.EmailHash, 10)
	wantErr(t, err, ledger.ErrNotFound)
	stale, err := s.LeadsByEmail(ctx, old.EmailHash)
	must(t, err)
	if len(stale) != 0 {
		t.Errorf("old email still finds %+v", stale)
	}

	for name, lookup := range map[string]func() (ledger.Lead, error){
		"ByCode":  func() (ledger.Lead, error) { return s.LeadByCode(ctx, "NEWCODE") },
		"ByEmail": func() (ledger.Lead, error) { return leadInCampaign(ctx, s, changed.EmailHash, 11) },
		"ByID":    func() (ledger.Lead, error) { return s.LeadByID(ctx, 7) },
	} {
		l, err := lookup()
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if l.Code != "NEWCODE" || l.EmailHash != changed.EmailHash || l.CampaignID != 11 {
			t.Errorf("%s = %+v", name, l)
		}
	}

	// Moving campaign only (same email) moves the per-campaign lookup.
	moved := changed
	moved.CampaignID = 12
	_, err = s.PutLead(ctx, moved)
	must(t, err)
	_, err = leadInCampaign(ctx, s, changed.EmailHash, 11)
	wantErr(t, err, ledger.ErrNotFound)
	all, err := s.LeadsByEmail(ctx, changed.EmailHash)
	must(t, err)
	if len(all) != 1 || all[0].CampaignID != 12 {
		t.Errorf("after moving campaign: %+v", all)
	}
}

func testLeadMerge(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	full := lead(8, "CODE8", "eight@example.com", 10)
	full.StripeCustomerID = "cus_8"
	first, err := s.PutLead(ctx, full)
	must(t, err)

	// The same lead again changes nothing, not even UpdatedAt.
	clk.Advance(time.Hour)
	again, err := s.PutLead(ctx, full)
	must(t, err)
	sameTime(t, "UpdatedAt after identical put", again.UpdatedAt, first.UpdatedAt)

	// A partial observation (an RF webhook without email or customer) keeps what is known.
	partial := ledger.Lead{ID: 8, ReferrerID: 901}
	got, err := s.PutLead(ctx, partial)
	must(t, err)
	if got.Code != "CODE8" || got.EmailHash != full.EmailHash || got.StripeCustomerID != "cus_8" ||
		got.CampaignID != 10 || got.ReferrerID != 901 || got.Source != ledger.SourceRFWebhook {
		t.Errorf("merged lead = %+v", got)
	}
	sameTime(t, "UpdatedAt after change", got.UpdatedAt, clk.Now())
	byCode, err := s.LeadByCode(ctx, "CODE8")
	must(t, err)
	if byCode.ReferrerID != 901 {
		t.Errorf("code lookup not refreshed: %+v", byCode)
	}
	byEmail, err := leadInCampaign(ctx, s, full.EmailHash, 10)
	must(t, err)
	if byEmail.ReferrerID != 901 {
		t.Errorf("email lookup not refreshed: %+v", byEmail)
	}
}

// Codes are unique in RF, but if one moves to another lead, the last writer owns the lookup and
// the previous owner's later changes must not delete it.
func testLeadLookupTakenOver(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	_, err := s.PutLead(ctx, lead(20, "SHARED", "a@example.com", 10))
	must(t, err)
	_, err = s.PutLead(ctx, lead(21, "SHARED", "a@example.com", 10))
	must(t, err)
	for name, lookup := range map[string]func() (ledger.Lead, error){
		"ByCode": func() (ledger.Lead, error) { return s.LeadByCode(ctx, "SHARED") },
		"ByEmail": func() (ledger.Lead, error) {
			return leadInCampaign(ctx, s, ledger.HashEmail("a@example.com"), 10)
		},
	} {
		l, err := lookup()
		must(t, err)
		if l.ID != 21 {
			t.Errorf("%s = lead %d, want the last writer 21", name, l.ID)
		}
	}
	// Lead 20 moves away from the code and email it lost: 21 keeps both lookups.
	_, err = s.PutLead(ctx, lead(20, "OWN20", "b@example.com", 10))
	must(t, err)
	l, err := s.LeadByCode(ctx, "SHARED")
	must(t, err)
	if l.ID != 21 {
		t.Errorf("ByCode(SHARED) = %d after lead 20 changed code", l.ID)
	}
	l, err = leadInCampaign(ctx, s, ledger.HashEmail("a@example.com"), 10)
	must(t, err)
	if l.ID != 21 {
		t.Errorf("ByEmail = %d after lead 20 changed email", l.ID)
	}
	l, err = s.LeadByCode(ctx, "OWN20")
	must(t, err)
	if l.ID != 20 {
		t.Errorf("ByCode(OWN20) = %d", l.ID)
	}
}

func testLeadCustomerConflict(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	a := lead(30, "A30", "a30@example.com", 10)
	a.StripeCustomerID = "cus_X"
	_, err := s.PutLead(ctx, a)
	must(t, err)
	b := lead(31, "B31", "b31@example.com", 10)
	b.StripeCustomerID = "cus_X"
	_, err = s.PutLead(ctx, b)
	wantErr(t, err, ledger.ErrConflict)
	// Nothing of lead 31 was written.
	_, err = s.LeadByID(ctx, 31)
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.LeadByCode(ctx, "B31")
	wantErr(t, err, ledger.ErrNotFound)
	l, err := s.LeadByCustomer(ctx, "cus_X")
	must(t, err)
	if l.ID != 30 {
		t.Errorf("LeadByCustomer = %d", l.ID)
	}
	// A customer mapped by MapCustomer first is honoured by PutLead for the same lead.
	_, err = s.MapCustomer(ctx, "cus_Y", 31, "email_index")
	must(t, err)
	b.StripeCustomerID = "cus_Y"
	_, err = s.PutLead(ctx, b)
	must(t, err)
	m, err := s.CustomerMapping(ctx, "cus_Y")
	must(t, err)
	if m.Rule != "email_index" {
		t.Errorf("PutLead replaced the first mapping's rule: %+v", m)
	}
}

func testMapCustomer(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	first, err := s.MapCustomer(ctx, "cus_1", 40, "metadata_id")
	must(t, err)
	if first.LeadID != 40 || first.Rule != "metadata_id" || first.CustomerID != "cus_1" {
		t.Errorf("mapping = %+v", first)
	}
	sameTime(t, "MappedAt", first.MappedAt, clk.Now())

	clk.Advance(time.Hour)
	again, err := s.MapCustomer(ctx, "cus_1", 40, "email_index")
	must(t, err)
	if again.Rule != "metadata_id" || !again.MappedAt.Equal(first.MappedAt) {
		t.Errorf("mapping the same pair again changed it: %+v", again)
	}

	existing, err := s.MapCustomer(ctx, "cus_1", 41, "email_index")
	wantErr(t, err, ledger.ErrConflict)
	if existing.LeadID != 40 || existing.Rule != "metadata_id" {
		t.Errorf("conflict returned %+v, want the existing mapping", existing)
	}

	// The mapping exists before the lead is known: LeadByCustomer says not found, the mapping
	// is still there.
	_, err = s.LeadByCustomer(ctx, "cus_1")
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.PutLead(ctx, lead(40, "C40", "c40@example.com", 10))
	must(t, err)
	l, err := s.LeadByCustomer(ctx, "cus_1")
	must(t, err)
	if l.ID != 40 || l.StripeCustomerID != "" {
		t.Errorf("LeadByCustomer = %+v", l)
	}

	_, err = s.CustomerMapping(ctx, "cus_none")
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.MapCustomer(ctx, "", 40, "x")
	wantErr(t, err, ledger.ErrInvalid)
	_, err = s.MapCustomer(ctx, "cus_2", 0, "x")
	wantErr(t, err, ledger.ErrInvalid)
}
