package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
)

// A flow qualifying a lead exactly once (PRODUCT.md "Exactly once"): the intent is recorded
// before the RF call and confirmed after it. The intent's target names the qualification's
// generation, so a lead unqualified after a refund can be qualified again later.
func Example_exactlyOnce() {
	ctx := context.Background()
	store := ledger.NewMemory()
	const leadID = 42

	qualify := func(invoice string) string {
		latest, err := store.LatestQualification(ctx, leadID)
		if err == nil && latest.Standing() {
			return "already qualified: no RF call"
		}
		target := ledger.QualificationTarget(leadID, ledger.NextQualificationSeq(latest, err == nil))
		_, err = store.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentQualify, Target: target, Ref: invoice})
		switch {
		case errors.Is(err, ledger.ErrIntentDone):
			return "done before: no RF call"
		case errors.Is(err, ledger.ErrIntentPending):
			return "an earlier attempt may have reached RF: read the user from RF first"
		case err != nil:
			return "transient: answer 503"
		}
		// ... PUT /users/qualification ...
		q, err := store.Qualify(ctx, ledger.Qualification{LeadID: leadID, ReferrerID: 7,
			Origin: ledger.OriginRefbridge, InvoiceID: invoice, Rule: "metadata_id"})
		if err != nil {
			return err.Error()
		}
		if _, err := store.FinishIntent(ctx, ledger.IntentQualify, target, ledger.IntentDone, ""); err != nil {
			return err.Error()
		}
		return fmt.Sprintf("qualified: qualification %d, intent %s", q.Seq, target)
	}

	fmt.Println(qualify("in_1"))
	fmt.Println(qualify("in_2")) // a renewal
	_, _ = store.Reverse(ctx, leadID, time.Time{}, "dispute dp_1 opened")
	fmt.Println(qualify("in_1")) // the dispute was won
	// Output:
	// qualified: qualification 1, intent 42#1
	// already qualified: no RF call
	// qualified: qualification 2, intent 42#2
}

func ExampleMaskEmail() {
	email := " Frank.Jones@Example.com "
	fmt.Println(ledger.MaskEmail(email))
	fmt.Println(ledger.HashEmail(email) == ledger.HashEmail("frank.jones@example.com"))
	// Output:
	// f***@example.com
	// true
}
