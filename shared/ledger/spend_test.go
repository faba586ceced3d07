package ledger_test

import (
	"maps"
	"testing"

	"github.com/refbridge/refbridge/shared/ledger"
)

func testApplySpend(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	steps := []struct {
		name    string
		entry   ledger.SpendEntry
		applied bool
		net     map[string]int64
	}{
		{"payment", ledger.SpendEntry{LeadID: 1, Key: "in_1#paid", Kind: ledger.SpendPayment, Currency: "usd", AmountMinor: 2000, InvoiceID: "in_1", At: at(2, 1)},
			true, map[string]int64{"usd": 2000}},
		{"same key again", ledger.SpendEntry{LeadID: 1, Key: "in_1#paid", Kind: ledger.SpendPayment, Currency: "usd", AmountMinor: 2000, InvoiceID: "in_1"},
			false, map[string]int64{"usd": 2000}},
		{"same invoice, other event key", ledger.SpendEntry{LeadID: 1, Key: "ch_1#succeeded", Kind: ledger.SpendPayment, Currency: "usd", AmountMinor: 2000, InvoiceID: "in_1"},
			false, map[string]int64{"usd": 2000}},
		{"other currency", ledger.SpendEntry{LeadID: 1, Key: "in_2#paid", Kind: ledger.SpendPayment, Currency: "eur", AmountMinor: 900, InvoiceID: "in_2"},
			true, map[string]int64{"usd": 2000, "eur": 900}},
		{"partial refund", ledger.SpendEntry{LeadID: 1, Key: "re_1", Kind: ledger.SpendRefund, Currency: "usd", AmountMinor: -500, InvoiceID: "in_1"},
			true, map[string]int64{"usd": 1500, "eur": 900}},
		{"refund again", ledger.SpendEntry{LeadID: 1, Key: "re_1", Kind: ledger.SpendRefund, Currency: "usd", AmountMinor: -500},
			false, map[string]int64{"usd": 1500, "eur": 900}},
		{"dispute opened", ledger.SpendEntry{LeadID: 1, Key: "dp_1#created", Kind: ledger.SpendDisputeWithdrawn, Currency: "usd", AmountMinor: -1500},
			true, map[string]int64{"usd": 0, "eur": 900}},
		{"dispute won", ledger.SpendEntry{LeadID: 1, Key: "dp_1#won", Kind: ledger.SpendDisputeReinstated, Currency: "usd", AmountMinor: 1500},
			true, map[string]int64{"usd": 1500, "eur": 900}},
		{"zero-amount invoice", ledger.SpendEntry{LeadID: 1, Key: "in_3#paid", Kind: ledger.SpendPayment, Currency: "usd", AmountMinor: 0, InvoiceID: "in_3"},
			true, map[string]int64{"usd": 1500, "eur": 900}},
		{"another lead", ledger.SpendEntry{LeadID: 2, Key: "in_4#paid", Kind: ledger.SpendPayment, Currency: "usd", AmountMinor: 700, InvoiceID: "in_4"},
			true, map[string]int64{"usd": 700}},
	}
	for _, st := range steps {
		got, applied, err := s.ApplySpend(ctx, st.entry)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if applied != st.applied || got.LeadID != st.entry.LeadID || !maps.Equal(got.Net, st.net) {
			t.Errorf("%s: applied=%v net=%v, want applied=%v net=%v", st.name, applied, got.Net, st.applied, st.net)
		}
	}
	sp, err := s.SpendOf(ctx, 1)
	must(t, err)
	if !maps.Equal(sp.Net, map[string]int64{"usd": 1500, "eur": 900}) {
		t.Errorf("SpendOf = %v", sp.Net)
	}
	empty, err := s.SpendOf(ctx, 404)
	must(t, err)
	if empty.LeadID != 404 || len(empty.Net) != 0 {
		t.Errorf("SpendOf(no spend) = %+v", empty)
	}

	for inv, want := range map[string]bool{"in_1": true, "in_2": true, "in_3": true, "in_99": false} {
		got, err := s.InvoiceCounted(ctx, inv)
		must(t, err)
		if got != want {
			t.Errorf("InvoiceCounted(%s) = %v", inv, got)
		}
	}
	// A refund names its invoice but does not count it.
	_, _, err = s.ApplySpend(ctx, ledger.SpendEntry{LeadID: 3, Key: "re_9", Kind: ledger.SpendRefund, Currency: "usd", AmountMinor: -1, InvoiceID: "in_9"})
	must(t, err)
	if c, _ := s.InvoiceCounted(ctx, "in_9"); c {
		t.Error("a refund counted its invoice")
	}

	// The same key for a different effect is a bug upstream, not a duplicate.
	conflicts := map[string]ledger.SpendEntry{
		"other lead":     {LeadID: 2, Key: "re_1", Kind: ledger.SpendRefund, Currency: "usd", AmountMinor: -500},
		"other amount":   {LeadID: 1, Key: "re_1", Kind: ledger.SpendRefund, Currency: "usd", AmountMinor: -400},
		"other currency": {LeadID: 1, Key: "re_1", Kind: ledger.SpendRefund, Currency: "eur", AmountMinor: -500},
	}
	for name, e := range conflicts {
		_, _, err := s.ApplySpend(ctx, e)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		wantErr(t, err, ledger.ErrConflict)
	}
	sp, err = s.SpendOf(ctx, 1)
	must(t, err)
	if sp.Net["usd"] != 1500 {
		t.Errorf("a rejected entry changed the net: %v", sp.Net)
	}
}

func testSpendInvalid(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	ok := ledger.SpendEntry{LeadID: 1, Key: "k", Kind: ledger.SpendPayment, Currency: "usd", AmountMinor: 1}
	cases := map[string]func(e *ledger.SpendEntry){
		"no lead":             func(e *ledger.SpendEntry) { e.LeadID = 0 },
		"no key":              func(e *ledger.SpendEntry) { e.Key = "" },
		"upper-case currency": func(e *ledger.SpendEntry) { e.Currency = "USD" },
		"no currency":         func(e *ledger.SpendEntry) { e.Currency = "" },
		"unknown kind":        func(e *ledger.SpendEntry) { e.Kind = "chargeback" },
		"negative payment":    func(e *ledger.SpendEntry) { e.AmountMinor = -1 },
		"positive refund":     func(e *ledger.SpendEntry) { e.Kind = ledger.SpendRefund },
		"positive withdrawal": func(e *ledger.SpendEntry) { e.Kind = ledger.SpendDisputeWithdrawn },
		"negative reinstated": func(e *ledger.SpendEntry) { e.Kind, e.AmountMinor = ledger.SpendDisputeReinstated, -1 },
	}
	for name, mutate := range cases {
		e := ok
		mutate(&e)
		if _, _, err := s.ApplySpend(ctx, e); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			wantErr(t, err, ledger.ErrInvalid)
		}
	}
	sp, err := s.SpendOf(ctx, 1)
	must(t, err)
	if len(sp.Net) != 0 {
		t.Errorf("invalid entries changed the net: %v", sp.Net)
	}
}
