package ledger

import (
	"fmt"
	"strconv"
	"time"
)

// The intent rules both stores share.

// begun is the intent a successful BeginIntent stores, given the one before it (existed false:
// there was none; otherwise it was failed, the only state Begin starts over). A failed intent
// keeps its Ref, CreatedAt and LastError, and counts one more attempt.
func begun(in, prev Intent, existed bool, now time.Time) Intent {
	out := Intent{Kind: in.Kind, Target: in.Target, Ref: in.Ref, Status: IntentPending,
		Attempts: 1, CreatedAt: now, AttemptedAt: now}
	if existed {
		out.Ref, out.Attempts, out.CreatedAt, out.LastError = prev.Ref, prev.Attempts+1, prev.CreatedAt, prev.LastError
	}
	return out
}

// beginRefused answers a BeginIntent whose intent is pending or done, with the stored intent
// unchanged: nothing was written. A pending one says when its unfinished attempt began.
func beginRefused(cur Intent) (Intent, error) {
	if cur.Status == IntentDone {
		return cur, fmt.Errorf("ledger: begin intent %s %s: %w", cur.Kind, cur.Target, ErrIntentDone)
	}
	cur.PreviousAttemptAt = cur.AttemptedAt
	return cur, fmt.Errorf("ledger: begin intent %s %s: attempt %d began at %s: %w",
		cur.Kind, cur.Target, cur.Attempts, formatTS(cur.AttemptedAt), ErrIntentPending)
}

// validBeginIfStanding checks BeginIntentIfStanding's arguments and returns the operation's name
// for errors.
func validBeginIfStanding(in Intent, ref QualificationRef) (string, error) {
	what := fmt.Sprintf("ledger: begin intent %s %s if qualification %d/%d stands", in.Kind, in.Target, ref.LeadID, ref.Seq)
	if !in.Kind.valid() || in.Target == "" || ref.LeadID <= 0 || ref.Seq <= 0 {
		return what, fmt.Errorf("%s: %w", what, ErrInvalid)
	}
	return what, nil
}

// reversedBefore is BeginIntentIfStanding's refusal: the qualification q was reversed first.
func reversedBefore(what string, q Qualification) error {
	return fmt.Errorf("%s: reversed at %s (%s): %w", what, formatTS(q.ReversedAt), q.ReversalReason, ErrQualificationReversed)
}

func validTakeOver(kind IntentKind, target string, seenAttempts int, staleBefore time.Time) error {
	if !kind.valid() || target == "" || seenAttempts < 1 || staleBefore.IsZero() {
		return fmt.Errorf("ledger: take over intent %q %q (attempt %d, stale before %s): %w",
			kind, target, seenAttempts, formatTS(staleBefore), ErrInvalid)
	}
	return nil
}

// takeOverRefused answers a TakeOverIntent whose conditions did not hold, with the intent as it
// is now: it was taken over by someone else, finished, or its attempt is not stale yet.
func takeOverRefused(cur Intent, seenAttempts int, staleBefore time.Time) (Intent, error) {
	var why string
	switch {
	case cur.Status != IntentPending:
		why = "it is " + string(cur.Status)
	case cur.Attempts != seenAttempts:
		why = fmt.Sprintf("it is at attempt %d, not %d", cur.Attempts, seenAttempts)
	default:
		why = fmt.Sprintf("attempt %d began at %s, not before %s", cur.Attempts,
			formatTS(cur.AttemptedAt), formatTS(staleBefore))
	}
	return cur, fmt.Errorf("ledger: take over intent %s %s: %s: %w", cur.Kind, cur.Target, why, ErrConflict)
}

// canTakeOver reports whether TakeOverIntent's condition holds for the stored intent.
func canTakeOver(cur Intent, seenAttempts int, staleBefore time.Time) bool {
	return cur.Status == IntentPending && cur.Attempts == seenAttempts && cur.AttemptedAt.Before(staleBefore)
}

func validFinish(kind IntentKind, target string, outcome IntentStatus) error {
	if !kind.valid() || target == "" || (outcome != IntentDone && outcome != IntentFailed) {
		return fmt.Errorf("ledger: finish intent %q %q as %q: %w", kind, target, outcome, ErrInvalid)
	}
	return nil
}

// finishConflict answers a FinishIntent whose intent was not pending: finishing the same way
// twice is a no-op; a done intent cannot fail afterwards. (A failed intent may be confirmed
// done: reconciliation can find that a call reported as failed did take effect.)
func finishConflict(cur Intent, outcome IntentStatus) (Intent, error) {
	switch {
	case cur.Status == outcome:
		return cur, nil
	case cur.Status == IntentDone:
		return cur, fmt.Errorf("ledger: finish intent %s %s as %s: %w", cur.Kind, cur.Target, outcome, ErrIntentDone)
	default:
		return cur, fmt.Errorf("ledger: finish intent %s %s as %s: it is %s: %w", cur.Kind, cur.Target, outcome, cur.Status, ErrConflict)
	}
}

// validBeginCancel checks BeginCancelIfNewest's arguments and returns the operation's name for
// errors and the due reward the cancel targets.
func validBeginCancel(in Intent, ref QualificationRef) (what string, dueRewardID int64, err error) {
	what = fmt.Sprintf("ledger: begin cancel %s if qualification %d/%d is the newest", in.Target, ref.LeadID, ref.Seq)
	id, perr := strconv.ParseInt(in.Target, 10, 64)
	if in.Kind != IntentCancel || perr != nil || id <= 0 || ref.LeadID <= 0 || ref.Seq <= 0 {
		return what, 0, fmt.Errorf("%s: %w", what, ErrInvalid)
	}
	return what, id, nil
}

// cancelOnStanding is BeginCancelIfNewest's refusal of a qualification that stands: a cancel is
// decided on a reversal, and a reversal is final, so the caller read something else.
func cancelOnStanding(what string) error {
	return fmt.Errorf("%s: it stands: %w", what, ErrConflict)
}

// requalified is BeginCancelIfNewest's refusal when the lead's next generation exists.
func requalified(what string, next QualificationRef) error {
	return fmt.Errorf("%s: the lead qualified again (generation %d): %w", what, next.Seq, ErrQualificationSuperseded)
}

// requalifying is BeginCancelIfNewest's refusal when the qualify of the next generation has
// begun (pending: it may be reaching RF now) or is done.
func requalifying(what string, q Intent) error {
	return fmt.Errorf("%s: the qualify of the next generation is %s (attempt %d began at %s): %w",
		what, q.Status, q.Attempts, formatTS(q.AttemptedAt), ErrQualificationSuperseded)
}

// cancelsPendingOn is the refusal of a qualify intent or of Qualify for generation seq while
// cancels begun on generation seq−1 (the lead's reversed qualification) are pending.
func cancelsPendingOn(what string, prev QualificationRef, ids []int64) error {
	return fmt.Errorf("%s: the cancel of due reward(s) %v of reversed qualification %d/%d is pending: %w",
		what, ids, prev.LeadID, prev.Seq, ErrConflict)
}

// previousGeneration is, for a qualify intent's target, the lead's generation before it (the
// one whose pending cancels refuse the qualify); ok=false for other intents and generation 1.
func previousGeneration(kind IntentKind, target string) (QualificationRef, bool) {
	if kind != IntentQualify {
		return QualificationRef{}, false
	}
	ref, ok := parseQualificationTarget(target)
	if !ok || ref.Seq < 2 {
		return QualificationRef{}, false
	}
	return QualificationRef{LeadID: ref.LeadID, Seq: ref.Seq - 1}, true
}
