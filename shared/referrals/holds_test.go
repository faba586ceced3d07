package referrals

import (
	"context"
	"testing"

	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

// A payment that waits as unmatched (RF told refbridge about the lead only later) and is refunded
// meanwhile: the refund is held, and the retry that counts the payment counts it too.
func TestRefundHeldWhileItsInvoiceWaitsUnmatched(t *testing.T) {
	set := settings()
	set.CampaignIDs = nil // no RF email search: only the ledger can match
	stores(t, set, func(t *testing.T, f fixture) {
		ctx := context.Background()
		inv := invoice("in_waits", 4900)
		inv.ChargeID = "ch_waits"
		mustPay(t, f, inv, Unmatched)
		res, err := f.svc.ChargeRefunded(ctx, stripeevents.Charge{ID: "ch_waits", CustomerID: erinCus, InvoiceID: "in_waits",
			Currency: "usd", Amount: 4900, AmountRefunded: 4900}, paidAt)
		if err != nil || res.Outcome != Held {
			t.Fatalf("refund: %+v %v", res, err)
		}
		l := ledger.Lead{ID: erinID, Code: "eRiNlEad", ReferrerID: 2, CampaignID: 1, Source: ledger.SourceRFWebhook}
		l.SetEmail(erinEmail)
		if _, err := f.ledger.PutLead(ctx, l); err != nil {
			t.Fatal(err)
		}
		u, err := f.ledger.UnmatchedInvoice(ctx, "in_waits")
		if err != nil || u.ChargeID != "ch_waits" {
			t.Fatalf("unmatched %+v %v", u, err)
		}
		res, err = f.svc.RetryUnmatched(ctx, u)
		if err != nil || res.Outcome != Counted || erinQualifiedInRF(t, f) || qualificationCalls(f.sim) != 0 {
			t.Fatalf("retry: %+v %v (qualified in RF: %v)", res, err, erinQualifiedInRF(t, f))
		}
		if sp, _ := f.ledger.SpendOf(ctx, erinID); sp.Net["usd"] != 0 {
			t.Fatalf("net %v", sp.Net)
		}
	})
}
