package ledger

import (
	"context"
	"time"
)

// Store is the whole ledger. Consumers declare the narrower interfaces they need; both
// implementations satisfy this one, and the contract suite runs against both.
//
// Every method takes the context first and wraps its errors with the operation and the record.
// Where a method returns a record together with a sentinel error, the record is the existing one
// that caused the error.
type Store interface {
	// PutLead upserts a lead: its non-zero fields replace the stored ones (a partial observation
	// never erases what is known), and its code, email and Stripe-customer lookups are written in
	// the same transaction, stale ones removed. A StripeCustomerID already mapped to another lead
	// → ErrConflict, nothing written. An unchanged lead is not rewritten.
	PutLead(ctx context.Context, l Lead) (Lead, error)
	LeadByID(ctx context.Context, id int64) (Lead, error)
	// LeadByCode finds the lead that last stored the code.
	LeadByCode(ctx context.Context, code string) (Lead, error)
	// LeadsByEmail lists every lead with the email hash, one per campaign, by campaign id.
	LeadsByEmail(ctx context.Context, emailHash string) ([]Lead, error)
	// LeadByCustomer follows the customer's mapping to the lead (ErrNotFound if either is
	// missing; CustomerMapping then tells which).
	LeadByCustomer(ctx context.Context, customerID string) (Lead, error)

	// MapCustomer records that a Stripe customer is a lead. The first mapping wins: the same pair
	// again is a no-op; another lead → ErrConflict with the existing mapping.
	MapCustomer(ctx context.Context, customerID string, leadID int64, rule string) (Mapping, error)
	CustomerMapping(ctx context.Context, customerID string) (Mapping, error)

	// MapCharge records that a Stripe charge paid for a lead, in its currency (disputes name only
	// the charge). The first mapping wins: the same charge and lead again is a no-op that keeps
	// the first currency and time; another lead → ErrConflict with the existing mapping.
	MapCharge(ctx context.Context, chargeID string, leadID int64, currency string) (ChargeMapping, error)
	// LeadByCharge follows the charge's mapping to the lead (ErrNotFound if the charge is
	// unmapped or the lead is missing).
	LeadByCharge(ctx context.Context, chargeID string) (Lead, error)
	// ApplyChargeRefunded records a charge's cumulative refunded amount and subtracts only its
	// increase over the highest amount recorded before from the lead's net in the currency,
	// atomically. It returns the lead's totals and the increase applied (> 0 when it wrote). A
	// cumulative amount at or below the recorded one (a redelivery, or an older event arriving
	// late) writes nothing and returns 0 and the current totals. Refunds of a charge recorded
	// for another lead or currency → ErrConflict.
	ApplyChargeRefunded(ctx context.Context, r ChargeRefund) (s Spend, appliedDelta int64, err error)

	// ApplySpend counts an entry once: a key (or, for a payment, an invoice) already counted
	// returns applied=false and the current totals. The same key with a different lead, currency
	// or amount → ErrConflict.
	ApplySpend(ctx context.Context, e SpendEntry) (s Spend, applied bool, err error)
	// SpendOf returns the lead's totals; a lead without spend has an empty Net, not an error.
	SpendOf(ctx context.Context, leadID int64) (Spend, error)
	// InvoiceCounted reports whether a payment for the invoice was applied, for any lead.
	InvoiceCounted(ctx context.Context, invoiceID string) (bool, error)

	// Qualify records a new qualification (Seq assigned). A standing one → ErrAlreadyQualified
	// with it. At zero means now, EarliestAt zero means At; both are kept to the nanosecond, in
	// UTC. EarliestAt after At → ErrInvalid. A Seq given (above 0) is the generation the caller
	// decided about: it is created only if it is the lead's next (none yet for 1, generation
	// Seq−1 reversed otherwise); else, unless one stands, ErrConflict with the newest, so a
	// decision read before a newer generation was recorded or reversed is never applied to it.
	Qualify(ctx context.Context, q Qualification) (Qualification, error)
	// Reverse marks qualification ref reversed, if it still stands: the caller names the
	// generation it read, so a reversal never lands on a newer qualification of the lead (a won
	// dispute's) that it did not decide about. Reversed already (by a concurrent caller, or
	// replaced since by a newer generation) → ErrNotFound with it as it is; missing →
	// ErrNotFound. It returns the qualification as it is after the reversal, its
	// MatchedDueRewardIDs read after the write: every match committed before the reversal is in
	// it. Its matches and slots stay: the sweep cancels the rewards they name.
	Reverse(ctx context.Context, ref QualificationRef, at time.Time, reason string) (Qualification, error)
	// LatestQualification is the lead's newest qualification, standing or not, with every due
	// reward it backs (MatchedDueRewardIDs).
	LatestQualification(ctx context.Context, leadID int64) (Qualification, error)
	StandingQualification(ctx context.Context, leadID int64) (Qualification, error)
	// QualificationsFor lists, oldest first, the qualifications whose reward may go to the user:
	// those of the leads they referred and their own. Each carries the user's own slots (Slots:
	// reward definition → due reward), not MatchedDueRewardIDs (only the qualification item has
	// it: LatestQualification, StandingQualification).
	QualificationsFor(ctx context.Context, recipientID int64) ([]Qualification, error)
	// MatchDueReward ties a seen due reward to a qualification, in one slot: a qualification
	// backs at most one due reward per recipient and reward definition (RewardSlot), so the
	// referrer's $25 and the lead's coupon can both stand on it. The same call again is a no-op.
	// The slot held by another reward, or the reward matched to another qualification →
	// ErrConflict. Ids ≤ 0, a recipient that is not the qualification's referrer or lead, or a
	// slot other than the recipient and definition the reward was seen with → ErrInvalid. A
	// missing reward or qualification → ErrNotFound.
	MatchDueReward(ctx context.Context, dueRewardID int64, q QualificationRef, slot RewardSlot) error
	// RematchDueReward moves a due reward from its slot on one qualification to the same slot
	// (recipient, reward definition) on another, once and atomically: the reward must be matched
	// to from, and to's slot must be free (or already hold this reward, which makes a repeat a
	// no-op). from's slot is freed; its other slots stay. Otherwise → ErrConflict (the reward is
	// matched elsewhere, or to's slot holds another reward); a missing reward or qualification →
	// ErrNotFound; invalid ids or slot, as MatchDueReward → ErrInvalid.
	//
	// The sweep uses it when the qualification a reward was matched to has been reversed and the
	// same lead qualified again: RF keeps the one due reward, so the match follows the lead's new
	// qualification instead of the reward being canceled. An unmatched reward is not matched to
	// from, so it conflicts too (MatchDueReward matches it).
	RematchDueReward(ctx context.Context, dueRewardID int64, from, to QualificationRef, slot RewardSlot) error

	// SeeDueReward records a due reward the first time it is seen; FirstSeenAt (zero: now) and
	// CreatedAfter are those of the first sighting and never move. CreatedAfter after
	// FirstSeenAt → ErrInvalid.
	SeeDueReward(ctx context.Context, r DueReward) (DueReward, error)
	DueRewardRecord(ctx context.Context, id int64) (DueReward, error)
	// MarkRewardSettled records a due reward issued or canceled, once: a settled reward →
	// ErrAlreadySettled with it. A reward never seen (issued by hand in RF) is recorded too. A
	// record without a recipient gets the settlement's; a known one is never changed.
	//
	// An issued reward with a known recipient (Settlement.RecipientID) also counts one in that
	// recipient's month of At, atomically with the settlement: a settlement refused with
	// ErrAlreadySettled never counts, nor does a canceled one or one without a recipient.
	MarkRewardSettled(ctx context.Context, s Settlement) (DueReward, error)
	// IssuedInMonth is how many rewards MarkRewardSettled recorded as issued to the recipient in
	// the calendar month (UTC) that contains month (zero: now); 0 when none. Counts are kept
	// 400 days past their month's end, then read 0.
	IssuedInMonth(ctx context.Context, recipientID int64, month time.Time) (int, error)

	// BeginIntent starts an attempt of an effect: absent or failed → pending (attempt 1, or one
	// more than the failed one) and nil. Otherwise nothing is written and the stored intent comes
	// back unchanged: pending → ErrIntentPending, with PreviousAttemptAt = its AttemptedAt (when
	// the unfinished attempt began); done → ErrIntentDone. A refused Begin never moves the
	// attempt's time, count or place in PendingIntents.
	BeginIntent(ctx context.Context, in Intent) (Intent, error)
	// BeginIntentIfStanding is BeginIntent, done only if qualification ref still stands, in one
	// atomic step: the sweep begins an issue this way, so that it serialises with Reverse. Either
	// the intent is begun first, and a reversal flow that reads the intent after its Reverse sees
	// it (pending or done: the reward counts as issued before the reversal), or the reversal
	// comes first and the begin is refused with ErrQualificationReversed, nothing written. A
	// pending or done intent is answered as BeginIntent answers, before the qualification is
	// considered; a missing qualification → ErrNotFound.
	BeginIntentIfStanding(ctx context.Context, in Intent, ref QualificationRef) (Intent, error)
	// TakeOverIntent starts a new attempt of a pending intent whose attempt is presumed crashed:
	// it succeeds only if the intent is still pending at attempt seenAttempts (the Attempts the
	// caller read) and that attempt began before staleBefore. It then counts attempt
	// seenAttempts+1 begun now (AttemptedAt, and the intent's place in PendingIntents); the
	// intent stays pending. Otherwise → ErrConflict with the intent as it is now: another caller
	// took it over first, it was finished, or its attempt is not stale yet. Missing → ErrNotFound.
	//
	// The caller must reconcile with the remote system (read RF's state) BEFORE taking over, and
	// act only if it wins: the crashed attempt may have taken effect, and then the intent is
	// finished done instead, with no new call. Of N callers taking over the same attempt, exactly
	// one wins; the others must not act.
	TakeOverIntent(ctx context.Context, kind IntentKind, target string, seenAttempts int, staleBefore time.Time) (Intent, error)
	// FinishIntent confirms (done) or gives up (failed, retryable) the pending attempt.
	FinishIntent(ctx context.Context, kind IntentKind, target string, outcome IntentStatus, lastErr string) (Intent, error)
	IntentOf(ctx context.Context, kind IntentKind, target string) (Intent, error)
	// PendingIntents lists pending intents of a kind, oldest attempt first, for reconciliation.
	// It reads an index that lags writes slightly; confirm with IntentOf before acting.
	PendingIntents(ctx context.Context, kind IntentKind) ([]Intent, error)

	// RecordUnmatched records a paid invoice that matched no lead; recording it again returns the
	// stored record unchanged.
	RecordUnmatched(ctx context.Context, u Unmatched) (Unmatched, error)
	UnmatchedInvoice(ctx context.Context, invoiceID string) (Unmatched, error)
	// UnmatchedDue lists waiting invoices whose NextRetryAt ≤ now, soonest first, at most limit.
	UnmatchedDue(ctx context.Context, now time.Time, limit int) ([]Unmatched, error)
	// UnmatchedWaitingCount is how many paid invoices are waiting for a lead (the sweep reports
	// it each run, for the "piling up" alarm). The index lags writes slightly.
	UnmatchedWaitingCount(ctx context.Context) (int, error)
	// UnmatchedFor lists waiting invoices of a customer or an email hash (either may be empty).
	UnmatchedFor(ctx context.Context, customerID, emailHash string) ([]Unmatched, error)
	// ResolveUnmatched closes a waiting invoice as matched or expired; the same outcome again is
	// a no-op, another → ErrConflict.
	ResolveUnmatched(ctx context.Context, invoiceID string, outcome UnmatchedStatus, reason string) (Unmatched, error)
	RescheduleUnmatched(ctx context.Context, invoiceID string, next time.Time, reason string) (Unmatched, error)

	SaveCheckpoint(ctx context.Context, name string, data []byte) error
	// LoadCheckpoint returns ErrNotFound when nothing was saved under name.
	LoadCheckpoint(ctx context.Context, name string) ([]byte, error)

	LogDecision(ctx context.Context, d Decision) error
	// Decisions lists the subject's unexpired entries, oldest first.
	Decisions(ctx context.Context, subject string) ([]Decision, error)
}
