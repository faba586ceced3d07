package sweep

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

// Erin's renewal after her refund: it brings her net paid amount back over the threshold.
var erinsRenewal = stripeevents.Invoice{ID: "in_erin2", CustomerID: "cus_erin", CustomerEmail: "erin@example.com",
	Currency: "usd", AmountPaid: 4900, ChargeID: "ch_erin2"}

// afterQualificationsFor runs after() once, right after the sweep reads the qualifications of
// the recipient: the sweep decides on that read, while the stripe-webhook goes on.
type afterQualificationsFor struct {
	ledger.Store
	recipient int64
	after     func()
}

func (a *afterQualificationsFor) QualificationsFor(ctx context.Context, recipientID int64) ([]ledger.Qualification, error) {
	qs, err := a.Store.QualificationsFor(ctx, recipientID)
	if a.after != nil && recipientID == a.recipient {
		f := a.after
		a.after = nil
		f()
	}
	return qs, err
}

// beforeCancel runs before() ahead of the first CancelReward call it forwards: the sweep has
// decided to cancel and begun the cancel's intent.
type beforeCancel struct {
	RF
	before func()
}

func (b *beforeCancel) CancelReward(ctx context.Context, id int64) (rf.IssuedReward, error) {
	if b.before != nil {
		f := b.before
		b.before = nil
		f()
	}
	return b.RF.CancelReward(ctx, id)
}

// Found by the reliability suite with the sweep running during the stream (seed
// 169823108019073): Erin is refunded, so the sweep decides to cancel Bob's $25 for her; her
// renewal qualifies her again in RF before the sweep's cancel reaches RF. RF made no new $25 at
// the requalification (the old one was still due), so that cancel would leave Bob without the
// reward Erin earned, for ever. Either way round, Bob's $25 for Erin must end issued: the
// requalification came first and the sweep does not cancel (the reward follows Erin's new
// qualification), or the cancel began first and the requalification waits for it (503, Stripe
// redelivers), and RF makes a new $25 when it qualifies her again.
func TestRequalifiedWhileTheSweepCancels(t *testing.T) {
	for _, c := range []struct {
		name string
		hook func(e env, renew func())
		// canceled says whether the first $25 ends canceled (and a new one is made).
		canceled bool
	}{
		{"renewal between the sweep's read and its cancel", func(e env, renew func()) {
			e.s.Ledger = &afterQualificationsFor{Store: e.ledger, recipient: bob, after: renew}
		}, false},
		{"renewal after the cancel began", func(e env, renew func()) {
			e.s.RF = &beforeCancel{RF: e.s.RF, before: renew}
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			both(t, func(t *testing.T, e env) {
				ctx := context.Background()
				d := rfsimtest.DemoSeed(t)
				d.DueRewards = d.DueRewards[:1] // Alice's $25 for Dave only: Erin's qualification backs Bob's $25 alone
				e.sim.MustSeed(t, d)
				e.run(t, "the schedule", func(Summary) bool { return true })
				svc := refunds(t, e, e.ledger)
				if res, err := svc.InvoicePaid(ctx, erinsInvoice, e.clock.Now()); err != nil || res.Outcome != referrals.Qualified {
					t.Fatalf("invoice: %+v %v", res, err)
				}
				first := oneNewDue(t, e.sim, "amount", bob, dollars25)
				q1, err := e.ledger.StandingQualification(ctx, erin)
				if err != nil {
					t.Fatal(err)
				}
				e.clock.Advance(time.Minute)
				e.run(t, "first sight", func(s Summary) bool { return s.Waiting["hold"] == 2 })
				matchedTo(t, e, first, q1.Ref())
				e.clock.Advance(day)
				if res, err := svc.ChargeRefunded(ctx, erinsRefund, e.clock.Now()); err != nil || res.Outcome != referrals.Unqualified {
					t.Fatalf("refund: %+v %v", res, err)
				}

				e.clock.Advance(time.Minute)
				var renewal referrals.Result
				var renewalErr error
				renew := func() { renewal, renewalErr = svc.InvoicePaid(ctx, erinsRenewal, e.clock.Now()) }
				plainLedger, plainRF := e.s.Ledger, e.s.RF
				c.hook(e, renew)
				sum, err := e.s.Run(ctx)
				if err != nil || sum.Failed != 0 {
					t.Fatalf("the run that decides to cancel: %+v %v", sum, err)
				}
				e.s.Ledger, e.s.RF = plainLedger, plainRF
				if renewalErr != nil {
					if !c.canceled || !errors.Is(renewalErr, referrals.ErrCancelPending) {
						t.Fatalf("renewal: %v, want it qualified, or (while the cancel is pending) %v", renewalErr, referrals.ErrCancelPending)
					}
					// Answered 503 while the cancel was pending: Stripe redelivers it.
					renewal, renewalErr = svc.InvoicePaid(ctx, erinsRenewal, e.clock.Now())
				}
				if renewalErr != nil || renewal.Outcome != referrals.Qualified {
					t.Fatalf("renewal: %+v %v", renewal, renewalErr)
				}
				q2, err := e.ledger.StandingQualification(ctx, erin)
				if err != nil || q2.Seq != 2 {
					t.Fatalf("Erin's qualification: %+v %v, want generation 2 standing", q2, err)
				}

				bobs := first
				if c.canceled {
					if st := statusIn(e, "amount", first); st != rf.StatusCanceled {
						t.Fatalf("the first $25: RF status %q, want canceled (the cancel reached RF before the requalification)", st)
					}
					bobs = oneNewDue(t, e.sim, "amount", bob, dollars25, first) // RF made a new one when it qualified Erin again
				}
				e.clock.Advance(time.Minute)
				e.run(t, "after the renewal", func(Summary) bool { return true })
				matchedTo(t, e, bobs, q2.Ref())
				e.clock.Advance(15 * day)
				e.run(t, "after the hold", func(Summary) bool { return true })
				if st := statusIn(e, "amount", bobs); st != rf.StatusIssued {
					t.Fatalf("Bob's $25 for Erin, qualified again: RF status %q, want issued", st)
				}
				if !c.canceled && statusIn(e, "amount", first) != rf.StatusIssued {
					t.Fatalf("the first $25: RF status %q, want issued", statusIn(e, "amount", first))
				}
				if ids := newDue(t, e.sim, "amount", bob, dollars25); len(ids) != 0 {
					t.Fatalf("Bob's $25 still due: %v", ids)
				}
				if u, _ := e.sim.Server.User(erin); u.QualifiedAt == nil {
					t.Fatal("Erin is not qualified in RF")
				}
				for _, id := range []int64{first, bobs} {
					if in, err := e.ledger.IntentOf(ctx, ledger.IntentCancel, ledger.DueRewardTarget(id)); err == nil && in.Status == ledger.IntentPending {
						t.Fatalf("cancel of %d left pending: %+v", id, in)
					}
				}
				if q, err := e.ledger.LatestQualification(ctx, erin); err != nil || len(q.CancelsPending) != 0 {
					t.Fatalf("Erin's qualification: %+v %v, want no pending cancel", q, err)
				}
			})
		})
	}
}

// A qualify of Erin's next generation failed (that lets the cancel begin), but a failed
// PUT /users/qualification may have been applied, its answer lost: the sweep reads RF once it
// has begun the cancel (no qualify can begin meanwhile), and cancels only if RF shows Erin not
// qualified. While she is, it waits: the renewal's redelivery records her new qualification,
// and the reward follows it.
func TestFailedRequalificationThatRFAppliedIsNotCanceled(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		first := qualifyErin(t, e, 1)
		e.run(t, "first sight", func(Summary) bool { return true })
		q1, err := e.ledger.StandingQualification(ctx, erin)
		if err != nil {
			t.Fatal(err)
		}
		matchedTo(t, e, first, q1.Ref())
		if _, err := e.ledger.Reverse(ctx, q1.Ref(), e.clock.Now(), "refund"); err != nil {
			t.Fatal(err)
		}
		// The renewal's qualify: RF applied it, the answer was lost, the attempt recorded failed.
		qualify := ledger.Intent{Kind: ledger.IntentQualify, Target: ledger.QualificationTarget(erin, 2), Ref: "invoice#in_erin2"}
		if _, err := e.ledger.BeginIntent(ctx, qualify); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ledger.FinishIntent(ctx, ledger.IntentQualify, qualify.Target, ledger.IntentFailed, "502 Bad Gateway"); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(2 * time.Minute)
		e.run(t, "Erin qualified in RF", func(s Summary) bool { return s.Waiting[ruleRequalifying] >= 1 && s.Canceled == 0 })
		if st := statusIn(e, "amount", first); st != "" {
			t.Fatalf("Bob's $25: RF status %q, want still due", st)
		}
		if in, err := e.ledger.IntentOf(ctx, ledger.IntentCancel, ledger.DueRewardTarget(first)); err != nil || in.Status != ledger.IntentFailed {
			t.Fatalf("cancel intent: %+v %v, want failed (given up before any call)", in, err)
		}
		if q, err := e.ledger.LatestQualification(ctx, erin); err != nil || len(q.CancelsPending) != 0 {
			t.Fatalf("Erin's qualification: %+v %v, want no pending cancel", q, err)
		}
		// RF shows her pending after all (the failed PUT was not applied, the unqualify was):
		// the cancel is made.
		if _, err := e.sim.Server.Qualify(rfsim.UserRef{ID: erin}, false); err != nil {
			t.Fatal(err)
		}
		e.run(t, "Erin pending in RF", func(s Summary) bool { return s.Canceled >= 1 && s.Waiting[ruleRequalifying] == 0 })
		if st := statusIn(e, "amount", first); st != rf.StatusCanceled {
			t.Fatalf("Bob's $25: RF status %q, want canceled", st)
		}
		if q, err := e.ledger.LatestQualification(ctx, erin); err != nil || len(q.CancelsPending) != 0 {
			t.Fatalf("Erin's qualification: %+v %v, want no pending cancel", q, err)
		}
		if _, err := e.ledger.BeginIntent(ctx, qualify); err != nil {
			t.Fatalf("the renewal's qualify after the cancel: %v", err)
		}
	})
}

// The same, for a cancel a crashed run left pending (it died before its call, or while giving
// the cancel up): the run that takes the stale attempt over reads RF first too.
func TestTakenOverCancelOfARequalifiedLeadIsGivenUp(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		first := qualifyErin(t, e, 1)
		e.run(t, "first sight", func(Summary) bool { return true })
		q1, err := e.ledger.StandingQualification(ctx, erin)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.ledger.Reverse(ctx, q1.Ref(), e.clock.Now(), "refund"); err != nil {
			t.Fatal(err)
		}
		qualify := ledger.Intent{Kind: ledger.IntentQualify, Target: ledger.QualificationTarget(erin, 2), Ref: "invoice#in_erin2"}
		if _, err := e.ledger.BeginIntent(ctx, qualify); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ledger.FinishIntent(ctx, ledger.IntentQualify, qualify.Target, ledger.IntentFailed, "502 Bad Gateway"); err != nil {
			t.Fatal(err)
		}
		// The crashed run's cancel, begun after that failure; Erin is qualified in RF.
		if _, err := e.ledger.BeginCancelIfNewest(ctx, ledger.Intent{Kind: ledger.IntentCancel, Target: ledger.DueRewardTarget(first), Ref: "sweep"}, q1.Ref()); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(20 * time.Minute)
		e.run(t, "the stale attempt", func(s Summary) bool { return s.Waiting[ruleRequalifying] >= 1 && s.Canceled == 0 })
		if st := statusIn(e, "amount", first); st != "" {
			t.Fatalf("Bob's $25: RF status %q, want still due", st)
		}
		if in, err := e.ledger.IntentOf(ctx, ledger.IntentCancel, ledger.DueRewardTarget(first)); err != nil || in.Status != ledger.IntentFailed || in.Attempts != 2 {
			t.Fatalf("cancel intent: %+v %v, want failed at attempt 2", in, err)
		}
		if q, err := e.ledger.LatestQualification(ctx, erin); err != nil || len(q.CancelsPending) != 0 {
			t.Fatalf("Erin's qualification: %+v %v, want no pending cancel", q, err)
		}
	})
}

// Found by the reliability suite at 10,000 events with the sweep during the stream (seed
// 169823108019073): a run refused to cancel Bob's $25 for Erin (her renewal's qualify had
// begun) and stopped at its checkpoint; the next run resumed past that reward, and Bob's $25
// for Fay, made just after Erin's requalification, took the free slot of Erin's new
// qualification, the oldest candidate. Erin's $25 could then never move there: left due for
// ever, while Fay's stood on Erin's qualification. RF made no reward at Erin's requalification
// (hers was still due), so that slot is reserved for the reward that moves to it.
func TestRequalificationsSlotIsKeptForTheRewardThatMoves(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		erins := qualifyErin(t, e, 1)
		e.run(t, "first sight", func(Summary) bool { return true })
		q1, err := e.ledger.StandingQualification(ctx, erin)
		if err != nil {
			t.Fatal(err)
		}
		matchedTo(t, e, erins, q1.Ref())
		// Erin is refunded; her renewal's qualify begins while the sweep decides.
		e.clock.Advance(time.Hour)
		if _, err := e.ledger.Reverse(ctx, q1.Ref(), e.clock.Now(), "refund"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sim.Server.Qualify(rfsim.UserRef{ID: erin}, false); err != nil {
			t.Fatal(err)
		}
		qualify := ledger.Intent{Kind: ledger.IntentQualify, Target: ledger.QualificationTarget(erin, 2), Ref: "invoice#in_erin2"}
		if _, err := e.ledger.BeginIntent(ctx, qualify); err != nil {
			t.Fatal(err)
		}
		e.run(t, "the renewal's qualify under way", func(s Summary) bool { return s.Waiting[ruleRequalifying] >= 1 && s.Canceled == 0 })
		// The renewal qualifies her in RF (no new $25: hers is still due) and is recorded; Fay,
		// Bob's new lead, qualifies a moment later, and RF makes Bob's $25 for her.
		e.sim.Qualify(t, erin)
		if ids := newDue(t, e.sim, "amount", bob, dollars25, erins); len(ids) != 0 {
			t.Fatalf("RF made %v at Erin's requalification", ids)
		}
		if _, err := e.ledger.FinishIntent(ctx, ledger.IntentQualify, qualify.Target, ledger.IntentDone, ""); err != nil {
			t.Fatal(err)
		}
		q2, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: erin, ReferrerID: bob, At: e.clock.Now(), Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Second)
		fay := e.sim.Lead(t, 1, "bObbYRef", "fay@example.com")
		qf, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: int64(fay.ID), ReferrerID: bob, At: e.clock.Now(), Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.sim.Qualify(t, fay.ID)
		fays := oneNewDue(t, e.sim, "amount", bob, dollars25, erins)
		// The next run resumes past Erin's $25 (the previous one stopped there for time).
		cp, err := json.Marshal(checkpoint{Metric: "amount", AfterID: erins})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.ledger.SaveCheckpoint(ctx, Name, cp); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Minute)
		e.run(t, "resumed past Erin's $25", func(Summary) bool { return true })
		matchedTo(t, e, fays, qf.Ref())
		e.run(t, "the next pass", func(Summary) bool { return true })
		matchedTo(t, e, erins, q2.Ref())

		e.clock.Advance(15 * day)
		e.run(t, "after the holds", func(Summary) bool { return true })
		for _, id := range []int64{erins, fays} {
			if st := statusIn(e, "amount", id); st != rf.StatusIssued {
				t.Fatalf("Bob's $25 %d: RF status %q, want issued", id, st)
			}
		}
	})
}
