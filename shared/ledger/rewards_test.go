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

	issued, err := s.MarkRewardSettled(ctx, ledger.Settlement{ID: 1, RecipientID: 100, State: ledger.RewardIssued,
		At: at(10, 1), By: ledger.SettledBySweep})
	must(t, err)
	if issued.State != ledger.RewardIssued || issued.SettledBy != ledger.SettledBySweep || issued.RewardID != 7 {
		t.Errorf("issued = %+v", issued)
	}
	sameTime(t, "SettledAt", issued.SettledAt, at(10, 1))
	sameTime(t, "FirstSeenAt after settling", issued.FirstSeenAt, seen.FirstSeenAt)

	for _, state := range []ledger.RewardState{ledger.RewardIssued, ledger.RewardCanceled} {
		cur, err := s.MarkRewardSettled(ctx, ledger.Settlement{ID: 1, RecipientID: 100, State: state,
			At: at(11, 1), By: ledger.SettledByRFWebhook})
		wantErr(t, err, ledger.ErrAlreadySettled)
		if cur.State != ledger.RewardIssued || cur.SettledBy != ledger.SettledBySweep {
			t.Errorf("ErrAlreadySettled returned %+v, want the recorded settlement", cur)
		}
	}

	// Issued by hand in RF's dashboard, reported by the webhook before the sweep saw it.
	byHand, err := s.MarkRewardSettled(ctx, ledger.Settlement{ID: 2, State: ledger.RewardIssued,
		At: at(12, 1), By: ledger.SettledByRFWebhook})
	must(t, err)
	sameTime(t, "FirstSeenAt of a reward first heard of when settled", byHand.FirstSeenAt, at(12, 1))
	later, err := s.SeeDueReward(ctx, ledger.DueReward{ID: 2, RewardID: 9, RecipientID: 200, Metric: "custom"})
	must(t, err)
	if later.State != ledger.RewardIssued || later.RewardID != 9 || later.RecipientID != 200 {
		t.Errorf("seeing a settled reward = %+v", later)
	}
	sameTime(t, "FirstSeenAt kept", later.FirstSeenAt, at(12, 1))

	canceled, err := s.MarkRewardSettled(ctx, ledger.Settlement{ID: 3, State: ledger.RewardCanceled, By: ledger.SettledBySweep})
	must(t, err)
	sameTime(t, "SettledAt default", canceled.SettledAt, clk.Now())
	_, err = s.MarkRewardSettled(ctx, ledger.Settlement{ID: 3, State: ledger.RewardIssued, By: ledger.SettledBySweep})
	wantErr(t, err, ledger.ErrAlreadySettled)

	for name, call := range map[string]func() error{
		"settle as seen": func() error {
			_, err := s.MarkRewardSettled(ctx, ledger.Settlement{ID: 4, State: ledger.RewardSeen, By: "sweep"})
			return err
		},
		"settle id 0": func() error {
			_, err := s.MarkRewardSettled(ctx, ledger.Settlement{State: ledger.RewardIssued, By: "sweep"})
			return err
		},
		"settle to recipient -1": func() error {
			_, err := s.MarkRewardSettled(ctx, ledger.Settlement{ID: 4, RecipientID: -1, State: ledger.RewardIssued, By: "sweep"})
			return err
		},
		"issued to recipient 0": func() error { _, err := s.IssuedInMonth(ctx, 0, at(10, 1)); return err },
		"see id 0":              func() error { _, err := s.SeeDueReward(ctx, ledger.DueReward{}); return err },
	} {
		if err := call(); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// issuedCounter reads IssuedInMonth and compares it with what a test expects.
func issuedCounter(t *testing.T, s ledger.Store) func(recipient int64, month time.Time, want int) {
	return func(recipient int64, month time.Time, want int) {
		t.Helper()
		n, err := s.IssuedInMonth(ctxT(t), recipient, month)
		must(t, err)
		if n != want {
			t.Errorf("IssuedInMonth(%d, %s) = %d, want %d", recipient, month.UTC().Format("2006-01"), n, want)
		}
	}
}

// settle settles a due reward as the sweep would.
func settle(t *testing.T, s ledger.Store, id, recipient int64, state ledger.RewardState, when time.Time) (ledger.DueReward, error) {
	return s.MarkRewardSettled(ctxT(t), ledger.Settlement{ID: id, RecipientID: recipient, State: state, At: when, By: ledger.SettledBySweep})
}

// Issued rewards count in their recipient's month of the settlement: once per reward, never when
// the settlement is refused, canceled or names no recipient.
func testIssuedInMonth(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	ctx := ctxT(t)
	count := issuedCounter(t, s)
	feb, mar := at(10, 1), clk.Now() // February and March 2026
	count(100, feb, 0)

	for _, r := range []struct {
		id, recipient int64
		at            time.Time
	}{{1, 100, at(1, 0)}, {2, 100, at(27, 23)}, {3, 200, at(10, 1)}, {4, 100, mar}} {
		_, err := settle(t, s, r.id, r.recipient, ledger.RewardIssued, r.at)
		must(t, err)
	}
	count(100, feb, 2)
	count(100, time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), 2) // any instant of the month
	count(100, time.Date(2026, 2, 28, 23, 59, 59, 999999999, time.UTC), 2)
	count(200, feb, 1)
	count(100, mar, 1)
	count(200, mar, 0)
	count(300, feb, 0)
	count(100, time.Time{}, 1) // zero: now, March
	// Months are UTC months: 00:30 on March 1 in UTC+1 is still February.
	count(100, time.Date(2026, 3, 1, 0, 30, 0, 0, time.FixedZone("UTC+1", 3600)), 2)

	// A second settlement of a reward is refused, issued or canceled, and counts nothing.
	for _, state := range []ledger.RewardState{ledger.RewardIssued, ledger.RewardCanceled} {
		_, err := s.MarkRewardSettled(ctx, ledger.Settlement{ID: 1, RecipientID: 100, State: state,
			At: at(12, 1), By: ledger.SettledByRFWebhook})
		wantErr(t, err, ledger.ErrAlreadySettled)
	}
	// A canceled reward does not count.
	_, err := settle(t, s, 5, 100, ledger.RewardCanceled, at(12, 1))
	must(t, err)
	// Nor does an issued one whose recipient the settlement does not name, even when the record
	// knows it: the store counts the settlement's recipient and does not read the record first.
	_, err = settle(t, s, 6, 0, ledger.RewardIssued, at(12, 1))
	must(t, err)
	_, err = s.SeeDueReward(ctx, ledger.DueReward{ID: 7, RewardID: 1, RecipientID: 100, Metric: "amount"})
	must(t, err)
	r, err := settle(t, s, 7, 0, ledger.RewardIssued, at(12, 1))
	must(t, err)
	if r.State != ledger.RewardIssued || r.RecipientID != 100 {
		t.Errorf("settled without a recipient = %+v", r)
	}
	count(100, feb, 2)
	count(200, feb, 1)

	// The counts share the recipient's partition with the qualification index, unseen by it.
	_, err = s.Qualify(ctx, qual(9, 100, at(3, 1)))
	must(t, err)
	qs, err := s.QualificationsFor(ctx, 100)
	must(t, err)
	if len(qs) != 1 || qs[0].LeadID != 9 {
		t.Errorf("QualificationsFor(100) = %+v", qs)
	}
}

// A reward settled at the last instant of a month counts in that month, one settled at the first
// instant of the next in the next.
func testIssuedMonthBoundary(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	count := issuedCounter(t, s)
	last := time.Date(2026, 11, 30, 23, 59, 59, 900000000, time.UTC)
	first := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	newYear := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for id, when := range map[int64]time.Time{1: last, 2: first, 3: first, 4: newYear} {
		r, err := settle(t, s, id, 100, ledger.RewardIssued, when)
		must(t, err)
		sameTime(t, fmt.Sprint("SettledAt of ", id), r.SettledAt, when)
	}
	count(100, last, 1)
	count(100, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 1)
	count(100, first, 2)
	count(100, time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC), 2)
	count(100, newYear, 1)
	count(100, time.Date(2026, 10, 31, 23, 59, 59, 0, time.UTC), 0)
	count(100, time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC), 0)
}

// The settlement fills the record's recipient when it has none (a reward never seen), and never
// changes a known one.
func testSettlementRecordsRecipient(t *testing.T, newStore newStoreFunc) {
	s, _ := newStore(t)
	ctx := ctxT(t)
	check := func(id, want int64) {
		t.Helper()
		r, err := s.DueRewardRecord(ctx, id)
		must(t, err)
		if r.RecipientID != want {
			t.Errorf("due reward %d: recipient %d, want %d", id, r.RecipientID, want)
		}
	}
	r, err := settle(t, s, 1, 100, ledger.RewardIssued, at(10, 1))
	must(t, err)
	if r.RecipientID != 100 || r.State != ledger.RewardIssued {
		t.Errorf("never seen, issued = %+v", r)
	}
	check(1, 100)
	sameTime(t, "FirstSeenAt of a reward first heard of when settled", r.FirstSeenAt, at(10, 1))
	r, err = settle(t, s, 2, 200, ledger.RewardCanceled, at(10, 1))
	must(t, err)
	if r.RecipientID != 200 || r.State != ledger.RewardCanceled {
		t.Errorf("never seen, canceled = %+v", r)
	}
	check(2, 200)

	_, err = s.SeeDueReward(ctx, ledger.DueReward{ID: 3, RewardID: 1, RecipientID: 300, Metric: "amount"})
	must(t, err)
	r, err = settle(t, s, 3, 301, ledger.RewardIssued, at(10, 1))
	must(t, err)
	if r.RecipientID != 300 || r.RewardID != 1 || r.Metric != "amount" {
		t.Errorf("settling changed what was known: %+v", r)
	}
	check(3, 300)

	// A refused settlement writes nothing, the recipient included.
	_, err = settle(t, s, 4, 0, ledger.RewardIssued, at(10, 1))
	must(t, err)
	_, err = settle(t, s, 4, 400, ledger.RewardIssued, at(11, 1))
	wantErr(t, err, ledger.ErrAlreadySettled)
	check(4, 0)
	count := issuedCounter(t, s)
	count(400, at(11, 1), 0)
}

// A month's count is kept 400 days past the month's end, then reads 0 (TTL deletes it lazily,
// so readers do not rely on it).
func testIssuedCountExpires(t *testing.T, newStore newStoreFunc) {
	s, clk := newStore(t)
	count := issuedCounter(t, s)
	_, err := settle(t, s, 1, 100, ledger.RewardIssued, at(10, 1)) // February 2026, which ends on March 1
	must(t, err)
	clk.Advance(399 * 24 * time.Hour)
	count(100, at(10, 1), 1)
	clk.Advance(2 * 24 * time.Hour) // March 1 + 401 days
	count(100, at(10, 1), 0)
	// A later month is still counted.
	_, err = settle(t, s, 2, 100, ledger.RewardIssued, time.Time{})
	must(t, err)
	count(100, clk.Now(), 1)
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
	_, err = s.Reverse(ctx, q.Ref(), at(4, 1), "refund")
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
