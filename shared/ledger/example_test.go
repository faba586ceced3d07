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
	_, _ = store.Reverse(ctx, ledger.QualificationRef{LeadID: leadID, Seq: 1}, time.Time{}, "dispute dp_1 opened")
	fmt.Println(qualify("in_1")) // the dispute was won
	// Output:
	// qualified: qualification 1, intent 42#1
	// already qualified: no RF call
	// qualified: qualification 2, intent 42#2
}

// A reconciler (the sweep) finds an intent left pending by an attempt that crashed. It reads RF
// first: if the effect happened it only confirms the intent; otherwise only the caller that wins
// TakeOverIntent calls RF again.
func Example_takeOver() {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	store := ledger.NewMemory(ledger.WithClock(func() time.Time { return now }))
	_, _ = store.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: ledger.DueRewardTarget(900)})
	// ... the process dies before the RF call returns ...
	now = now.Add(20 * time.Minute)

	const staleAfter = 10 * time.Minute
	pending, _ := store.PendingIntents(ctx, ledger.IntentIssue)
	for _, it := range pending {
		if it.AttemptedAt.After(now.Add(-staleAfter)) {
			continue // may still be in flight
		}
		issuedInRF := false // ... GET the due reward from RF ...
		if issuedInRF {
			_, _ = store.FinishIntent(ctx, it.Kind, it.Target, ledger.IntentDone, "")
			continue
		}
		taken, err := store.TakeOverIntent(ctx, it.Kind, it.Target, it.Attempts, now.Add(-staleAfter))
		if err != nil {
			continue // ErrConflict: another reconciler took it over, or it was finished
		}
		fmt.Printf("attempt %d: issuing due reward %s\n", taken.Attempts, taken.Target)
		// ... POST the issue to RF ...
		_, _ = store.FinishIntent(ctx, it.Kind, it.Target, ledger.IntentDone, "")
	}
	// A second reconciler that read attempt 1 before the first one won loses.
	_, err := store.TakeOverIntent(ctx, ledger.IntentIssue, ledger.DueRewardTarget(900), 1, now.Add(-staleAfter))
	fmt.Println(errors.Is(err, ledger.ErrConflict))
	// Output:
	// attempt 2: issuing due reward 900
	// true
}

func ExampleMaskEmail() {
	email := " Frank.Jones@Example.com "
	fmt.Println(ledger.MaskEmail(email))
	fmt.Println(ledger.HashEmail(email) == ledger.HashEmail("frank.jones@example.com"))
	// Output:
	// f***@example.com
	// true
}
