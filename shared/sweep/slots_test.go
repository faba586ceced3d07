package sweep

import (
	"context"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

// The demo campaign's users and reward definitions.
const (
	alice, bob, erin = 1, 2, 5
	dollars25        = 1 // $25 to the referrer, earned on qualification
	coupon           = 2 // a welcome coupon for the lead (earned on join in the demo seed)
	bonus5           = 3 // a $5 bonus to the referrer, earned on qualification (added by a test)
	day              = 24 * time.Hour
)

// newDue lists the due rewards of the metric for the recipient and definition that are not in
// known, by id.
func newDue(t *testing.T, sim *rfsimtest.Sim, metric string, recipient, rewardID int, known ...int64) []int64 {
	t.Helper()
	var ids []int64
next:
	for _, d := range sim.Server.DueRewards(metric) {
		if d.RecipientID != recipient || d.RewardID != rewardID {
			continue
		}
		for _, k := range known {
			if int64(d.ID) == k {
				continue next
			}
		}
		ids = append(ids, int64(d.ID))
	}
	return ids
}

// oneNewDue is newDue that expects exactly one.
func oneNewDue(t *testing.T, sim *rfsimtest.Sim, metric string, recipient, rewardID int, known ...int64) int64 {
	t.Helper()
	ids := newDue(t, sim, metric, recipient, rewardID, known...)
	if len(ids) != 1 {
		t.Fatalf("due %s rewards of definition %d for user %d (besides %v): %v, want one", metric, rewardID, recipient, known, ids)
	}
	return ids[0]
}

// statusIn is the reward's status in RF's issued list of the metric ("" while it is due).
func statusIn(e env, metric string, id int64) string {
	for _, r := range e.sim.Server.IssuedRewards(metric) {
		if int64(r.ID) == id {
			return r.Status
		}
	}
	return ""
}

// matchedTo checks the qualification a due reward is matched to (zero: none).
func matchedTo(t *testing.T, e env, id int64, want ledger.QualificationRef) {
	t.Helper()
	r, err := e.ledger.DueRewardRecord(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Matched != want {
		t.Fatalf("due reward %d matched to %+v, want %+v", id, r.Matched, want)
	}
}

func (e env) run(t *testing.T, what string, check func(Summary) bool) Summary {
	t.Helper()
	sum, err := e.s.Run(context.Background())
	if err != nil || !check(sum) {
		t.Fatalf("%s: %+v %v", what, sum, err)
	}
	return sum
}

// One qualification produces the referrer's $25, the referrer's $5 bonus and the lead's coupon:
// each stands on it in its own slot, so a refund that reverses it cancels all three. (With one
// match per qualification, two of them had "no qualification behind them", and were issued
// after the refund.)
func TestOneQualificationBacksEveryRecipientsReward(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		d := rfsimtest.DemoSeed(t)
		d.Campaigns[0].Rewards[1].Trigger = "qualification" // the coupon, on qualification
		d.Campaigns[0].Rewards = append(d.Campaigns[0].Rewards, rfsim.SeedReward{ID: bonus5, Metric: "amount",
			Name: "$5 bonus", Recipient: rfsim.TypeReferring, Method: "manual", Currency: "USD", Amount: 5, Trigger: "qualification"})
		d.DueRewards = d.DueRewards[:1] // Alice's $25 for Dave only: Erin has no join coupon here
		e.sim.MustSeed(t, d)

		q, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: erin, ReferrerID: bob, At: e.clock.Now().Add(-day),
			Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.sim.Qualify(t, erin)
		bobs := oneNewDue(t, e.sim, "amount", bob, dollars25)
		bobsBonus := oneNewDue(t, e.sim, "amount", bob, bonus5)
		erins := oneNewDue(t, e.sim, "coupon", erin, coupon)

		e.run(t, "inside the hold", func(s Summary) bool { return s.Listed == 4 && s.Waiting["hold"] == 4 })
		for _, id := range []int64{bobs, bobsBonus, erins} {
			matchedTo(t, e, id, q.Ref())
		}
		for u, want := range map[int64]map[int64]int64{bob: {dollars25: bobs, bonus5: bobsBonus}, erin: {coupon: erins}} {
			qs, err := e.ledger.QualificationsFor(ctx, u)
			if err != nil || len(qs) != 1 || len(qs[0].Slots) != len(want) {
				t.Fatalf("QualificationsFor(%d) = %+v %v", u, qs, err)
			}
			for def, id := range want {
				if qs[0].Slots[def] != id {
					t.Fatalf("QualificationsFor(%d): slots %v, want %v", u, qs[0].Slots, want)
				}
			}
		}

		// Erin is refunded: the qualification is reversed, and everything it backs is canceled.
		if _, err := e.ledger.Reverse(ctx, q.Ref(), e.clock.Now(), "refund"); err != nil {
			t.Fatal(err)
		}
		e.run(t, "after the refund", func(s Summary) bool { return s.Canceled == 3 && s.Issued == 0 && s.Waiting["hold"] == 1 })
		for _, r := range []struct {
			metric string
			id     int64
		}{{"amount", bobs}, {"amount", bobsBonus}, {"coupon", erins}} {
			if st := statusIn(e, r.metric, r.id); st != rf.StatusCanceled {
				t.Fatalf("%s reward %d: RF status %q, want canceled", r.metric, r.id, st)
			}
		}
		e.clock.Advance(15 * day)
		e.run(t, "after every hold", func(s Summary) bool { return s.Issued == 1 && s.Canceled == 0 }) // Alice's for Dave
		if n := issueCalls(e.sim, 0); n != 1 || statusIn(e, "amount", 1) != rf.StatusIssued {
			t.Fatalf("%d issue calls; Alice's reward for Dave: %q", n, statusIn(e, "amount", 1))
		}
	})
}

// Alice's $25 for Dave was due before refbridge recorded any qualification of Alice's leads: the
// sweep first saw it at T0. Fay, Alice's new lead, qualifies an hour later and is refunded. The
// old reward must not take Fay's qualification (it would be canceled for Fay's refund, and
// Fay's own $25, with nothing behind it, issued); Fay's own $25, first seen after her
// qualification, stands on it and is canceled; the old one is held from first sight, then
// issued.
func TestRewardOlderThanTheQualificationIsNotMatchedToIt(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		const davesReward = 1 // the demo seed's due reward: Alice's $25 for Dave
		t0 := e.clock.Now()
		e.run(t, "first sight at T0", func(s Summary) bool { return s.Listed == 2 && s.Waiting["hold"] == 2 })
		matchedTo(t, e, davesReward, ledger.QualificationRef{})

		e.clock.Advance(time.Hour)
		fay := e.sim.Lead(t, 1, "aLiCeRef", "fay@example.com")
		q, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: int64(fay.ID), ReferrerID: alice, At: e.clock.Now(),
			Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.sim.Qualify(t, fay.ID)
		fays := oneNewDue(t, e.sim, "amount", alice, dollars25, davesReward)
		faysCoupon := oneNewDue(t, e.sim, "coupon", fay.ID, coupon)
		e.clock.Advance(time.Minute)
		e.run(t, "after Fay's qualification", func(s Summary) bool { return s.Listed == 4 && s.Waiting["hold"] == 4 })
		matchedTo(t, e, davesReward, ledger.QualificationRef{}) // older than the qualification
		matchedTo(t, e, fays, q.Ref())
		matchedTo(t, e, faysCoupon, q.Ref()) // first seen after it too (her join coupon)

		if _, err := e.ledger.Reverse(ctx, q.Ref(), e.clock.Now(), "refund"); err != nil {
			t.Fatal(err)
		}
		e.run(t, "after Fay's refund", func(s Summary) bool { return s.Canceled == 2 && s.Issued == 0 && s.Waiting["hold"] == 2 })
		if st := statusIn(e, "amount", fays); st != rf.StatusCanceled {
			t.Fatalf("Fay's $25: RF status %q, want canceled", st)
		}
		if st := statusIn(e, "amount", davesReward); st != "" {
			t.Fatalf("Alice's reward for Dave: RF status %q, want still due", st)
		}

		// The hold counts from T0, when the sweep first saw it.
		e.clock.Advance(t0.Add(14*day).Sub(e.clock.Now()) - time.Minute)
		e.run(t, "a minute before its hold ends", func(s Summary) bool { return s.Issued == 0 && s.Waiting["hold"] == 2 })
		e.clock.Advance(2 * time.Minute)
		e.run(t, "after its hold", func(s Summary) bool { return s.Issued == 2 && s.Canceled == 0 }) // and Erin's coupon
		if st := statusIn(e, "amount", davesReward); st != rf.StatusIssued {
			t.Fatalf("Alice's reward for Dave: RF status %q, want issued", st)
		}
		matchedTo(t, e, davesReward, ledger.QualificationRef{})
	})
}

// A qualification recorded up to a minute after the sweep first saw the reward still backs it
// (refbridge records a qualification just after RF makes the reward due, and clocks differ);
// one recorded later does not.
func TestMatchToleratesAMinuteOfClockSkew(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		now := e.clock.Now()
		qErin, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: erin, ReferrerID: bob, At: now.Add(59 * time.Second),
			Origin: ledger.OriginRFWebhook})
		if err != nil {
			t.Fatal(err)
		}
		e.sim.Qualify(t, erin)
		bobs := oneNewDue(t, e.sim, "amount", bob, dollars25)
		fay := e.sim.Lead(t, 1, "aLiCeRef", "fay@example.com")
		if _, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: int64(fay.ID), ReferrerID: alice, At: now.Add(61 * time.Second),
			Origin: ledger.OriginRFWebhook}); err != nil {
			t.Fatal(err)
		}
		e.sim.Qualify(t, fay.ID)
		alices := oneNewDue(t, e.sim, "amount", alice, dollars25, 1)
		e.run(t, "first sight", func(s Summary) bool { return s.Listed == 5 })
		matchedTo(t, e, bobs, qErin.Ref())
		matchedTo(t, e, alices, ledger.QualificationRef{})
		matchedTo(t, e, 1, ledger.QualificationRef{}) // Alice's for Dave: older than both
	})
}

// Erin is refunded and then wins the dispute while Bob's $25 is still due: RF keeps that one due
// reward (it makes no new one when she qualifies again), so the sweep moves its match to her new
// qualification, whose hold it then waits for, and issues it; it is never canceled.
func TestRequalifiedLeadKeepsItsReward(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		t0 := e.clock.Now()
		q1, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: erin, ReferrerID: bob, At: t0.Add(-day),
			Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.sim.Qualify(t, erin)
		bobs := oneNewDue(t, e.sim, "amount", bob, dollars25)
		const erinsCoupon = 3 // the demo seed's: her join coupon
		e.run(t, "first sight", func(s Summary) bool { return s.Waiting["hold"] == 3 })
		matchedTo(t, e, bobs, q1.Ref())
		matchedTo(t, e, erinsCoupon, q1.Ref())

		// The refund (day 2) and the won dispute (day 3), with no sweep in between.
		e.clock.Advance(2 * day)
		if _, err := e.ledger.Reverse(ctx, q1.Ref(), e.clock.Now(), "refund"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sim.Server.Qualify(rfsim.UserRef{ID: erin}, false); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(day)
		if _, err := e.sim.Server.Qualify(rfsim.UserRef{ID: erin}, true); err != nil {
			t.Fatal(err)
		}
		q2, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: erin, ReferrerID: bob, At: e.clock.Now(),
			Origin: ledger.OriginRefbridge})
		if err != nil || q2.Seq != 2 {
			t.Fatalf("requalified: %+v %v", q2, err)
		}
		if ids := newDue(t, e.sim, "amount", bob, dollars25); len(ids) != 1 || ids[0] != bobs {
			t.Fatalf("Bob's due rewards after the requalification: %v, want only %d", ids, bobs)
		}

		e.run(t, "after the won dispute", func(s Summary) bool { return s.Canceled == 0 && s.Issued == 0 && s.Waiting["hold"] == 3 })
		matchedTo(t, e, bobs, q2.Ref())
		matchedTo(t, e, erinsCoupon, q2.Ref())
		wantBacked(t, e, q2.Ref(), bobs, erinsCoupon)

		// q1's hold would have ended on day 13; q2's ends on day 17.
		e.clock.Advance(11 * day) // day 14
		e.run(t, "after q1's hold, inside q2's", func(s Summary) bool {
			return s.Issued == 1 && s.Canceled == 0 && s.Waiting["hold"] == 2 // Alice's for Dave, held from T0
		})
		if st := statusIn(e, "amount", bobs); st != "" {
			t.Fatalf("Bob's $25 inside the new qualification's hold: RF status %q", st)
		}
		e.clock.Advance(3*day + time.Minute) // past day 17
		e.run(t, "after q2's hold", func(s Summary) bool { return s.Issued == 2 && s.Canceled == 0 })
		if st := statusIn(e, "amount", bobs); st != rf.StatusIssued {
			t.Fatalf("Bob's $25: RF status %q, want issued", st)
		}
		if st := statusIn(e, "coupon", erinsCoupon); st != rf.StatusIssued {
			t.Fatalf("Erin's coupon: RF status %q, want issued", st)
		}
	})
}

// wantBacked checks the lead's latest qualification item lists exactly these rewards.
func wantBacked(t *testing.T, e env, ref ledger.QualificationRef, ids ...int64) {
	t.Helper()
	q, err := e.ledger.LatestQualification(context.Background(), ref.LeadID)
	if err != nil {
		t.Fatal(err)
	}
	if q.Ref() != ref || len(q.MatchedDueRewardIDs) != len(ids) {
		t.Fatalf("qualification %d/%d backs %v, want %v", q.LeadID, q.Seq, q.MatchedDueRewardIDs, ids)
	}
	for _, id := range ids {
		found := false
		for _, got := range q.MatchedDueRewardIDs {
			found = found || got == id
		}
		if !found {
			t.Fatalf("qualification %d/%d backs %v, want %v", q.LeadID, q.Seq, q.MatchedDueRewardIDs, ids)
		}
	}
}

// The same, when the refund and the won dispute both come before the sweep first sees the
// reward: it takes the reversed qualification's free slot (the oldest), and moves on to the
// lead's new qualification in the same run, instead of being canceled.
func TestRequalifiedBeforeTheFirstSweep(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		q1, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: erin, ReferrerID: bob, At: e.clock.Now().Add(-day),
			Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.sim.Qualify(t, erin)
		bobs := oneNewDue(t, e.sim, "amount", bob, dollars25)
		if _, err := e.ledger.Reverse(ctx, q1.Ref(), e.clock.Now().Add(-time.Hour), "refund"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sim.Server.Qualify(rfsim.UserRef{ID: erin}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sim.Server.Qualify(rfsim.UserRef{ID: erin}, true); err != nil {
			t.Fatal(err)
		}
		q2, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: erin, ReferrerID: bob, At: e.clock.Now(),
			Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.run(t, "first sight", func(s Summary) bool { return s.Canceled == 0 && s.Waiting["hold"] == 3 })
		matchedTo(t, e, bobs, q2.Ref())
		e.clock.Advance(14*day + time.Minute)
		e.run(t, "after the hold", func(s Summary) bool { return s.Issued == 3 && s.Canceled == 0 })
		if st := statusIn(e, "amount", bobs); st != rf.StatusIssued {
			t.Fatalf("Bob's $25: RF status %q, want issued", st)
		}
	})
}

// Found by the reliability suite (reliability/, seed 169101451293640 at 200 events): Erin's
// refund and won dispute both come before the sweep first sees Bob's $25 for her, and Fay, Bob's
// other lead, qualified in between. Erin's reward takes her reversed qualification's slot and
// moves on to her new one, which frees the old slot; Fay's reward, seen next in the same run,
// must not take that freed slot (the oldest free one) and be canceled for Erin's refund: it
// stands on Fay's own qualification, and both are issued after the hold.
func TestMovedRewardsOldSlotIsNotTakenByAnotherLead(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		now := e.clock.Now()
		q1, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: erin, ReferrerID: bob, At: now.Add(-3 * time.Minute),
			Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.sim.Qualify(t, erin)
		bobsForErin := oneNewDue(t, e.sim, "amount", bob, dollars25)
		fay := e.sim.Lead(t, 1, "bObbYRef", "fay@example.com")
		qf, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: int64(fay.ID), ReferrerID: bob, At: now.Add(-2 * time.Minute),
			Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.sim.Qualify(t, fay.ID)
		bobsForFay := oneNewDue(t, e.sim, "amount", bob, dollars25, bobsForErin)
		if _, err := e.ledger.Reverse(ctx, q1.Ref(), now.Add(-90*time.Second), "refund"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sim.Server.Qualify(rfsim.UserRef{ID: erin}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sim.Server.Qualify(rfsim.UserRef{ID: erin}, true); err != nil {
			t.Fatal(err)
		}
		q2, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: erin, ReferrerID: bob, At: now.Add(-time.Minute),
			Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.run(t, "first sight", func(s Summary) bool { return s.Canceled == 0 })
		matchedTo(t, e, bobsForErin, q2.Ref())
		matchedTo(t, e, bobsForFay, qf.Ref())
		e.clock.Advance(14*day + time.Minute)
		e.run(t, "after the hold", func(s Summary) bool { return s.Canceled == 0 })
		for _, id := range []int64{bobsForErin, bobsForFay} {
			if st := statusIn(e, "amount", id); st != rf.StatusIssued {
				t.Errorf("Bob's $25 %d: RF status %q, want issued (Erin and Fay both stand qualified)", id, st)
			}
		}
	})
}
