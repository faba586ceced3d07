package ledger

import (
	"fmt"
	"time"
)

// The intent rules both stores share.

// begun returns the intent a BeginIntent produced, given the intent as it was before (existed
// false: there was none). Beginning over a pending intent is allowed (the caller may be the
// reconciler) but reported with ErrIntentPending: the earlier attempt may have reached RF.
func begun(in, prev Intent, existed bool, now time.Time) (Intent, error) {
	out := Intent{Kind: in.Kind, Target: in.Target, Ref: in.Ref, Status: IntentPending,
		Attempts: 1, CreatedAt: now, AttemptedAt: now}
	if !existed {
		return out, nil
	}
	out.Ref, out.Attempts, out.CreatedAt, out.LastError = prev.Ref, prev.Attempts+1, prev.CreatedAt, prev.LastError
	if prev.Status == IntentPending {
		out.PreviousAttemptAt = prev.AttemptedAt
		return out, fmt.Errorf("ledger: begin intent %s %s: attempt %d began at %s: %w",
			in.Kind, in.Target, prev.Attempts, formatTS(prev.AttemptedAt), ErrIntentPending)
	}
	return out, nil
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
