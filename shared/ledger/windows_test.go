package ledger_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
)

// A qualification's possible time is [EarliestAt, At]: EarliestAt defaults to At, is kept to the
// nanosecond wherever the qualification is read, and cannot be after At.
func testQualificationTimes(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	const referrer = 100
	plain, err := s.Qualify(ctx, qual(41, referrer, at(3, 10)))
	must(t, err)
	sameTime(t, "EarliestAt defaults to At", plain.EarliestAt, at(3, 10))

	// Learned from RF's webhook: RF says only the date.
	hook := qual(42, referrer, at(4, 10))
	hook.Origin, hook.EarliestAt = ledger.OriginRFWebhook, time.Date(2026, 2, 4, 0, 0, 0, 0, time.UTC)
	q, err := s.Qualify(ctx, hook)
	must(t, err)
	sameTime(t, "EarliestAt", q.EarliestAt, hook.EarliestAt)
	sameTime(t, "At", q.At, at(4, 10))

	// Both zero: now.
	now, err := s.Qualify(ctx, ledger.Qualification{LeadID: 43, ReferrerID: referrer, Origin: ledger.OriginOther})
	must(t, err)
	sameTime(t, "default At", now.At, clk.Now())
	sameTime(t, "default EarliestAt", now.EarliestAt, clk.Now())

	bad := qual(44, referrer, at(4, 10))
	bad.EarliestAt = at(4, 11)
	_, err = s.Qualify(ctx, bad)
	wantErr(t, err, ledger.ErrInvalid)
	_, err = s.LatestQualification(ctx, 44)
	wantErr(t, err, ledger.ErrNotFound)

	for _, r := range []struct {
		what string
		read func() (ledger.Qualification, error)
	}{
		{"LatestQualification", func() (ledger.Qualification, error) { return s.LatestQualification(ctx, 42) }},
		{"StandingQualification", func() (ledger.Qualification, error) { return s.StandingQualification(ctx, 42) }},
		{"QualificationsFor", func() (ledger.Qualification, error) {
			qs, err := s.QualificationsFor(ctx, referrer)
			if err != nil {
				return ledger.Qualification{}, err
			}
			i := slices.IndexFunc(qs, func(q ledger.Qualification) bool { return q.LeadID == 42 })
			if i < 0 {
				return ledger.Qualification{}, fmt.Errorf("lead 42 not listed: %+v", qs)
			}
			return qs[i], nil
		}},
		{"Reverse", func() (ledger.Qualification, error) { return s.Reverse(ctx, q.Ref(), at(5, 1), "refund") }},
	} {
		got, err := r.read()
		if err != nil {
			t.Fatalf("%s: %v", r.what, err)
		}
		sameTime(t, r.what+" EarliestAt", got.EarliestAt, hook.EarliestAt)
		sameTime(t, r.what+" At", got.At, at(4, 10))
	}
}

// CreatedAfter is the first sighting's and never moves, zero included: a reward first seen with
// no lower bound keeps none when a later sweep sees it again.
func testDueRewardCreatedAfter(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	listed := clk.Now().Add(-15 * time.Minute) // the previous complete listing started then
	first, err := s.SeeDueReward(ctx, ledger.DueReward{ID: 1, RewardID: 7, RecipientID: 100, Metric: "amount", CreatedAfter: listed})
	must(t, err)
	sameTime(t, "CreatedAfter", first.CreatedAfter, listed)
	clk.Advance(time.Hour)
	again, err := s.SeeDueReward(ctx, ledger.DueReward{ID: 1, RewardID: 7, RecipientID: 100, Metric: "amount",
		CreatedAfter: clk.Now().Add(-time.Minute)})
	must(t, err)
	sameTime(t, "CreatedAfter after a second sighting", again.CreatedAfter, listed)
	if r, err := s.DueRewardRecord(ctx, 1); err != nil || !r.CreatedAfter.Equal(listed) {
		t.Errorf("record = %+v %v", r, err)
	}

	// The first sweep after installation: no bound, and none later either.
	none, err := s.SeeDueReward(ctx, ledger.DueReward{ID: 2, RewardID: 7, RecipientID: 100, Metric: "amount"})
	must(t, err)
	if !none.CreatedAfter.IsZero() {
		t.Errorf("CreatedAfter = %v, want zero", none.CreatedAfter)
	}
	clk.Advance(time.Hour)
	still, err := s.SeeDueReward(ctx, ledger.DueReward{ID: 2, RewardID: 7, RecipientID: 100, Metric: "amount", CreatedAfter: clk.Now()})
	must(t, err)
	if !still.CreatedAfter.IsZero() {
		t.Errorf("a later sighting set CreatedAfter %v on a reward first seen without one", still.CreatedAfter)
	}

	// Settled (issued by hand, reported by RF's webhook) before any sighting: the first
	// sighting records its bound.
	_, err = s.MarkRewardSettled(ctx, ledger.Settlement{ID: 3, State: ledger.RewardIssued, At: clk.Now(), By: ledger.SettledByRFWebhook})
	must(t, err)
	bound := clk.Now().Add(-time.Minute)
	seen, err := s.SeeDueReward(ctx, ledger.DueReward{ID: 3, RewardID: 7, RecipientID: 100, CreatedAfter: bound})
	must(t, err)
	sameTime(t, "CreatedAfter of a reward settled before it was seen", seen.CreatedAfter, bound)

	// A reward cannot have been created after it was first seen.
	_, err = s.SeeDueReward(ctx, ledger.DueReward{ID: 4, FirstSeenAt: clk.Now(), CreatedAfter: clk.Now().Add(time.Second)})
	wantErr(t, err, ledger.ErrInvalid)
	_, err = s.DueRewardRecord(ctx, 4)
	wantErr(t, err, ledger.ErrNotFound)
}

// BeginIntentIfStanding begins an intent as BeginIntent does, only while the qualification stands.
func testBeginIntentIfStanding(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	q, err := s.Qualify(ctx, qual(51, 100, at(3, 1)))
	must(t, err)
	issue := func(id int64) ledger.Intent {
		return ledger.Intent{Kind: ledger.IntentIssue, Target: ledger.DueRewardTarget(id), Ref: "sweep"}
	}

	it, err := s.BeginIntentIfStanding(ctx, issue(1), q.Ref())
	must(t, err)
	if it.Status != ledger.IntentPending || it.Attempts != 1 || it.Target != "1" || it.Ref != "sweep" {
		t.Errorf("begun = %+v", it)
	}
	sameTime(t, "AttemptedAt", it.AttemptedAt, clk.Now())
	pending, err := s.PendingIntents(ctx, ledger.IntentIssue)
	must(t, err)
	if len(pending) != 1 || pending[0].Target != "1" {
		t.Errorf("PendingIntents = %+v", pending)
	}
	refused, err := s.BeginIntentIfStanding(ctx, issue(1), q.Ref())
	wantErr(t, err, ledger.ErrIntentPending)
	if refused.Attempts != 1 || !refused.PreviousAttemptAt.Equal(it.AttemptedAt) {
		t.Errorf("refused with %+v", refused)
	}
	_, err = s.FinishIntent(ctx, ledger.IntentIssue, "1", ledger.IntentDone, "")
	must(t, err)
	_, err = s.BeginIntentIfStanding(ctx, issue(1), q.Ref())
	wantErr(t, err, ledger.ErrIntentDone)

	// A failed attempt is begun again, as BeginIntent would.
	_, err = s.BeginIntentIfStanding(ctx, issue(2), q.Ref())
	must(t, err)
	_, err = s.FinishIntent(ctx, ledger.IntentIssue, "2", ledger.IntentFailed, "RF said 422")
	must(t, err)
	clk.Advance(time.Minute)
	retried, err := s.BeginIntentIfStanding(ctx, issue(2), q.Ref())
	must(t, err)
	if retried.Attempts != 2 || retried.Status != ledger.IntentPending || retried.LastError != "RF said 422" {
		t.Errorf("retried = %+v", retried)
	}
	sameTime(t, "AttemptedAt of the retry", retried.AttemptedAt, clk.Now())

	// Pending when the qualification is reversed: still ErrIntentPending (the attempt began
	// while it stood, and may be under way).
	_, err = s.BeginIntentIfStanding(ctx, issue(3), q.Ref())
	must(t, err)
	_, err = s.BeginIntentIfStanding(ctx, issue(4), q.Ref())
	must(t, err)
	_, err = s.FinishIntent(ctx, ledger.IntentIssue, "4", ledger.IntentFailed, "RF said 500")
	must(t, err)
	_, err = s.Reverse(ctx, q.Ref(), at(4, 1), "refund")
	must(t, err)
	_, err = s.BeginIntentIfStanding(ctx, issue(3), q.Ref())
	wantErr(t, err, ledger.ErrIntentPending)

	// Reversed: refused, nothing written, whether the intent is new or failed.
	_, err = s.BeginIntentIfStanding(ctx, issue(5), q.Ref())
	wantErr(t, err, ledger.ErrQualificationReversed)
	_, err = s.IntentOf(ctx, ledger.IntentIssue, "5")
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.BeginIntentIfStanding(ctx, issue(4), q.Ref())
	wantErr(t, err, ledger.ErrQualificationReversed)
	if cur, err := s.IntentOf(ctx, ledger.IntentIssue, "4"); err != nil || cur.Status != ledger.IntentFailed || cur.Attempts != 1 {
		t.Errorf("failed intent after a refused begin = %+v %v", cur, err)
	}
	// The plain BeginIntent (a cancel) is not held back by the reversal.
	_, err = s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentCancel, Target: "5", Ref: "sweep"})
	must(t, err)

	// The lead's new generation stands; the old one still refuses.
	q2, err := s.Qualify(ctx, qual(51, 100, at(5, 1)))
	must(t, err)
	_, err = s.BeginIntentIfStanding(ctx, issue(6), q.Ref())
	wantErr(t, err, ledger.ErrQualificationReversed)
	_, err = s.BeginIntentIfStanding(ctx, issue(6), q2.Ref())
	must(t, err)

	_, err = s.BeginIntentIfStanding(ctx, issue(7), ledger.QualificationRef{LeadID: 51, Seq: 9})
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.IntentOf(ctx, ledger.IntentIssue, "7")
	wantErr(t, err, ledger.ErrNotFound)
	for name, c := range map[string]struct {
		in  ledger.Intent
		ref ledger.QualificationRef
	}{
		"no kind":   {ledger.Intent{Target: "8"}, q2.Ref()},
		"no target": {ledger.Intent{Kind: ledger.IntentIssue}, q2.Ref()},
		"no lead":   {issue(8), ledger.QualificationRef{Seq: 1}},
		"no seq":    {issue(8), ledger.QualificationRef{LeadID: 51}},
	} {
		if _, err := s.BeginIntentIfStanding(ctx, c.in, c.ref); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// The sweep matches a reward and begins its issue only if the qualification stands, while the
// reversal flow reverses the qualification and then reads what it backs and their intents.
// Whatever the interleaving, exactly one of two things happens: the intent is begun and the
// reversal sees it (the reward is in the set Reverse returns, and its intent is there), or the
// reversal comes first and the begin is refused. Never an issue begun that the reversal missed.
func testRaceBeginIfStandingOrReverse(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const rounds = 30
	begun, refused := 0, 0
	for i := range rounds {
		lead, reward := int64(1000+i), int64(5000+i)
		q, err := s.Qualify(ctx, qual(lead, 100, at(3, 1)))
		must(t, err)
		see(t, s, reward, 7, 100)
		target := ledger.DueRewardTarget(reward)
		var rev ledger.Qualification
		errs := race(2, func(who int) error {
			if who == 0 { // the sweep
				if err := s.MatchDueReward(ctx, reward, q.Ref(), slotOf(100, 7)); err != nil {
					return err
				}
				_, err := s.BeginIntentIfStanding(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: target, Ref: "sweep"}, q.Ref())
				return err
			}
			var err error // the reversal flow
			rev, err = s.Reverse(ctx, q.Ref(), at(4, 1), "refund")
			return err
		})
		must(t, errs[1])
		_, ierr := s.IntentOf(ctx, ledger.IntentIssue, target)
		sawIt := slices.Contains(rev.MatchedDueRewardIDs, reward) && ierr == nil
		switch {
		case errs[0] == nil && sawIt:
			begun++
		case errors.Is(errs[0], ledger.ErrQualificationReversed) && errors.Is(ierr, ledger.ErrNotFound):
			refused++
		default:
			t.Fatalf("round %d: begin %v; the reversal read backs %v and the intent %v", i, errs[0], rev.MatchedDueRewardIDs, ierr)
		}
	}
	t.Logf("%d rounds: the intent won %d, the reversal %d", rounds, begun, refused)
}
