package ledger

import "errors"

// Sentinel errors. Every error a Store returns wraps at most one of them, with the operation and
// the record in its message; compare with errors.Is. Operations that fail because of an existing
// record return that record alongside the error, so the caller needs no second read.
var (
	// ErrNotFound means the record (or, for Reverse and StandingQualification, a standing
	// qualification) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the write contradicts a record that already exists: a customer mapped to
	// another lead, a due reward or qualification matched to another, a spend key reused for a
	// different entry, an unmatched invoice already resolved differently, an intent taken over
	// by another caller (or finished) before TakeOverIntent, a charge mapped to another lead or
	// its refunds recorded for another lead or currency, a lead qualified again (its qualify
	// intent, or Qualify) while a cancel begun by BeginCancelIfNewest is pending.
	ErrConflict = errors.New("conflicts with the existing record")
	// ErrAlreadyQualified means the lead already has a standing qualification (returned).
	ErrAlreadyQualified = errors.New("lead already has a standing qualification")
	// ErrAlreadySettled means the due reward was already recorded issued or canceled (returned).
	ErrAlreadySettled = errors.New("due reward already settled")
	// ErrIntentPending means an earlier attempt of the same effect began and never finished: it
	// may have reached RF, or still be in flight. The caller must not call again: it waits, or
	// reconciles with RF's state and then finishes the intent or wins TakeOverIntent.
	ErrIntentPending = errors.New("intent pending from an earlier attempt: reconcile before acting")
	// ErrIntentDone means the effect was already confirmed (the intent is returned).
	ErrIntentDone = errors.New("intent already done")
	// ErrQualificationReversed means BeginIntentIfStanding found the qualification reversed:
	// nothing was written, and the effect must not be attempted on its account.
	ErrQualificationReversed = errors.New("qualification reversed")
	// ErrQualificationSuperseded means BeginCancelIfNewest found the lead qualified again after
	// the reversed qualification, or a qualify of its next generation begun (pending or done):
	// nothing was written, and the cancel must not be attempted (RF keeps one due reward for the
	// lead, which now belongs to its new qualification).
	ErrQualificationSuperseded = errors.New("the lead is qualified again, or being qualified")
	// ErrInvalid means the input breaks a rule of the record (missing key, bad currency, an
	// amount with the wrong sign, a raw email where a hash belongs).
	ErrInvalid = errors.New("invalid input")
	// errContention means a read-modify-write lost too many races in a row; it is transient.
	errContention = errors.New("too much contention, retry later")
)
