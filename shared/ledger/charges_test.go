package ledger_test

import (
	"fmt"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
)

func testMapCharge(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	first, err := s.MapCharge(ctx, "ch_1", 40, "usd")
	must(t, err)
	if first.ChargeID != "ch_1" || first.LeadID != 40 || first.Currency != "usd" {
		t.Errorf("mapping = %+v", first)
	}
	sameTime(t, "MappedAt", first.MappedAt, clk.Now())

	clk.Advance(time.Hour)
	again, err := s.MapCharge(ctx, "ch_1", 40, "usd")
	must(t, err)
	if again != first {
		t.Errorf("mapping the same pair again changed it: %+v, was %+v", again, first)
	}

	existing, err := s.MapCharge(ctx, "ch_1", 41, "usd")
	wantErr(t, err, ledger.ErrConflict)
	if existing != first {
		t.Errorf("conflict returned %+v, want the existing mapping %+v", existing, first)
	}

	// Mapped before the lead is known: not found until the lead is stored.
	_, err = s.LeadByCharge(ctx, "ch_1")
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.PutLead(ctx, lead(40, "C40", "c40@example.com", 10))
	must(t, err)
	l, err := s.LeadByCharge(ctx, "ch_1")
	must(t, err)
	if l.ID != 40 || l.Code != "C40" {
		t.Errorf("LeadByCharge = %+v", l)
	}
	_, err = s.LeadByCharge(ctx, "ch_none")
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.LeadByCharge(ctx, "")
	wantErr(t, err, ledger.ErrInvalid)

	for name, args := range map[string]struct {
		charge   string
		lead     int64
		currency string
	}{
		"no charge":           {"", 40, "usd"},
		"no lead":             {"ch_2", 0, "usd"},
		"upper-case currency": {"ch_2", 40, "USD"},
		"no currency":         {"ch_2", 40, ""},
	} {
		_, err := s.MapCharge(ctx, args.charge, args.lead, args.currency)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		wantErr(t, err, ledger.ErrInvalid)
	}
	_, err = s.LeadByCharge(ctx, "ch_2")
	wantErr(t, err, ledger.ErrNotFound)
}

func testChargeRefunds(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	_, _, err := s.ApplySpend(ctx, ledger.SpendEntry{LeadID: 1, Key: "in_1#paid", Kind: ledger.SpendPayment,
		Currency: "usd", AmountMinor: 10000, InvoiceID: "in_1"})
	must(t, err)
	refund := func(lead int64, charge, cur string, cum int64) ledger.ChargeRefund {
		return ledger.ChargeRefund{LeadID: lead, ChargeID: charge, Currency: cur, CumulativeMinor: cum, At: at(5, 1)}
	}
	steps := []struct {
		name  string
		r     ledger.ChargeRefund
		delta int64
		net   map[string]int64
	}{
		{"nothing refunded yet", refund(1, "ch_1", "usd", 0), 0, map[string]int64{"usd": 10000}},
		{"first partial refund", refund(1, "ch_1", "usd", 1000), 1000, map[string]int64{"usd": 9000}},
		{"second refund, cumulative", refund(1, "ch_1", "usd", 4900), 3900, map[string]int64{"usd": 5100}},
		{"late replay of the first", refund(1, "ch_1", "usd", 1000), 0, map[string]int64{"usd": 5100}},
		{"same level again", refund(1, "ch_1", "usd", 4900), 0, map[string]int64{"usd": 5100}},
		{"another charge of the lead", refund(1, "ch_2", "eur", 300), 300, map[string]int64{"usd": 5100, "eur": -300}},
		{"another lead", refund(2, "ch_3", "usd", 700), 700, map[string]int64{"usd": -700}},
	}
	for _, st := range steps {
		sp, delta, err := s.ApplyChargeRefunded(ctx, st.r)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if delta != st.delta || sp.LeadID != st.r.LeadID || !maps.Equal(sp.Net, st.net) {
			t.Errorf("%s: delta=%d net=%v, want delta=%d net=%v", st.name, delta, sp.Net, st.delta, st.net)
		}
	}

	// Refunds of ch_1 were recorded for lead 1 in usd.
	for name, r := range map[string]ledger.ChargeRefund{
		"other currency":          refund(1, "ch_1", "eur", 6000),
		"other lead":              refund(2, "ch_1", "usd", 6000),
		"other lead, no increase": refund(2, "ch_1", "usd", 100),
	} {
		_, delta, err := s.ApplyChargeRefunded(ctx, r)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		wantErr(t, err, ledger.ErrConflict)
		if delta != 0 {
			t.Errorf("%s: delta %d", name, delta)
		}
	}

	for name, r := range map[string]ledger.ChargeRefund{
		"no lead":             refund(0, "ch_9", "usd", 1),
		"no charge":           refund(1, "", "usd", 1),
		"upper-case currency": refund(1, "ch_9", "USD", 1),
		"no currency":         refund(1, "ch_9", "", 1),
		"negative cumulative": refund(1, "ch_9", "usd", -1),
	} {
		_, _, err := s.ApplyChargeRefunded(ctx, r)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		wantErr(t, err, ledger.ErrInvalid)
	}

	for lead, want := range map[int64]map[string]int64{1: {"usd": 5100, "eur": -300}, 2: {"usd": -700}} {
		sp, err := s.SpendOf(ctx, lead)
		must(t, err)
		if !maps.Equal(sp.Net, want) {
			t.Errorf("SpendOf(%d) = %v, want %v", lead, sp.Net, want)
		}
	}
}

// Deliveries of one charge's refund levels, racing in any order: the net drops by the highest
// level exactly once, and the deltas the callers were told add up to it.
func testRaceChargeRefunds(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const n = 200
	var sum atomic.Int64
	errs := race(n, func(i int) error {
		_, delta, err := s.ApplyChargeRefunded(ctx, ledger.ChargeRefund{LeadID: 58, ChargeID: "ch_race",
			Currency: "usd", CumulativeMinor: int64(i+1) * 10})
		if delta < 0 {
			return fmt.Errorf("level %d: negative delta %d", (i+1)*10, delta)
		}
		sum.Add(delta)
		return err
	})
	tally(t, errs, nil)
	sp, err := s.SpendOf(ctx, 58)
	must(t, err)
	if sp.Net["usd"] != -n*10 {
		t.Errorf("net = %v, want usd %d", sp.Net, -n*10)
	}
	if sum.Load() != n*10 {
		t.Errorf("sum of deltas = %d, want %d", sum.Load(), n*10)
	}
	// Every level is now a replay.
	_, delta, err := s.ApplyChargeRefunded(ctx, ledger.ChargeRefund{LeadID: 58, ChargeID: "ch_race",
		Currency: "usd", CumulativeMinor: n * 10})
	must(t, err)
	if delta != 0 {
		t.Errorf("replay of the highest level: delta %d", delta)
	}
}
