package ledger_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
)

func cancelOf(id int64) ledger.Intent {
	return ledger.Intent{Kind: ledger.IntentCancel, Target: ledger.DueRewardTarget(id), Ref: "sweep"}
}

func qualifyOf(lead, seq int64) ledger.Intent {
	return ledger.Intent{Kind: ledger.IntentQualify, Target: ledger.QualificationTarget(lead, seq), Ref: "invoice#in_2"}
}

// wantCancelsPending checks the qualification item's pending cancels.
func wantCancelsPending(t *testing.T, s ledger.Store, lead int64, want ...int64) {
	t.Helper()
	q, err := s.LatestQualification(ctxT(t), lead)
	must(t, err)
	if !slices.Equal(q.CancelsPending, want) {
		t.Fatalf("qualification %d/%d CancelsPending = %v, want %v", q.LeadID, q.Seq, q.CancelsPending, want)
	}
}

// reversedQual records lead's qualification and reverses it, as a refund does.
func reversedQual(t *testing.T, s ledger.Store, lead int64) ledger.Qualification {
	t.Helper()
	ctx := ctxT(t)
	q, err := s.Qualify(ctx, qual(lead, 100, at(3, 1)))
	must(t, err)
	q, err = s.Reverse(ctx, q.Ref(), at(4, 1), "refund")
	must(t, err)
	return q
}

// BeginCancelIfNewest begins a cancel only while the reversed qualification is its lead's newest
// and no qualify of the next generation has begun; until the cancel is finished, the next
// generation can neither begin its qualify nor be recorded.
func testBeginCancelIfNewest(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	q := reversedQual(t, s, 61)

	it, err := s.BeginCancelIfNewest(ctx, cancelOf(1), q.Ref())
	must(t, err)
	if it.Status != ledger.IntentPending || it.Attempts != 1 || it.CancelOf != q.Ref() || it.Ref != "sweep" {
		t.Errorf("begun = %+v", it)
	}
	sameTime(t, "AttemptedAt", it.AttemptedAt, clk.Now())
	wantCancelsPending(t, s, 61, 1)
	if got, err := s.IntentOf(ctx, ledger.IntentCancel, "1"); err != nil || got.CancelOf != q.Ref() {
		t.Errorf("IntentOf = %+v %v", got, err)
	}
	// Pending or done: answered as BeginIntent answers.
	_, err = s.BeginCancelIfNewest(ctx, cancelOf(1), q.Ref())
	wantErr(t, err, ledger.ErrIntentPending)
	// A second reward of the same qualification (the lead's own coupon) is canceled alongside.
	_, err = s.BeginCancelIfNewest(ctx, cancelOf(2), q.Ref())
	must(t, err)
	wantCancelsPending(t, s, 61, 1, 2)

	// While either cancel is pending, the lead's next generation waits: its qualify intent and
	// its record are refused, nothing written.
	_, err = s.BeginIntent(ctx, qualifyOf(61, 2))
	wantErr(t, err, ledger.ErrConflict)
	_, err = s.IntentOf(ctx, ledger.IntentQualify, ledger.QualificationTarget(61, 2))
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.Qualify(ctx, qual(61, 100, at(5, 1)))
	wantErr(t, err, ledger.ErrConflict)
	next := qual(61, 100, at(5, 1))
	next.Seq = 2
	_, err = s.Qualify(ctx, next)
	wantErr(t, err, ledger.ErrConflict)
	if latest, err := s.LatestQualification(ctx, 61); err != nil || latest.Seq != 1 {
		t.Fatalf("latest = %+v %v, want generation 1", latest, err)
	}
	// Other leads, other intents and the lead's own generation's intents are not held back.
	_, err = s.BeginIntent(ctx, qualifyOf(62, 2))
	must(t, err)
	_, err = s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentUnqualify, Target: ledger.QualificationTarget(61, 1)})
	must(t, err)

	// A take-over keeps the cancel pending, and the lead waiting.
	clk.Advance(20 * time.Minute)
	_, err = s.TakeOverIntent(ctx, ledger.IntentCancel, "1", 1, clk.Now())
	must(t, err)
	wantCancelsPending(t, s, 61, 1, 2)

	// Finishing one (done) leaves the other pending; finishing it too (failed: RF refused it)
	// lets the lead qualify again.
	fin, err := s.FinishIntent(ctx, ledger.IntentCancel, "1", ledger.IntentDone, "")
	must(t, err)
	if fin.Status != ledger.IntentDone || fin.CancelOf != q.Ref() {
		t.Errorf("finished = %+v", fin)
	}
	wantCancelsPending(t, s, 61, 2)
	_, err = s.BeginIntent(ctx, qualifyOf(61, 2))
	wantErr(t, err, ledger.ErrConflict)
	_, err = s.FinishIntent(ctx, ledger.IntentCancel, "2", ledger.IntentFailed, "RF said 422")
	must(t, err)
	wantCancelsPending(t, s, 61)
	// Finishing again changes nothing.
	_, err = s.FinishIntent(ctx, ledger.IntentCancel, "1", ledger.IntentDone, "")
	must(t, err)
	wantCancelsPending(t, s, 61)

	// The qualify has begun: no cancel may begin any more (nothing written), whether new or
	// failed before, and whether the qualify is pending or done.
	qi, err := s.BeginIntent(ctx, qualifyOf(61, 2))
	must(t, err)
	_, err = s.BeginCancelIfNewest(ctx, cancelOf(3), q.Ref())
	wantErr(t, err, ledger.ErrQualificationSuperseded)
	_, err = s.IntentOf(ctx, ledger.IntentCancel, "3")
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.BeginCancelIfNewest(ctx, cancelOf(2), q.Ref())
	wantErr(t, err, ledger.ErrQualificationSuperseded)
	if cur, err := s.IntentOf(ctx, ledger.IntentCancel, "2"); err != nil || cur.Status != ledger.IntentFailed || cur.Attempts != 1 {
		t.Errorf("failed cancel after a refused begin = %+v %v", cur, err)
	}
	wantCancelsPending(t, s, 61)
	// A qualify that failed (RF refused it) lets a cancel begin again, and waits for it.
	_, err = s.FinishIntent(ctx, ledger.IntentQualify, qi.Target, ledger.IntentFailed, "RF said 429")
	must(t, err)
	again, err := s.BeginCancelIfNewest(ctx, cancelOf(2), q.Ref())
	must(t, err)
	if again.Attempts != 2 || again.CancelOf != q.Ref() {
		t.Errorf("begun again = %+v", again)
	}
	wantCancelsPending(t, s, 61, 2)
	_, err = s.BeginIntent(ctx, qualifyOf(61, 2))
	wantErr(t, err, ledger.ErrConflict)
	if cur, err := s.IntentOf(ctx, ledger.IntentQualify, qi.Target); err != nil || cur.Status != ledger.IntentFailed || cur.Attempts != 1 {
		t.Errorf("failed qualify after a refused begin = %+v %v", cur, err)
	}
	_, err = s.FinishIntent(ctx, ledger.IntentCancel, "2", ledger.IntentDone, "")
	must(t, err)
	_, err = s.BeginIntent(ctx, qualifyOf(61, 2))
	must(t, err)
	_, err = s.FinishIntent(ctx, ledger.IntentQualify, qi.Target, ledger.IntentDone, "")
	must(t, err)
	q2, err := s.Qualify(ctx, qual(61, 100, at(5, 1)))
	must(t, err)
	if q2.Seq != 2 || len(q2.CancelsPending) != 0 {
		t.Errorf("requalified = %+v", q2)
	}

	// The next generation recorded (by RF's webhook, no intent): refused too.
	q3 := reversedQual(t, s, 63)
	next = qual(63, 100, at(5, 1))
	next.Seq = 2
	_, err = s.Qualify(ctx, next)
	must(t, err)
	_, err = s.BeginCancelIfNewest(ctx, cancelOf(4), q3.Ref())
	wantErr(t, err, ledger.ErrQualificationSuperseded)
	_, err = s.IntentOf(ctx, ledger.IntentCancel, "4")
	wantErr(t, err, ledger.ErrNotFound)

	// A qualification that stands, a missing one, and arguments that are not a cancel's.
	standing, err := s.Qualify(ctx, qual(64, 100, at(3, 1)))
	must(t, err)
	_, err = s.BeginCancelIfNewest(ctx, cancelOf(5), standing.Ref())
	wantErr(t, err, ledger.ErrConflict)
	_, err = s.BeginCancelIfNewest(ctx, cancelOf(5), ledger.QualificationRef{LeadID: 64, Seq: 7})
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.IntentOf(ctx, ledger.IntentCancel, "5")
	wantErr(t, err, ledger.ErrNotFound)
	for _, bad := range []ledger.Intent{
		{Kind: ledger.IntentIssue, Target: "5"},
		{Kind: ledger.IntentCancel, Target: "not-a-reward"},
		{Kind: ledger.IntentCancel, Target: ""},
	} {
		_, err = s.BeginCancelIfNewest(ctx, bad, q.Ref())
		wantErr(t, err, ledger.ErrInvalid)
	}
	_, err = s.BeginCancelIfNewest(ctx, cancelOf(5), ledger.QualificationRef{})
	wantErr(t, err, ledger.ErrInvalid)

	// The index copies carry no pending cancels.
	qs, err := s.QualificationsFor(ctx, 100)
	must(t, err)
	for _, c := range qs {
		if c.CancelsPending != nil {
			t.Errorf("index copy %d/%d has CancelsPending %v", c.LeadID, c.Seq, c.CancelsPending)
		}
	}
}

// A cancel and a requalification racing: exactly one of them begins, and a cancel that began
// holds the qualify back until it is finished.
func testRaceCancelOrRequalify(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const rounds = 30
	canceled, requalified := 0, 0
	for i := range rounds {
		lead, reward := int64(2000+i), int64(7000+i)
		q := reversedQual(t, s, lead)
		errs := race(2, func(who int) error {
			if who == 0 { // the sweep
				_, err := s.BeginCancelIfNewest(ctx, cancelOf(reward), q.Ref())
				return err
			}
			_, err := s.BeginIntent(ctx, qualifyOf(lead, 2)) // a renewal
			return err
		})
		switch {
		case errs[0] == nil && errors.Is(errs[1], ledger.ErrConflict):
			canceled++
			wantCancelsPending(t, s, lead, reward)
		case errors.Is(errs[0], ledger.ErrQualificationSuperseded) && errs[1] == nil:
			requalified++
			wantCancelsPending(t, s, lead)
		default:
			t.Fatalf("round %d: cancel %v, qualify %v", i, errs[0], errs[1])
		}
	}
	t.Logf("%d rounds: the cancel won %d, the requalification %d", rounds, canceled, requalified)
}
