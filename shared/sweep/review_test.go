package sweep

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

// Regression tests of the review of reward matching: each began as a failing test of a way a
// reward could be paid that should not be (or canceled although its lead paid). A sweep runs
// every 15 minutes in production; where a test depends on that, it runs one ("the schedule").

// Erin's first qualification backed Bob's $25, which was issued; she was refunded, then won the
// dispute and qualified again, and RF made no new $25 (the issued one stands, rfsim decision 9).
// Her new qualification's $25 slot stays free for ever. Three weeks later Fay, Bob's new lead,
// qualifies: her $25 must stand on her own qualification (its hold, her refund), not on Erin's
// free slot, which RF's listing showed to have made nothing since the schedule's last run.
func TestRequalifiedLeadsFreeSlotIsNotTakenByALaterLead(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		e.s.Rules.AllowMetrics = []string{"amount"} // coupons are issued by hand
		const erinsCoupon = 3
		q1, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: erin, ReferrerID: bob, At: e.clock.Now(), Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.sim.Qualify(t, erin)
		bobsForErin := oneNewDue(t, e.sim, "amount", bob, dollars25)
		e.clock.Advance(time.Minute)
		e.run(t, "first sight", func(s Summary) bool { return s.Waiting["hold"] == 3 })
		matchedTo(t, e, bobsForErin, q1.Ref())
		matchedTo(t, e, erinsCoupon, q1.Ref())

		e.clock.Advance(14*day + time.Minute)
		e.run(t, "hold over", func(s Summary) bool { return s.Issued == 2 }) // Bob's for Erin, Alice's for Dave

		// Erin is refunded: Bob's $25 issued, her coupon due → the reversal goes ahead.
		e.clock.Advance(day)
		if _, err := e.ledger.Reverse(ctx, q1.Ref(), e.clock.Now(), "refund"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sim.Server.Qualify(rfsim.UserRef{ID: erin}, false); err != nil {
			t.Fatal(err)
		}
		e.run(t, "after the refund", func(s Summary) bool { return s.Canceled == 1 })
		// Erin wins the dispute: qualified again; RF makes no new $25 (Bob's is issued).
		e.clock.Advance(day)
		if _, err := e.sim.Server.Qualify(rfsim.UserRef{ID: erin}, true); err != nil {
			t.Fatal(err)
		}
		q2, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: erin, ReferrerID: bob, At: e.clock.Now(), Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		if ids := newDue(t, e.sim, "amount", bob, dollars25); len(ids) != 0 {
			t.Fatalf("RF made %v", ids)
		}
		e.clock.Advance(15 * time.Minute)
		e.run(t, "the schedule", func(Summary) bool { return true })

		// Three weeks later Fay, Bob's new lead, joins (her coupon is seen by the schedule's
		// next run), then pays and qualifies a day later.
		e.clock.Advance(21 * day)
		fay := e.sim.Lead(t, 1, "bObbYRef", "fay@example.com")
		e.run(t, "the schedule", func(Summary) bool { return true })
		e.clock.Advance(day)
		e.run(t, "the schedule", func(Summary) bool { return true })
		e.clock.Advance(10 * time.Minute)
		qf, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: int64(fay.ID), ReferrerID: bob, At: e.clock.Now(), Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.sim.Qualify(t, fay.ID)
		bobsForFay := oneNewDue(t, e.sim, "amount", bob, dollars25)
		e.clock.Advance(5 * time.Minute)
		e.run(t, "after Fay's qualification", func(s Summary) bool { return s.Issued == 0 })
		if st := statusIn(e, "amount", bobsForFay); st != "" {
			t.Fatalf("Bob's $25 for Fay: RF status %q a few minutes after her qualification, want still due", st)
		}
		matchedTo(t, e, bobsForFay, qf.Ref())
		wantBacked(t, e, q2.Ref()) // Erin's second qualification backs nothing

		// Fay is refunded inside the hold: her $25 is canceled.
		e.clock.Advance(day)
		if _, err := e.ledger.Reverse(ctx, qf.Ref(), e.clock.Now(), "refund"); err != nil {
			t.Fatal(err)
		}
		e.run(t, "after Fay's refund", func(Summary) bool { return true })
		if st := statusIn(e, "amount", bobsForFay); st != rf.StatusCanceled {
			t.Fatalf("Bob's $25 for Fay after her refund: RF status %q, want canceled", st)
		}
	})
}

// Bob's $25 for Erin was issued by hand in RF's dashboard before the sweep saw it, so Erin's
// refund reversed her qualification (nothing it backed was issued, as far as refbridge knew),
// leaving a reversed qualification with a free slot. Fay's $25, made a day later, must not take
// it (and be canceled for Erin's refund although Fay paid).
func TestReversedQualificationsFreeSlotIsNotTakenByALaterLead(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		qe, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: erin, ReferrerID: bob, At: e.clock.Now(), Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.sim.Qualify(t, erin)
		bobsForErin := oneNewDue(t, e.sim, "amount", bob, dollars25)
		if _, err := e.sim.Server.IssueReward(int(bobsForErin)); err != nil { // by hand in RF's dashboard
			t.Fatal(err)
		}
		e.clock.Advance(day)
		if _, err := e.ledger.Reverse(ctx, qe.Ref(), e.clock.Now(), "refund"); err != nil { // nothing matched: reversed
			t.Fatal(err)
		}
		e.run(t, "the schedule", func(Summary) bool { return true })
		e.clock.Advance(day)
		fay := e.sim.Lead(t, 1, "bObbYRef", "fay@example.com")
		qf, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: int64(fay.ID), ReferrerID: bob, At: e.clock.Now(), Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.sim.Qualify(t, fay.ID)
		bobsForFay := oneNewDue(t, e.sim, "amount", bob, dollars25)
		e.clock.Advance(time.Minute)
		e.run(t, "after Fay's qualification", func(s Summary) bool { return s.Canceled == 0 })
		if st := statusIn(e, "amount", bobsForFay); st != "" {
			t.Errorf("Bob's $25 for Fay (qualified, not refunded): RF status %q, want due", st)
		}
		matchedTo(t, e, bobsForFay, qf.Ref())
	})
}

// A referrer's join reward (an RF rule may fire on join) is made by no qualification, so every
// qualification of the referrer has that definition's slot free. It must not take the oldest
// of them (whose hold ended long ago, so it would be issued at once): it is held from first sight.
func TestReferrersJoinRewardIsHeldFromFirstSight(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		d := rfsimtest.DemoSeed(t)
		d.Campaigns[0].Rewards = append(d.Campaigns[0].Rewards, rfsim.SeedReward{ID: bonus5, Metric: "amount",
			Name: "$5 per signup", Recipient: rfsim.TypeReferring, Method: "manual", Currency: "USD", Amount: 5, Trigger: "join"})
		e.sim.Reset(t)
		e.sim.MustSeed(t, d)
		if _, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: erin, ReferrerID: bob, At: e.clock.Now().Add(-30 * day), Origin: ledger.OriginRefbridge}); err != nil {
			t.Fatal(err)
		}
		e.run(t, "the schedule", func(Summary) bool { return true })
		e.clock.Advance(10 * time.Minute)
		e.sim.Lead(t, 1, "bObbYRef", "fay@example.com")
		join := oneNewDue(t, e.sim, "amount", bob, bonus5)
		e.clock.Advance(5 * time.Minute)
		e.run(t, "after Fay joined", func(Summary) bool { return true })
		if st := statusIn(e, "amount", join); st != "" {
			t.Fatalf("Bob's join reward: RF status %q at first sight, want held", st)
		}
		matchedTo(t, e, join, ledger.QualificationRef{})
		e.clock.Advance(14*day - time.Minute)
		e.run(t, "a minute before its hold ends", func(Summary) bool { return true })
		if st := statusIn(e, "amount", join); st != "" {
			t.Fatalf("Bob's join reward: RF status %q inside its hold", st)
		}
		e.clock.Advance(2 * time.Minute)
		e.run(t, "after its hold", func(Summary) bool { return true })
		if st := statusIn(e, "amount", join); st != rf.StatusIssued {
			t.Fatalf("Bob's join reward after its hold: RF status %q, want issued", st)
		}
	})
}

// The lower bound itself: Bob has an old qualification with a free $25 slot (Erin's, recorded by
// refbridge; RF made its reward long ago, before refbridge, and it was issued). A complete listing
// of the amount metric starts after it; a $25 first seen in the next listing was created after
// that start, so it cannot be Erin's, and stays unmatched. The same reward first seen by the
// first sweep after installation (no listing before it) has no lower bound and would take it.
func TestRewardAfterACompleteListingSkipsOlderQualifications(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		qe, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: erin, ReferrerID: bob, At: e.clock.Now().Add(-2 * day),
			Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		listStart := e.clock.Now()
		e.run(t, "the schedule", func(Summary) bool { return true })
		lists := readListings(t, e, Name+"-listings")
		for _, m := range rf.AllMetrics() {
			if !lists[m].Equal(listStart) {
				t.Fatalf("listings after a complete run: %v, want every metric at %v", lists, listStart)
			}
		}
		e.clock.Advance(30 * time.Minute)
		// A $25 for Bob appears: RF made it for Gus, a lead qualified outside refbridge that
		// refbridge has not heard of (yet).
		gus := e.sim.Lead(t, 1, "bObbYRef", "gus@example.com")
		e.sim.Qualify(t, gus.ID)
		gusReward := oneNewDue(t, e.sim, "amount", bob, dollars25)
		e.run(t, "the next run", func(Summary) bool { return true })
		r, err := e.ledger.DueRewardRecord(ctx, gusReward)
		if err != nil || !r.CreatedAfter.Equal(listStart) {
			t.Fatalf("due reward %d = %+v %v, want created after %v", gusReward, r, err, listStart)
		}
		matchedTo(t, e, gusReward, ledger.QualificationRef{})
		// Erin's qualification backs only her join coupon (due reward 3), which was first seen
		// by the first sweep after installation: with no lower bound it took her qualification.
		wantBacked(t, e, qe.Ref(), 3)
	})
}

// A run that resumes a pass from its checkpoint skips the rewards before it: it did not record
// them, so its listing of that metric is not complete and moves no lower bound; its listings of
// the other metrics do.
func TestResumedListingIsNotComplete(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		e.run(t, "the schedule", func(Summary) bool { return true })
		before := readListings(t, e, Name+"-listings")
		e.clock.Advance(15 * time.Minute)
		cp, _ := json.Marshal(checkpoint{Metric: rf.MetricAmount, AfterID: 1})
		if err := e.ledger.SaveCheckpoint(ctx, Name, cp); err != nil {
			t.Fatal(err)
		}
		e.run(t, "resumed", func(s Summary) bool { return s.Resumed && s.Complete })
		after := readListings(t, e, Name+"-listings")
		for _, m := range rf.AllMetrics() {
			want := e.clock.Now()
			if m == rf.MetricAmount {
				want = before[m]
			}
			if !after[m].Equal(want) {
				t.Errorf("%s listed at %v, want %v", m, after[m], want)
			}
		}
	})
}

// readListings reads the sweep's listings item.
func readListings(t *testing.T, e env, name string) listings {
	t.Helper()
	data, err := e.ledger.LoadCheckpoint(context.Background(), name)
	if err != nil {
		t.Fatalf("listings %s: %v", name, err)
	}
	out := listings{}
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// refunds is the reversal flow of refbridge's stripe-webhook on the test's ledger l (e.ledger,
// or a wrapper of it) and RF client, on the test's clock; Erin (lead 5, referred by Bob) is
// known to it by her email.
func refunds(t *testing.T, e env, l referrals.Ledger) *referrals.Service {
	t.Helper()
	th, _ := config.ParseThreshold("2000")
	lead := ledger.Lead{ID: erin, Code: "eRiNlEad", ReferrerID: bob, CampaignID: 1, Source: ledger.SourceRFWebhook}
	lead.SetEmail("erin@example.com")
	if _, err := e.ledger.PutLead(context.Background(), lead); err != nil {
		t.Fatal(err)
	}
	return referrals.New(l, e.s.RF.(*rf.Client), referrals.Settings{CampaignIDs: []int64{1}, Threshold: th}, e.clock.Now, e.s.Log)
}

var (
	erinsInvoice = stripeevents.Invoice{ID: "in_erin", CustomerID: "cus_erin", CustomerEmail: "erin@example.com",
		Currency: "usd", AmountPaid: 4900, ChargeID: "ch_erin"}
	erinsRefund = stripeevents.Charge{ID: "ch_erin", CustomerID: "cus_erin", InvoiceID: "in_erin", Currency: "usd",
		Amount: 4900, AmountRefunded: 4900}
)

// failingQualify fails the ledger's Qualify while fail > 0 (DynamoDB down, a Lambda timeout).
type failingQualify struct {
	ledger.Store
	fail atomic.Int32
}

func (f *failingQualify) Qualify(ctx context.Context, q ledger.Qualification) (ledger.Qualification, error) {
	if f.fail.Add(-1) >= 0 {
		return ledger.Qualification{}, errors.New("DynamoDB: request timed out")
	}
	return f.Store.Qualify(ctx, q)
}

// refbridge qualifies Erin in RF, but the ledger write that records it fails: 503, and Stripe
// redelivers the invoice ten minutes later, after a sweep first saw Bob's $25. The redelivery
// records the qualification with the time of the RF call that made it (from its intent), so it
// still backs that reward, and her refund cancels it. (Dated by the redelivery, it would back
// nothing: the reward would be held from first sight and issued despite the refund.)
func TestLateRecordedQualificationBacksItsReward(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		e.run(t, "the schedule", func(Summary) bool { return true })
		e.clock.Advance(15 * time.Minute)
		l := &failingQualify{Store: e.ledger}
		l.fail.Store(1)
		svc := refunds(t, e, l)
		t0 := e.clock.Now()
		if res, err := svc.InvoicePaid(ctx, erinsInvoice, t0); err == nil {
			t.Fatalf("with the ledger write failing: %+v, want an error (503)", res)
		}
		bobs := oneNewDue(t, e.sim, "amount", bob, dollars25) // RF did qualify her
		e.clock.Advance(time.Minute)
		e.run(t, "first sight", func(Summary) bool { return true })
		matchedTo(t, e, bobs, ledger.QualificationRef{})

		e.clock.Advance(9 * time.Minute) // Stripe's redelivery
		if res, err := svc.InvoicePaid(ctx, erinsInvoice, t0); err != nil || res.Outcome != referrals.Qualified {
			t.Fatalf("redelivery: %+v %v", res, err)
		}
		q, err := e.ledger.StandingQualification(ctx, erin)
		if err != nil {
			t.Fatal(err)
		}
		if !q.At.Equal(t0) || !q.EarliestAt.Equal(t0) {
			t.Fatalf("qualification recorded at [%v, %v], want the RF call's time %v", q.EarliestAt, q.At, t0)
		}
		e.clock.Advance(5 * time.Minute)
		e.run(t, "the schedule", func(Summary) bool { return true })
		matchedTo(t, e, bobs, q.Ref())

		e.clock.Advance(day)
		if res, err := svc.ChargeRefunded(ctx, erinsRefund, e.clock.Now()); err != nil || res.Outcome != referrals.Unqualified {
			t.Fatalf("refund: %+v %v", res, err)
		}
		e.run(t, "after the refund", func(Summary) bool { return true })
		e.clock.Advance(14 * day)
		e.run(t, "after every hold", func(Summary) bool { return true })
		if st := statusIn(e, "amount", bobs); st != rf.StatusCanceled {
			t.Fatalf("Bob's $25 for Erin, refunded inside the hold: RF status %q, want canceled", st)
		}
	})
}

// RF shows a reward issued (an attempt of a crashed run reached it) that the ledger recorded
// canceled: the first record stands, and the contradiction is logged for someone to look at.
func TestSettlementContradictingTheRecordIsLogged(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		logs := &syncBuffer{}
		e.s.Log = observe.NewLogger(io.MultiWriter(logs, logtest.Writer(t)), observe.LogOptions{Function: "reward-sweep", Level: slog.LevelDebug})
		id := qualifyErin(t, e, 30)
		if _, err := e.ledger.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: ledger.DueRewardTarget(id), Ref: "crashed run"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sim.Server.IssueReward(int(id)); err != nil { // the crashed run's call reached RF
			t.Fatal(err)
		}
		if _, err := e.ledger.MarkRewardSettled(ctx, ledger.Settlement{ID: id, RecipientID: bob, State: ledger.RewardCanceled,
			By: ledger.SettledByRFWebhook}); err != nil {
			t.Fatal(err)
		}
		e.run(t, "reconcile", func(s Summary) bool { return s.Reconciled == 1 })
		if r, _ := e.ledger.DueRewardRecord(ctx, id); r.State != ledger.RewardCanceled {
			t.Fatalf("record %+v", r)
		}
		if !strings.Contains(logs.String(), "settled differently") || !strings.Contains(logs.String(), `"recorded":"canceled"`) {
			t.Fatalf("no warning in %s", logs.String())
		}
	})
}

// hookRF runs before() ahead of the first IssueReward call it forwards: after the sweep decided
// to issue and began the issue's intent.
type hookRF struct {
	RF
	id     int64
	before func()
}

func (h *hookRF) IssueReward(ctx context.Context, id int64) (rf.IssuedReward, error) {
	if h.before != nil && id == h.id {
		f := h.before
		h.before = nil
		f()
	}
	return h.RF.IssueReward(ctx, id)
}

// hookBegin runs before() ahead of the first BeginIntentIfStanding: after the sweep decided to
// issue, before the issue's intent is begun.
type hookBegin struct {
	ledger.Store
	before func()
}

func (h *hookBegin) BeginIntentIfStanding(ctx context.Context, in ledger.Intent, q ledger.QualificationRef) (ledger.Intent, error) {
	if h.before != nil {
		f := h.before
		h.before = nil
		f()
	}
	return h.Store.BeginIntentIfStanding(ctx, in, q)
}

// Erin is refunded while the sweep is issuing Bob's $25 for her: the sweep decided to issue
// from its read of her qualification, and then the reversal flow runs. Whichever comes first,
// the reward is never issued for a refunded lead who was unqualified as if nothing had been
// paid: either the issue was begun first, and the reversal counts the reward as issued before it
// (reversal_after_issue, recorded, nothing clawed back); or the reversal came first, the issue is
// refused, and the sweep decides again and cancels.
func TestRefundWhileTheSweepIssues(t *testing.T) {
	for _, c := range []struct {
		name string
		hook func(e env, reward int64, refund func())
		want referrals.Outcome
	}{
		{"refund after the issue began", func(e env, reward int64, refund func()) {
			e.s.RF = &hookRF{RF: e.s.RF, id: reward, before: refund}
		}, referrals.ReversedAfterIssue},
		{"refund between the decision and the issue", func(e env, _ int64, refund func()) {
			e.s.Ledger = &hookBegin{Store: e.ledger, before: refund}
		}, referrals.Unqualified},
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
				bobs := oneNewDue(t, e.sim, "amount", bob, dollars25)
				q, err := e.ledger.StandingQualification(ctx, erin)
				if err != nil {
					t.Fatal(err)
				}
				e.clock.Advance(time.Minute)
				e.run(t, "first sight", func(s Summary) bool { return s.Waiting["hold"] == 2 })
				matchedTo(t, e, bobs, q.Ref())
				e.clock.Advance(14 * day)

				var res referrals.Result
				refund := func() {
					var err error
					if res, err = svc.ChargeRefunded(ctx, erinsRefund, e.clock.Now()); err != nil {
						t.Errorf("refund: %v", err)
					}
				}
				c.hook(e, bobs, refund)
				sum, err := e.s.Run(ctx)
				if err != nil || sum.Failed != 0 {
					t.Fatalf("run: %+v %v", sum, err)
				}
				if res.Outcome != c.want {
					t.Fatalf("refund: %+v, want %s", res, c.want)
				}
				rec, err := e.ledger.DueRewardRecord(ctx, bobs)
				if err != nil {
					t.Fatal(err)
				}
				st := statusIn(e, "amount", bobs)
				erinInRF, _ := e.sim.Server.User(erin)
				switch c.want {
				case referrals.ReversedAfterIssue:
					// Issued, and recorded so: the reversal knew, and left RF as it was.
					if st != rf.StatusIssued || rec.State != ledger.RewardIssued || erinInRF.QualifiedAt == nil {
						t.Fatalf("RF status %q, ledger %s, Erin qualified in RF %v; want issued, issued, qualified", st, rec.State, erinInRF.QualifiedAt)
					}
				case referrals.Unqualified:
					if st != rf.StatusCanceled || rec.State != ledger.RewardCanceled || erinInRF.QualifiedAt != nil || issueCalls(e.sim, bobs) != 0 {
						t.Fatalf("RF status %q, ledger %s, Erin qualified in RF %v, %d issue calls; want canceled, canceled, unqualified, none",
							st, rec.State, erinInRF.QualifiedAt, issueCalls(e.sim, bobs))
					}
				}
			})
		})
	}
}
