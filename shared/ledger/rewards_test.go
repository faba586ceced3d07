package ledger_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
)

func testDueRewards(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	_, err := s.DueRewardRecord(ctx, 1)
	wantErr(t, err, ledger.ErrNotFound)

	seen, err := s.SeeDueReward(ctx, ledger.DueReward{ID: 1, RewardID: 7, RecipientID: 100, Metric: "amount"})
	must(t, err)
	if seen.State != ledger.RewardSeen || seen.RewardID != 7 || seen.RecipientID != 100 || seen.Metric != "amount" {
		t.Errorf("seen = %+v", seen)
	}
	sameTime(t, "FirstSeenAt", seen.FirstSeenAt, clk.Now())

	// Seen again by a later run: the first sighting, which starts the hold, never moves.
	clk.Advance(24 * time.Hour)
	again, err := s.SeeDueReward(ctx, ledger.DueReward{ID: 1, RewardID: 8, RecipientID: 101, Metric: "coupon", FirstSeenAt: clk.Now()})
	must(t, err)
	if again.RewardID != 7 || again.RecipientID != 100 || again.Metric != "amount" {
		t.Errorf("seeing again changed the record: %+v", again)
	}
	sameTime(t, "FirstSeenAt after second sighting", again.FirstSeenAt, seen.FirstSeenAt)

	issued, err := s.MarkRewardSettled(ctx, 1, ledger.RewardIssued, at(10, 1), ledger.SettledBySweep)
	must(t, err)
	if issued.State != ledger.RewardIssued || issued.SettledBy != ledger.SettledBySweep || issued.RewardID != 7 {
		t.Errorf("issued = %+v", issued)
	}
	sameTime(t, "SettledAt", issued.SettledAt, at(10, 1))
	sameTime(t, "FirstSeenAt after settling", issued.FirstSeenAt, seen.FirstSeenAt)

	for _, state := range []ledger.RewardState{ledger.RewardIssued, ledger.RewardCanceled} {
		cur, err := s.MarkRewardSettled(ctx, 1, state, at(11, 1), ledger.SettledByRFWebhook)
		wantErr(t, err, ledger.ErrAlreadySettled)
		if cur.State != ledger.RewardIssued || cur.SettledBy != ledger.SettledBySweep {
			t.Errorf("ErrAlreadySettled returned %+v, want the recorded settlement", cur)
		}
	}

	// Issued by hand in RF's dashboard, reported by the webhook before the sweep saw it.
	byHand, err := s.MarkRewardSettled(ctx, 2, ledger.RewardIssued, at(12, 1), ledger.SettledByRFWebhook)
	must(t, err)
	sameTime(t, "FirstSeenAt of a reward first heard of when settled", byHand.FirstSeenAt, at(12, 1))
	later, err := s.SeeDueReward(ctx, ledger.DueReward{ID: 2, RewardID: 9, RecipientID: 200, Metric: "custom"})
	must(t, err)
	if later.State != ledger.RewardIssued || later.RewardID != 9 || later.RecipientID != 200 {
		t.Errorf("seeing a settled reward = %+v", later)
	}
	sameTime(t, "FirstSeenAt kept", later.FirstSeenAt, at(12, 1))

	canceled, err := s.MarkRewardSettled(ctx, 3, ledger.RewardCanceled, time.Time{}, ledger.SettledBySweep)
	must(t, err)
	sameTime(t, "SettledAt default", canceled.SettledAt, clk.Now())
	_, err = s.MarkRewardSettled(ctx, 3, ledger.RewardIssued, time.Time{}, ledger.SettledBySweep)
	wantErr(t, err, ledger.ErrAlreadySettled)

	for name, call := range map[string]func() error{
		"settle as seen": func() error {
			_, err := s.MarkRewardSettled(ctx, 4, ledger.RewardSeen, time.Time{}, "sweep")
			return err
		},
		"settle id 0": func() error {
			_, err := s.MarkRewardSettled(ctx, 0, ledger.RewardIssued, time.Time{}, "sweep")
			return err
		},
		"see id 0": func() error { _, err := s.SeeDueReward(ctx, ledger.DueReward{}); return err },
	} {
		if err := call(); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func testIntentLifecycle(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	target := ledger.DueRewardTarget(501)
	in, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: target, Ref: "sweep#1"})
	must(t, err)
	if in.Status != ledger.IntentPending || in.Attempts != 1 || in.Ref != "sweep#1" {
		t.Errorf("begun = %+v", in)
	}
	sameTime(t, "CreatedAt", in.CreatedAt, clk.Now())
	sameTime(t, "AttemptedAt", in.AttemptedAt, clk.Now())

	clk.Advance(time.Second)
	done, err := s.FinishIntent(ctx, ledger.IntentIssue, target, ledger.IntentDone, "")
	must(t, err)
	if done.Status != ledger.IntentDone || done.Attempts != 1 {
		t.Errorf("done = %+v", done)
	}
	sameTime(t, "FinishedAt", done.FinishedAt, clk.Now())

	cur, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: target, Ref: "sweep#2"})
	wantErr(t, err, ledger.ErrIntentDone)
	if cur.Status != ledger.IntentDone || cur.Attempts != 1 || cur.Ref != "sweep#1" {
		t.Errorf("ErrIntentDone returned %+v", cur)
	}
	// Finishing done twice (a retried confirm) is a no-op; failing a done intent is refused.
	_, err = s.FinishIntent(ctx, ledger.IntentIssue, target, ledger.IntentDone, "")
	must(t, err)
	_, err = s.FinishIntent(ctx, ledger.IntentIssue, target, ledger.IntentFailed, "late error")
	wantErr(t, err, ledger.ErrIntentDone)
	got, err := s.IntentOf(ctx, ledger.IntentIssue, target)
	must(t, err)
	if got.Status != ledger.IntentDone || got.LastError != "" {
		t.Errorf("IntentOf = %+v", got)
	}

	// Kinds are separate: cancel of the same reward is its own intent.
	_, err = s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentCancel, Target: target})
	must(t, err)

	_, err = s.IntentOf(ctx, ledger.IntentQualify, "nope")
	wantErr(t, err, ledger.ErrNotFound)
	_, err = s.FinishIntent(ctx, ledger.IntentQualify, "nope", ledger.IntentDone, "")
	wantErr(t, err, ledger.ErrNotFound)
	for name, call := range map[string]func() error{
		"begin unknown kind": func() error { _, err := s.BeginIntent(ctx, ledger.Intent{Kind: "pay", Target: "1"}); return err },
		"begin no target":    func() error { _, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue}); return err },
		"finish as pending": func() error {
			_, err := s.FinishIntent(ctx, ledger.IntentIssue, target, ledger.IntentPending, "")
			return err
		},
		"pending of unknown kind": func() error { _, err := s.PendingIntents(ctx, "pay"); return err },
	} {
		if err := call(); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func testIntentFailedThenRetried(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	target := ledger.QualificationTarget(7, 1)
	_, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentQualify, Target: target, Ref: "evt_1"})
	must(t, err)
	failed, err := s.FinishIntent(ctx, ledger.IntentQualify, target, ledger.IntentFailed, "RF 500")
	must(t, err)
	if failed.Status != ledger.IntentFailed || failed.LastError != "RF 500" {
		t.Errorf("failed = %+v", failed)
	}
	_, err = s.FinishIntent(ctx, ledger.IntentQualify, target, ledger.IntentFailed, "RF 500")
	must(t, err) // failing twice: no-op
	pending, err := s.PendingIntents(ctx, ledger.IntentQualify)
	must(t, err)
	if len(pending) != 0 {
		t.Errorf("a failed intent is listed as pending: %+v", pending)
	}

	// The redelivery retries: pending again, no reconcile needed (the call is known to have failed).
	clk.Advance(time.Minute)
	retry, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentQualify, Target: target, Ref: "evt_2"})
	must(t, err)
	if retry.Status != ledger.IntentPending || retry.Attempts != 2 || retry.Ref != "evt_1" || retry.LastError != "RF 500" {
		t.Errorf("retry = %+v", retry)
	}
	sameTime(t, "AttemptedAt", retry.AttemptedAt, clk.Now())
	if !retry.FinishedAt.IsZero() {
		t.Errorf("a pending intent has FinishedAt %v", retry.FinishedAt)
	}
	done, err := s.FinishIntent(ctx, ledger.IntentQualify, target, ledger.IntentDone, "")
	must(t, err)
	if done.Status != ledger.IntentDone || done.Attempts != 2 {
		t.Errorf("done = %+v", done)
	}
	// Reconciliation may find that a call reported failed did happen: failed → done is allowed.
	other := ledger.QualificationTarget(8, 1)
	_, err = s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentQualify, Target: other})
	must(t, err)
	_, err = s.FinishIntent(ctx, ledger.IntentQualify, other, ledger.IntentFailed, "timeout")
	must(t, err)
	_, err = s.FinishIntent(ctx, ledger.IntentQualify, other, ledger.IntentDone, "")
	must(t, err)
}

// A crash between Begin and Finish leaves the intent pending: the next Begin says so and
// changes nothing (the caller reconciles with RF instead of calling again), PendingIntents lists
// it, and a reconciler that found RF did not act takes it over.
func testIntentCrashBetween(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	first, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: "501", Ref: "run#1"})
	must(t, err)
	clk.Advance(time.Minute)
	second, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: "502", Ref: "run#1"})
	must(t, err)
	// (crash: neither is finished)

	pending, err := s.PendingIntents(ctx, ledger.IntentIssue)
	must(t, err)
	if len(pending) != 2 || pending[0].Target != "501" || pending[1].Target != "502" {
		t.Fatalf("PendingIntents = %+v", pending)
	}
	none, err := s.PendingIntents(ctx, ledger.IntentCancel)
	must(t, err)
	if len(none) != 0 {
		t.Errorf("PendingIntents(cancel) = %+v", none)
	}

	clk.Advance(15 * time.Minute)
	next, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: "501", Ref: "run#2"})
	wantErr(t, err, ledger.ErrIntentPending)
	if next.Status != ledger.IntentPending || next.Attempts != 1 || next.Ref != "run#1" {
		t.Errorf("refused Begin returned %+v", next)
	}
	sameTime(t, "PreviousAttemptAt", next.PreviousAttemptAt, first.AttemptedAt)
	sameTime(t, "AttemptedAt", next.AttemptedAt, first.AttemptedAt) // the stored intent, unchanged
	sameTime(t, "CreatedAt", next.CreatedAt, first.CreatedAt)
	stored, err := s.IntentOf(ctx, ledger.IntentIssue, "501")
	must(t, err)
	if !equalIntent(stored, first) {
		t.Errorf("a refused Begin changed the intent: %+v, was %+v", stored, first)
	}

	// Reconciled 501: RF already issued it.
	_, err = s.FinishIntent(ctx, ledger.IntentIssue, "501", ledger.IntentDone, "")
	must(t, err)
	pending, err = s.PendingIntents(ctx, ledger.IntentIssue)
	must(t, err)
	if len(pending) != 1 || pending[0].Target != "502" {
		t.Errorf("PendingIntents after confirming 501 = %+v", pending)
	}

	// Reconciled 502: RF has not issued it, and its attempt is stale (begun over 10 minutes ago).
	taken, err := s.TakeOverIntent(ctx, ledger.IntentIssue, "502", pending[0].Attempts, clk.Now().Add(-10*time.Minute))
	must(t, err)
	if taken.Status != ledger.IntentPending || taken.Attempts != 2 || taken.Ref != "run#1" || !taken.PreviousAttemptAt.IsZero() {
		t.Errorf("taken over = %+v", taken)
	}
	sameTime(t, "AttemptedAt after take-over", taken.AttemptedAt, clk.Now())
	sameTime(t, "CreatedAt after take-over", taken.CreatedAt, second.CreatedAt)
	// A Begin now reports the new attempt, which may be in flight.
	clk.Advance(time.Second)
	again, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: "502", Ref: "run#3"})
	wantErr(t, err, ledger.ErrIntentPending)
	sameTime(t, "PreviousAttemptAt after take-over", again.PreviousAttemptAt, taken.AttemptedAt)
	if again.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", again.Attempts)
	}
	done, err := s.FinishIntent(ctx, ledger.IntentIssue, "502", ledger.IntentDone, "")
	must(t, err)
	if done.Attempts != 2 {
		t.Errorf("done = %+v", done)
	}
}

// equalIntent compares intents, times by instant.
func equalIntent(a, b ledger.Intent) bool {
	ta := [4]time.Time{a.CreatedAt, a.AttemptedAt, a.FinishedAt, a.PreviousAttemptAt}
	tb := [4]time.Time{b.CreatedAt, b.AttemptedAt, b.FinishedAt, b.PreviousAttemptAt}
	for i := range ta {
		if !ta[i].Equal(tb[i]) {
			return false
		}
	}
	a.CreatedAt, a.AttemptedAt, a.FinishedAt, a.PreviousAttemptAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	b.CreatedAt, b.AttemptedAt, b.FinishedAt, b.PreviousAttemptAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return a == b
}

// Callers refused while an attempt is pending leave no trace: PreviousAttemptAt keeps naming the
// attempt that may have crashed, so that attempt still looks stale however often it is retried.
func testIntentRefusedBeginsKeepAttempt(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	target := ledger.QualificationTarget(7, 1)
	first, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentQualify, Target: target, Ref: "evt_1"})
	must(t, err)
	for i := range 5 {
		clk.Advance(time.Minute)
		got, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentQualify, Target: target, Ref: fmt.Sprint("evt_", i+2)})
		wantErr(t, err, ledger.ErrIntentPending)
		sameTime(t, fmt.Sprint("refusal ", i+1, " PreviousAttemptAt"), got.PreviousAttemptAt, first.AttemptedAt)
		if got.Attempts != 1 || got.Ref != "evt_1" || !got.AttemptedAt.Equal(first.AttemptedAt) {
			t.Errorf("refusal %d returned %+v", i+1, got)
		}
	}
	stored, err := s.IntentOf(ctx, ledger.IntentQualify, target)
	must(t, err)
	if !equalIntent(stored, first) {
		t.Errorf("after 5 refused Begins: %+v, was %+v", stored, first)
	}
	// Five minutes after the first attempt, an attempt older than two minutes can be taken over.
	_, err = s.TakeOverIntent(ctx, ledger.IntentQualify, target, 1, clk.Now().Add(-2*time.Minute))
	must(t, err)
}

// PendingIntents lists the oldest attempt first; a refused Begin does not move an intent, a
// take-over or a retry after a failure does.
func testPendingIntentsOrder(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	begin := func(target string) error {
		_, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentCancel, Target: target})
		return err
	}
	order := func(want ...string) {
		t.Helper()
		pending, err := s.PendingIntents(ctx, ledger.IntentCancel)
		must(t, err)
		var got []string
		for _, it := range pending {
			got = append(got, it.Target)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("PendingIntents = %v, want %v", got, want)
		}
	}
	// Attempt order is not target order.
	for _, target := range []string{"30", "10", "20"} {
		must(t, begin(target))
		clk.Advance(time.Minute)
	}
	order("30", "10", "20")
	for range 3 {
		wantErr(t, begin("30"), ledger.ErrIntentPending)
		clk.Advance(time.Minute)
	}
	order("30", "10", "20")

	_, err := s.TakeOverIntent(ctx, ledger.IntentCancel, "30", 1, clk.Now())
	must(t, err)
	order("10", "20", "30")

	clk.Advance(time.Minute)
	_, err = s.FinishIntent(ctx, ledger.IntentCancel, "10", ledger.IntentFailed, "RF 503")
	must(t, err)
	order("20", "30")
	must(t, begin("10"))
	order("20", "30", "10")
	_, err = s.FinishIntent(ctx, ledger.IntentCancel, "20", ledger.IntentDone, "")
	must(t, err)
	order("30", "10")
}

// TakeOverIntent succeeds only on the attempt the caller saw, once it is stale, while pending.
func testIntentTakeOver(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	target := ledger.DueRewardTarget(700)
	_, err := s.TakeOverIntent(ctx, ledger.IntentIssue, target, 1, clk.Now())
	wantErr(t, err, ledger.ErrNotFound)

	first, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: target, Ref: "sweep#1"})
	must(t, err)
	clk.Advance(time.Minute)
	// Not stale: the attempt did not begin before staleBefore.
	cur, err := s.TakeOverIntent(ctx, ledger.IntentIssue, target, 1, first.AttemptedAt)
	wantErr(t, err, ledger.ErrConflict)
	if !equalIntent(cur, first) {
		t.Errorf("refused take-over returned %+v, want the intent %+v", cur, first)
	}
	// Not the attempt the caller saw.
	_, err = s.TakeOverIntent(ctx, ledger.IntentIssue, target, 2, clk.Now())
	wantErr(t, err, ledger.ErrConflict)

	won, err := s.TakeOverIntent(ctx, ledger.IntentIssue, target, 1, clk.Now())
	must(t, err)
	if won.Status != ledger.IntentPending || won.Attempts != 2 || won.Ref != "sweep#1" || won.LastError != "" {
		t.Errorf("taken over = %+v", won)
	}
	sameTime(t, "AttemptedAt", won.AttemptedAt, clk.Now())
	sameTime(t, "CreatedAt", won.CreatedAt, first.CreatedAt)
	stored, err := s.IntentOf(ctx, ledger.IntentIssue, target)
	must(t, err)
	if !equalIntent(stored, won) {
		t.Errorf("IntentOf = %+v, take-over returned %+v", stored, won)
	}

	// A second reconciler that read attempt 1 before the take-over loses, even much later.
	clk.Advance(time.Hour)
	lost, err := s.TakeOverIntent(ctx, ledger.IntentIssue, target, 1, clk.Now())
	wantErr(t, err, ledger.ErrConflict)
	if lost.Attempts != 2 {
		t.Errorf("lost take-over returned %+v, want the intent at attempt 2", lost)
	}

	// Only a pending intent is taken over: a failed one is retried with Begin, a done one never.
	_, err = s.FinishIntent(ctx, ledger.IntentIssue, target, ledger.IntentFailed, "RF 500")
	must(t, err)
	cur, err = s.TakeOverIntent(ctx, ledger.IntentIssue, target, 2, clk.Now())
	wantErr(t, err, ledger.ErrConflict)
	if cur.Status != ledger.IntentFailed {
		t.Errorf("take-over of a failed intent returned %+v", cur)
	}
	retry, err := s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: target})
	must(t, err)
	if retry.Attempts != 3 || retry.LastError != "RF 500" {
		t.Errorf("retry = %+v", retry)
	}
	_, err = s.FinishIntent(ctx, ledger.IntentIssue, target, ledger.IntentDone, "")
	must(t, err)
	clk.Advance(time.Hour)
	cur, err = s.TakeOverIntent(ctx, ledger.IntentIssue, target, 3, clk.Now())
	wantErr(t, err, ledger.ErrConflict)
	if cur.Status != ledger.IntentDone || cur.Attempts != 3 {
		t.Errorf("take-over of a done intent returned %+v", cur)
	}

	for name, call := range map[string]func() error{
		"unknown kind":      func() error { _, err := s.TakeOverIntent(ctx, "pay", target, 1, clk.Now()); return err },
		"no target":         func() error { _, err := s.TakeOverIntent(ctx, ledger.IntentIssue, "", 1, clk.Now()); return err },
		"attempt 0":         func() error { _, err := s.TakeOverIntent(ctx, ledger.IntentIssue, target, 0, clk.Now()); return err },
		"zero stale before": func() error { _, err := s.TakeOverIntent(ctx, ledger.IntentIssue, target, 3, time.Time{}); return err },
	} {
		if err := call(); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// One intent per (kind, target) for ever: qualify → unqualify → qualify again works because the
// target names the qualification's generation (its Seq).
func testIntentGenerations(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	const lead = 9
	step := func(kind ledger.IntentKind, seq int64) {
		t.Helper()
		target := ledger.QualificationTarget(lead, seq)
		_, err := s.BeginIntent(ctx, ledger.Intent{Kind: kind, Target: target})
		must(t, err)
		_, err = s.FinishIntent(ctx, kind, target, ledger.IntentDone, "")
		must(t, err)
	}
	latest, err := s.LatestQualification(ctx, lead)
	seq := ledger.NextQualificationSeq(latest, err == nil)
	step(ledger.IntentQualify, seq)
	q, err := s.Qualify(ctx, qual(lead, 100, at(3, 1)))
	must(t, err)
	if q.Seq != seq {
		t.Fatalf("intent generation %d, qualification %d", seq, q.Seq)
	}
	step(ledger.IntentUnqualify, q.Seq)
	_, err = s.Reverse(ctx, lead, at(4, 1), "refund")
	must(t, err)

	latest, err = s.LatestQualification(ctx, lead)
	must(t, err)
	seq = ledger.NextQualificationSeq(latest, true)
	if seq != 2 {
		t.Fatalf("next generation = %d", seq)
	}
	// The old generation stays done; the new one starts fresh.
	_, err = s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentQualify, Target: ledger.QualificationTarget(lead, 1)})
	wantErr(t, err, ledger.ErrIntentDone)
	step(ledger.IntentQualify, seq)
}
