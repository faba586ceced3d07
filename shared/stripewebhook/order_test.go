package stripewebhook

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/refbridge/refbridge/shared/ledger"
)

const qualificationPath = "/api/v2/users/qualification"

// refundedEvent is the 2024-06-20 charge.refunded fixture (Erin's charge, of invoice
// in_1RbErinFirst0001) with its cumulative amount refunded and event id changed.
func refundedEvent(t *testing.T, id string, cumulative int64) []byte {
	return withEventID(t, fixture(t, "charge.refunded.2024-06-20.json"), id, func(m map[string]any) {
		m["data"].(map[string]any)["object"].(map[string]any)["amount_refunded"] = cumulative
	})
}

func mustAnswer(t *testing.T, e env, payload []byte, wantStatus, wantReasonPrefix string) {
	t.Helper()
	status, a := call(t, e, signed(payload))
	if status != 200 || a.Status != wantStatus || !strings.HasPrefix(a.Reason, wantReasonPrefix) {
		t.Fatalf("%d %+v, want %s %q…", status, a, wantStatus, wantReasonPrefix)
	}
}

// The regression: a refund processed before its payment counted (the invoice.paid deliveries
// kept failing while RF was down, say, and Stripe retries them for days) was answered 200
// ignored and lost, and the payment then qualified the refunded friend. It is held now, and
// the payment counts with it: Erin is never qualified in RF, and the refund made no RF call.
func TestRefundBeforeItsPaymentIsHeld(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		ctx := context.Background()
		mustCall(t, e, "charge.refunded.2024-06-20.json", "processed", "held")
		if n := len(e.sim.Server.Calls()); n != 0 {
			t.Fatalf("the held refund made %d RF calls", n)
		}
		h, err := e.ledger.ChargeHoldOf(ctx, "ch_3RbErinDemo0001")
		if err != nil || h.RefundedMinor != 4900 || h.InvoiceID != "in_1RbErinFirst0001" {
			t.Fatalf("hold %+v %v", h, err)
		}
		// Stripe redelivers the refund (another attempt of the same event is replayed; an event
		// of the same level, a new id): nothing changes.
		mustAnswer(t, e, refundedEvent(t, "evt_refund_again", 4900), "processed", "held")

		mustCall(t, e, "invoice.paid.2024-06-20.json", "processed", "counted")
		if erinQualified(t, e.sim) {
			t.Fatal("the refunded payment qualified Erin in RF")
		}
		if n := rfCalls(e.sim, "PUT", qualificationPath); n != 0 {
			t.Fatalf("%d qualification calls", n)
		}
		if _, err := e.ledger.LatestQualification(ctx, 5); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("the ledger has a qualification: %v", err)
		}
		if sp, _ := e.ledger.SpendOf(ctx, 5); sp.Net["usd"] != 0 {
			t.Fatalf("net %v, want usd 0", sp.Net)
		}
		if _, err := e.ledger.ChargeHoldOf(ctx, "ch_3RbErinDemo0001"); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("the hold is still there: %v", err)
		}
		// Later deliveries of the refund count nothing more; a renewal qualifies her as usual.
		mustAnswer(t, e, refundedEvent(t, "evt_refund_late", 4900), "duplicate", "")
		renewal := invoiceEvent(t, "in_renewal", func(inv map[string]any) { inv["charge"] = "ch_renewal" })
		mustAnswer(t, e, renewal, "processed", "qualified")
		if sp, _ := e.ledger.SpendOf(ctx, 5); sp.Net["usd"] != 4900 || !erinQualified(t, e.sim) {
			t.Fatalf("after the renewal: net %v, qualified %v", sp.Net, erinQualified(t, e.sim))
		}
	})
}

// A partial refund processed first leaves the payment above the threshold: it qualifies, and
// the net is what Stripe's order would give.
func TestPartialRefundBeforeItsPaymentStillQualifies(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		mustAnswer(t, e, refundedEvent(t, "evt_partial_first", 1000), "processed", "held")
		mustCall(t, e, "invoice.paid.2024-06-20.json", "processed", "qualified")
		if sp, _ := e.ledger.SpendOf(context.Background(), 5); sp.Net["usd"] != 3900 || !erinQualified(t, e.sim) {
			t.Fatalf("net %v, qualified %v", sp.Net, erinQualified(t, e.sim))
		}
		// The rest of the refund, after the payment: unqualified once.
		mustAnswer(t, e, refundedEvent(t, "evt_rest", 4900), "processed", "unqualified")
		if n := rfCalls(e.sim, "PUT", qualificationPath); n != 2 {
			t.Fatalf("%d qualification calls, want qualify + unqualify", n)
		}
	})
}

// A dispute opened before its payment counted is held the same way; winning it later (after
// the payment) qualifies Erin, once.
func TestDisputeBeforeItsPaymentIsHeld(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		ctx := context.Background()
		mustCall(t, e, "charge.dispute.created.2024-06-20.json", "processed", "held")
		if n := len(e.sim.Server.Calls()); n != 0 {
			t.Fatalf("the held dispute made %d RF calls", n)
		}
		mustCall(t, e, "invoice.paid.2024-06-20.json", "processed", "counted")
		if erinQualified(t, e.sim) {
			t.Fatal("the disputed payment qualified Erin in RF")
		}
		if sp, _ := e.ledger.SpendOf(ctx, 5); sp.Net["usd"] != 0 {
			t.Fatalf("net %v, want usd 0", sp.Net)
		}
		mustCall(t, e, "charge.dispute.closed.won.2024-06-20.json", "processed", "qualified")
		if sp, _ := e.ledger.SpendOf(ctx, 5); sp.Net["usd"] != 4900 || !erinQualified(t, e.sim) {
			t.Fatalf("after the win: net %v, qualified %v", sp.Net, erinQualified(t, e.sim))
		}
		if n := rfCalls(e.sim, "PUT", qualificationPath); n != 1 {
			t.Fatalf("%d qualification calls, want 1", n)
		}
	})
}

// Opened and won, both before the payment: the payment qualifies Erin as if there had been no
// dispute.
func TestWonDisputeBeforeItsPaymentQualifies(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		mustCall(t, e, "charge.dispute.closed.won.2024-06-20.json", "processed", "held")
		mustCall(t, e, "charge.dispute.created.2024-06-20.json", "processed", "held")
		mustCall(t, e, "invoice.paid.2024-06-20.json", "processed", "qualified")
		if sp, _ := e.ledger.SpendOf(context.Background(), 5); sp.Net["usd"] != 4900 || !erinQualified(t, e.sim) {
			t.Fatalf("net %v, qualified %v", sp.Net, erinQualified(t, e.sim))
		}
	})
}
