package ledger_test

import (
	"errors"
	"fmt"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
)

func paymentOf(lead int64, invoice, cur string, amount int64) *ledger.SpendEntry {
	return &ledger.SpendEntry{LeadID: lead, Key: invoice + "#paid", Kind: ledger.SpendPayment, Currency: cur,
		AmountMinor: amount, InvoiceID: invoice, At: at(3, 1)}
}

func refundHold(charge string, cum int64) ledger.ChargeHold {
	return ledger.ChargeHold{ChargeID: charge, InvoiceID: "in_" + charge, CustomerID: "cus_1", Currency: "usd",
		RefundedMinor: cum, RefundedAt: at(4, 1)}
}

func disputeHold(charge, dispute string, amount int64, won bool) ledger.ChargeHold {
	return ledger.ChargeHold{ChargeID: charge, Currency: "usd",
		Disputes: map[string]ledger.HeldDispute{dispute: {AmountMinor: amount, Won: won, At: at(4, 2)}}}
}

func wantNet(t *testing.T, what string, got ledger.Spend, want map[string]int64) {
	t.Helper()
	if !maps.Equal(got.Net, want) {
		t.Errorf("%s: net %v, want %v", what, got.Net, want)
	}
}

// A refund processed before its payment counted is held, and the payment's count applies it:
// the net is the same as in Stripe's order, whatever the order of arrival.
func testHoldRefundThenPayment(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	// Cumulative levels keep the highest, whatever their order; a replay changes nothing.
	for _, cum := range []int64{1000, 3000, 1000, 3000} {
		h, err := s.HoldChargeReversal(ctx, refundHold("ch_1", cum))
		must(t, err)
		if h.RefundedMinor != 3000 && cum == 3000 {
			t.Errorf("hold after level %d: refunded %d", cum, h.RefundedMinor)
		}
	}
	h, err := s.ChargeHoldOf(ctx, "ch_1")
	must(t, err)
	if h.RefundedMinor != 3000 || h.InvoiceID != "in_ch_1" || h.CustomerID != "cus_1" || h.Currency != "usd" || h.Decrease() != 3000 {
		t.Errorf("hold = %+v", h)
	}
	sameTime(t, "RefundedAt", h.RefundedAt, at(4, 1))
	sameTime(t, "FirstSeenAt", h.FirstSeenAt, clk.Now())
	sameTime(t, "ExpiresAt", h.ExpiresAt, clk.Now().Add(ledger.HoldRetention).Add(time.Second-1).Truncate(time.Second))
	_, err = s.HoldChargeReversal(ctx, ledger.ChargeHold{ChargeID: "ch_1", Currency: "eur", RefundedMinor: 5000})
	wantErr(t, err, ledger.ErrConflict)

	// The payment counts with the held refund: $49 − $30, once.
	p, err := s.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: 7, ChargeID: "ch_1", Currency: "usd", Payment: paymentOf(7, "in_ch_1", "usd", 4900)})
	must(t, err)
	if !p.Applied || p.Placed != 3000 {
		t.Errorf("placement = %+v, want applied with 3000 placed", p)
	}
	wantNet(t, "payment after its refund", p.Spend, map[string]int64{"usd": 1900})
	_, err = s.ChargeHoldOf(ctx, "ch_1")
	wantErr(t, err, ledger.ErrNotFound)
	l, err := s.LeadByCharge(ctx, "ch_1")
	if err == nil || !errors.Is(err, ledger.ErrNotFound) { // the charge is mapped; lead 7 is not stored
		t.Errorf("LeadByCharge: %v, %v", l, err)
	}
	counted, err := s.InvoiceCounted(ctx, "in_ch_1")
	must(t, err)
	if !counted {
		t.Error("invoice not counted")
	}

	// A redelivery of the payment counts nothing and still says what was placed with it.
	again, err := s.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: 7, ChargeID: "ch_1", Currency: "usd", Payment: paymentOf(7, "in_ch_1", "usd", 4900)})
	must(t, err)
	if again.Applied || again.Placed != 3000 {
		t.Errorf("redelivered payment: %+v", again)
	}
	wantNet(t, "redelivered payment", again.Spend, map[string]int64{"usd": 1900})

	// The charge is mapped now: nothing more is held, later refunds count by their increase.
	_, err = s.HoldChargeReversal(ctx, refundHold("ch_1", 4900))
	wantErr(t, err, ledger.ErrChargeMapped)
	sp, delta, err := s.ApplyChargeRefunded(ctx, ledger.ChargeRefund{LeadID: 7, ChargeID: "ch_1", Currency: "usd", CumulativeMinor: 3000})
	must(t, err)
	if delta != 0 {
		t.Errorf("the held level again: delta %d", delta)
	}
	sp, delta, err = s.ApplyChargeRefunded(ctx, ledger.ChargeRefund{LeadID: 7, ChargeID: "ch_1", Currency: "usd", CumulativeMinor: 4900})
	must(t, err)
	if delta != 1900 {
		t.Errorf("the rest of the refund: delta %d", delta)
	}
	wantNet(t, "fully refunded", sp, map[string]int64{"usd": 0})

	// A payment whose charge has nothing held places nothing.
	p, err = s.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: 7, ChargeID: "ch_2", Currency: "usd", Payment: paymentOf(7, "in_ch_2", "usd", 4900)})
	must(t, err)
	if !p.Applied || p.Placed != 0 {
		t.Errorf("plain payment: %+v", p)
	}
	wantNet(t, "plain payment", p.Spend, map[string]int64{"usd": 4900})
	// A payment without a charge (basil) counts as ApplySpend does.
	p, err = s.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: 7, Currency: "usd", Payment: paymentOf(7, "in_basil", "usd", 100)})
	must(t, err)
	wantNet(t, "basil payment", p.Spend, map[string]int64{"usd": 5000})
}

// A partial refund held before the payment leaves the net above the threshold; a full one
// leaves nothing; holds expire; invalid input is refused.
func testHoldPartialAndExpiry(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	_, err := s.HoldChargeReversal(ctx, refundHold("ch_p", 1000))
	must(t, err)
	p, err := s.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: 8, ChargeID: "ch_p", Currency: "usd", Payment: paymentOf(8, "in_p", "usd", 4900)})
	must(t, err)
	wantNet(t, "partial refund first", p.Spend, map[string]int64{"usd": 3900})

	_, err = s.HoldChargeReversal(ctx, refundHold("ch_old", 4900))
	must(t, err)
	clk.Advance(ledger.HoldRetention + time.Second)
	_, err = s.ChargeHoldOf(ctx, "ch_old")
	wantErr(t, err, ledger.ErrNotFound)
	p, err = s.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: 9, ChargeID: "ch_old", Currency: "usd", Payment: paymentOf(9, "in_old", "usd", 4900)})
	must(t, err)
	if p.Placed != 0 {
		t.Errorf("an expired hold was placed: %+v", p)
	}
	wantNet(t, "expired hold", p.Spend, map[string]int64{"usd": 4900})
	// A new hold replaces an expired one.
	_, err = s.HoldChargeReversal(ctx, refundHold("ch_old2", 4900))
	must(t, err)
	clk.Advance(ledger.HoldRetention + time.Second)
	h, err := s.HoldChargeReversal(ctx, refundHold("ch_old2", 100))
	must(t, err)
	if h.RefundedMinor != 100 {
		t.Errorf("hold over an expired one: %+v", h)
	}

	for name, h := range map[string]ledger.ChargeHold{
		"no charge":       {Currency: "usd", RefundedMinor: 1},
		"no currency":     {ChargeID: "ch_x", RefundedMinor: 1},
		"nothing held":    {ChargeID: "ch_x", Currency: "usd"},
		"negative refund": {ChargeID: "ch_x", Currency: "usd", RefundedMinor: -1},
		"bad dispute":     {ChargeID: "ch_x", Currency: "usd", Disputes: map[string]ledger.HeldDispute{"": {AmountMinor: 1}}},
	} {
		if _, err := s.HoldChargeReversal(ctx, h); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	for name, pl := range map[string]ledger.ChargePlacement{
		"nothing":        {LeadID: 1, Currency: "usd"},
		"no lead":        {ChargeID: "ch_x", Currency: "usd"},
		"other lead":     {LeadID: 1, ChargeID: "ch_x", Currency: "usd", Payment: paymentOf(2, "in_x", "usd", 1)},
		"other currency": {LeadID: 1, ChargeID: "ch_x", Currency: "eur", Payment: paymentOf(1, "in_x", "usd", 1)},
		"not a payment":  {LeadID: 1, ChargeID: "ch_x", Currency: "usd", Payment: &ledger.SpendEntry{LeadID: 1, Key: "re_1", Kind: ledger.SpendRefund, Currency: "usd", AmountMinor: -1}},
	} {
		if _, err := s.PlaceCharge(ctx, pl); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	_, err = s.ChargeHoldOf(ctx, "ch_x")
	wantErr(t, err, ledger.ErrNotFound)
}

// A dispute processed before its payment counted is held: withdrawn, reinstated once won; the
// payment counts it under the dispute flow's own keys, so its later deliveries count nothing.
func testHoldDisputeFirst(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	_, err := s.HoldChargeReversal(ctx, disputeHold("ch_d", "dp_1", 4900, false))
	must(t, err)
	h, err := s.HoldChargeReversal(ctx, disputeHold("ch_d", "dp_1", 4900, false))
	must(t, err)
	if len(h.Disputes) != 1 || h.Decrease() != 4900 {
		t.Errorf("hold = %+v", h)
	}
	p, err := s.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: 10, ChargeID: "ch_d", Currency: "usd", Payment: paymentOf(10, "in_d", "usd", 4900)})
	must(t, err)
	if p.Placed != 4900 {
		t.Errorf("placement = %+v", p)
	}
	wantNet(t, "disputed payment", p.Spend, map[string]int64{"usd": 0})
	_, applied, err := s.ApplySpend(ctx, ledger.SpendEntry{LeadID: 10, Key: ledger.DisputeWithdrawnKey("dp_1"),
		Kind: ledger.SpendDisputeWithdrawn, Currency: "usd", AmountMinor: -4900})
	must(t, err)
	if applied {
		t.Error("the held withdrawal counted twice")
	}

	// Opened, then won, both before the payment: nothing is taken away, and the keys are used.
	_, err = s.HoldChargeReversal(ctx, disputeHold("ch_w", "dp_2", 4900, false))
	must(t, err)
	h, err = s.HoldChargeReversal(ctx, disputeHold("ch_w", "dp_2", 4900, true))
	must(t, err)
	if !h.Disputes["dp_2"].Won || h.Decrease() != 0 {
		t.Errorf("won hold = %+v", h)
	}
	// Opened again after won (a late delivery): still won.
	h, err = s.HoldChargeReversal(ctx, disputeHold("ch_w", "dp_2", 4900, false))
	must(t, err)
	if !h.Disputes["dp_2"].Won {
		t.Errorf("a late opening undid the win: %+v", h)
	}
	// A refund of the same charge, held too, then the charge found by a refund's customer
	// (no payment): mapped and placed.
	_, err = s.HoldChargeReversal(ctx, refundHold("ch_w", 500))
	must(t, err)
	p, err = s.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: 11, ChargeID: "ch_w", Currency: "usd"})
	must(t, err)
	if p.Applied || p.Placed != 500 {
		t.Errorf("placement without a payment = %+v", p)
	}
	wantNet(t, "won dispute and refund placed", p.Spend, map[string]int64{"usd": -500})
	for _, k := range []string{ledger.DisputeWithdrawnKey("dp_2"), ledger.DisputeReinstatedKey("dp_2")} {
		kind, amount := ledger.SpendDisputeWithdrawn, int64(-4900)
		if k == ledger.DisputeReinstatedKey("dp_2") {
			kind, amount = ledger.SpendDisputeReinstated, 4900
		}
		_, applied, err := s.ApplySpend(ctx, ledger.SpendEntry{LeadID: 11, Key: k, Kind: kind, Currency: "usd", AmountMinor: amount})
		must(t, err)
		if applied {
			t.Errorf("%s counted twice", k)
		}
	}
	p, err = s.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: 11, ChargeID: "ch_w", Currency: "usd", Payment: paymentOf(11, "in_w", "usd", 4900)})
	must(t, err)
	wantNet(t, "then its payment", p.Spend, map[string]int64{"usd": 4400})

	// Mapped to another lead: a payment counts alone, a placement without one conflicts.
	_, err = s.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: 12, ChargeID: "ch_w", Currency: "usd"})
	wantErr(t, err, ledger.ErrConflict)
	p, err = s.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: 12, ChargeID: "ch_w", Currency: "usd", Payment: paymentOf(12, "in_other", "usd", 700)})
	must(t, err)
	if !p.Applied || p.Placed != 0 {
		t.Errorf("payment of another lead's charge: %+v", p)
	}
	wantNet(t, "another lead's charge", p.Spend, map[string]int64{"usd": 700})
	l, err := s.SpendOf(ctx, 11)
	must(t, err)
	wantNet(t, "the first lead", l, map[string]int64{"usd": 4400})
}

// Refund levels, a dispute and redeliveries of the payment, all at once, in any order: the net
// ends at the payment minus the highest level and the withdrawal, each counted once. A
// reversal that finds the charge mapped is applied to the lead, as the flows do.
func testRaceHoldAndPlace(t *testing.T, newStore newStoreFunc) {
	for round := range 3 {
		s, _ := newStore(t)
		ctx := ctxT(t)
		charge := fmt.Sprintf("ch_race%d", round)
		const levels = 12
		var applied, placed atomic.Int64
		errs := race(levels+8, func(i int) error {
			switch {
			case i < levels:
				cum := int64(i+1) * 100
				_, err := s.HoldChargeReversal(ctx, refundHold(charge, cum))
				if errors.Is(err, ledger.ErrChargeMapped) {
					_, _, err = s.ApplyChargeRefunded(ctx, ledger.ChargeRefund{LeadID: 20, ChargeID: charge, Currency: "usd", CumulativeMinor: cum})
				}
				return err
			case i == levels:
				_, err := s.HoldChargeReversal(ctx, disputeHold(charge, "dp_r", 2000, false))
				if errors.Is(err, ledger.ErrChargeMapped) {
					_, _, err = s.ApplySpend(ctx, ledger.SpendEntry{LeadID: 20, Key: ledger.DisputeWithdrawnKey("dp_r"),
						Kind: ledger.SpendDisputeWithdrawn, Currency: "usd", AmountMinor: -2000})
				}
				return err
			default:
				p, err := s.PlaceCharge(ctx, ledger.ChargePlacement{LeadID: 20, ChargeID: charge, Currency: "usd",
					Payment: paymentOf(20, "in_"+charge, "usd", 4900)})
				if p.Applied {
					applied.Add(1)
					placed.Store(p.Placed)
				}
				return err
			}
		})
		tally(t, errs, nil)
		if applied.Load() != 1 {
			t.Errorf("round %d: payment applied %d times", round, applied.Load())
		}
		sp, err := s.SpendOf(ctx, 20)
		must(t, err)
		wantNet(t, fmt.Sprintf("round %d (placed %d with the payment)", round, placed.Load()), sp, map[string]int64{"usd": 4900 - levels*100 - 2000})
		if _, err := s.ChargeHoldOf(ctx, charge); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("round %d: hold left behind: %v", round, err)
		}
	}
}
