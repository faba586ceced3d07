package ledger

import (
	"fmt"
	"slices"
	"strconv"
	"time"
)

// LeadSource says where refbridge learned about a lead.
type LeadSource string

// Lead sources.
const (
	SourceRFWebhook LeadSource = "rf_webhook"
	SourceSignup    LeadSource = "signup"
	SourceAPI       LeadSource = "api"
)

// Lead is an RF user refbridge knows about (usually a lead, person_invited; a referrer recorded
// from RF's referrer-joined webhook has ReferrerID 0).
type Lead struct {
	ID          int64 // RF user id
	Code        string
	EmailHash   string // HashEmail of the address
	EmailMasked string // MaskEmail of the address
	ReferrerID  int64
	CampaignID  int64
	SignedUpAt  time.Time
	Source      LeadSource
	// StripeCustomerID is the customer the lead was stored with (e.g. at signup). PutLead also
	// maps it (MapCustomer's rules); more customers may be mapped to the lead with MapCustomer,
	// and LeadByCustomer follows every mapping.
	StripeCustomerID string
	UpdatedAt        time.Time // set by the store
}

// SetEmail fills EmailHash and EmailMasked from a raw address, which is not kept.
func (l *Lead) SetEmail(email string) {
	l.EmailHash, l.EmailMasked = HashEmail(email), MaskEmail(email)
}

// merge returns stored updated with the non-zero fields of in: a partial observation (an RF
// webhook without the email, a signup without the campaign) never erases what is known.
func (in Lead) merge(stored Lead) Lead {
	out := stored
	out.ID = in.ID
	if in.Code != "" {
		out.Code = in.Code
	}
	if in.EmailHash != "" {
		out.EmailHash, out.EmailMasked = in.EmailHash, in.EmailMasked
	}
	if in.ReferrerID != 0 {
		out.ReferrerID = in.ReferrerID
	}
	if in.CampaignID != 0 {
		out.CampaignID = in.CampaignID
	}
	if !in.SignedUpAt.IsZero() {
		out.SignedUpAt = in.SignedUpAt.UTC()
	}
	if in.Source != "" {
		out.Source = in.Source
	}
	if in.StripeCustomerID != "" {
		out.StripeCustomerID = in.StripeCustomerID
	}
	return out
}

// sameContent reports whether two leads differ only in UpdatedAt. It compares whole structs, so
// a field added to Lead is compared without being listed here (and a field that is not
// comparable breaks the build instead of being skipped). Times are normalised first (UTC, no
// monotonic reading), so that == on them means the same instant; a time field added without
// being normalised here can only make an unchanged lead look changed (one needless rewrite),
// never the other way round.
func (l Lead) sameContent(o Lead) bool {
	norm := func(x Lead) Lead {
		x.UpdatedAt = time.Time{}
		x.SignedUpAt = utc(x.SignedUpAt)
		return x
	}
	return norm(l) == norm(o)
}

func (l Lead) validate() error {
	if l.ID <= 0 {
		return fmt.Errorf("%w: lead id %d", ErrInvalid, l.ID)
	}
	if !validEmailHash(l.EmailHash) {
		return fmt.Errorf("%w: lead %d: EmailHash is not a HashEmail digest", ErrInvalid, l.ID)
	}
	return nil
}

// mappingRule is the rule recorded for a mapping PutLead writes: "lead:<source>".
func (l Lead) mappingRule() string {
	if l.Source == "" {
		return "lead"
	}
	return "lead:" + string(l.Source)
}

// Mapping says that a Stripe customer is an RF lead, and which matching rule found it.
type Mapping struct {
	CustomerID string
	LeadID     int64
	Rule       string
	MappedAt   time.Time
}

// SpendKind is the kind of a spend entry; it fixes the sign of the amount.
type SpendKind string

// Spend kinds.
const (
	SpendPayment           SpendKind = "payment"            // invoice paid: amount ≥ 0
	SpendRefund            SpendKind = "refund"             // refund: amount ≤ 0
	SpendDisputeWithdrawn  SpendKind = "dispute_withdrawn"  // dispute opened, funds withdrawn: ≤ 0
	SpendDisputeReinstated SpendKind = "dispute_reinstated" // dispute won, funds back: ≥ 0
)

// SpendEntry is one effect on a lead's net paid amount.
type SpendEntry struct {
	LeadID int64
	// Key is unique per effect across all leads ("in_123#paid", "re_456", "dp_789#created",
	// "dp_789#won"): applying the same key twice counts once.
	Key         string
	Kind        SpendKind
	Currency    string // lower-case ISO 4217
	AmountMinor int64  // signed: payments and reinstatements +, refunds and withdrawals −
	InvoiceID   string // for payments: the invoice is counted once, whatever the Key
	At          time.Time
}

func (e SpendEntry) validate() error {
	switch {
	case e.LeadID <= 0:
		return fmt.Errorf("%w: spend %q: lead id %d", ErrInvalid, e.Key, e.LeadID)
	case e.Key == "":
		return fmt.Errorf("%w: spend entry without a key", ErrInvalid)
	case !validCurrency(e.Currency):
		return fmt.Errorf("%w: spend %q: currency %q is not lower-case ISO 4217", ErrInvalid, e.Key, e.Currency)
	}
	var ok bool
	switch e.Kind {
	case SpendPayment, SpendDisputeReinstated:
		ok = e.AmountMinor >= 0
	case SpendRefund, SpendDisputeWithdrawn:
		ok = e.AmountMinor <= 0
	default:
		return fmt.Errorf("%w: spend %q: kind %q", ErrInvalid, e.Key, e.Kind)
	}
	if !ok {
		return fmt.Errorf("%w: spend %q: amount %d has the wrong sign for %s", ErrInvalid, e.Key, e.AmountMinor, e.Kind)
	}
	return nil
}

func validCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if c[i] < 'a' || c[i] > 'z' {
			return false
		}
	}
	return true
}

// Spend is a lead's net paid amount per currency, in minor units. Currencies are never
// converted or summed together.
type Spend struct {
	LeadID    int64
	Net       map[string]int64
	UpdatedAt time.Time
}

// Origin says who qualified a lead.
type Origin string

// Qualification origins.
const (
	OriginRefbridge Origin = "refbridge"
	OriginRFWebhook Origin = "rf_webhook" // learned from RF's lead-qualified webhook
	OriginOther     Origin = "other"
)

// Qualification is one qualification of a lead. A lead's qualifications are numbered 1, 2, ...
// (Seq); at most one stands at a time, and only the latest can.
//
// RF's due rewards do not name the lead that earned them, so the sweep infers it from time: a
// reward can only come from a qualification RF made while the reward could have been created.
// RF made the qualification somewhere in [EarliestAt, At].
type Qualification struct {
	LeadID     int64
	Seq        int64 // assigned by Qualify (a Seq given to Qualify is the generation expected)
	ReferrerID int64 // the lead's referrer, a possible reward recipient
	// At is the latest time RF can have made the qualification; the reward hold counts from it.
	// For refbridge's own qualifications it comes from the qualify intent (the confirmation of
	// the call that made it), not from when the ledger recorded it, so a qualification recorded
	// late (a failed write, a redelivery) keeps its real time; for one learned from RF's
	// webhook, it is when refbridge learned it, so the hold is never shortened.
	At time.Time
	// EarliestAt is the earliest time RF can have made the qualification: for refbridge's own,
	// when the qualify call that made it was attempted (the intent's AttemptedAt); for one
	// learned from RF's webhook, the start (00:00 UTC) of RF's qualified_at date. Zero when
	// recorded means At; it is never after At.
	EarliestAt time.Time
	Origin     Origin
	InvoiceID  string
	Rule       string // the matching rule that tied the payment to the lead

	ReversedAt     time.Time
	ReversalReason string

	// MatchedDueRewardIDs lists, in ascending order, every due reward the qualification backs,
	// whoever receives it. It is kept on the qualification item, so LatestQualification and
	// StandingQualification fill it; QualificationsFor's index copies leave it nil.
	MatchedDueRewardIDs []int64
	// Slots maps a reward definition (RF's reward_id) to the due reward that fills it, for one
	// recipient: QualificationsFor fills it with the slots of the recipient it was asked about
	// (nil when none is taken). The qualification item has no slots: it leaves it nil.
	Slots map[int64]int64
}

// RewardSlot is a place for one due reward on a qualification: a qualification backs at most one
// due reward per recipient and reward definition. The referrer's $25 and the lead's coupon of
// one qualification fill two slots; a second $25 for the same referrer would need the same one.
type RewardSlot struct {
	RecipientID int64 // who receives the reward: the qualification's referrer or its lead
	RewardID    int64 // RF's reward definition (reward_id on the due reward)
}

// validMatch checks the ids of MatchDueReward's arguments and returns the operation's name for
// errors. Whether the recipient is one of the qualification's is checked once it is read.
func validMatch(dueRewardID int64, ref QualificationRef, slot RewardSlot) (string, error) {
	what := fmt.Sprintf("ledger: match due reward %d to qualification %d/%d (recipient %d, reward %d)",
		dueRewardID, ref.LeadID, ref.Seq, slot.RecipientID, slot.RewardID)
	if dueRewardID <= 0 || ref.LeadID <= 0 || ref.Seq <= 0 || slot.RecipientID <= 0 || slot.RewardID <= 0 {
		return what, fmt.Errorf("%s: %w", what, ErrInvalid)
	}
	return what, nil
}

// slotOf checks that the slot's recipient is one of the qualification's: only the referrer and
// the lead receive its rewards.
func (q Qualification) slotOf(what string, slot RewardSlot) error {
	if !slices.Contains(q.recipients(), slot.RecipientID) {
		return fmt.Errorf("%s: user %d receives no reward of qualification %d/%d (referrer %d): %w",
			what, slot.RecipientID, q.LeadID, q.Seq, q.ReferrerID, ErrInvalid)
	}
	return nil
}

// slotMismatch reports a due reward recorded for another recipient or reward definition than
// the slot says (a field the record does not know yet matches anything).
func slotMismatch(what string, r DueReward, slot RewardSlot) error {
	if (r.RecipientID != 0 && r.RecipientID != slot.RecipientID) || (r.RewardID != 0 && r.RewardID != slot.RewardID) {
		return fmt.Errorf("%s: due reward is recorded for recipient %d, reward %d: %w",
			what, r.RecipientID, r.RewardID, ErrInvalid)
	}
	return nil
}

// Standing reports whether the qualification has not been reversed.
func (q Qualification) Standing() bool { return q.ReversedAt.IsZero() }

// Ref identifies the qualification.
func (q Qualification) Ref() QualificationRef { return QualificationRef{LeadID: q.LeadID, Seq: q.Seq} }

// QualificationRef identifies one qualification of one lead.
type QualificationRef struct {
	LeadID int64
	Seq    int64
}

// IsZero reports whether the reference points at nothing.
func (r QualificationRef) IsZero() bool { return r.LeadID == 0 && r.Seq == 0 }

// validReverse checks Reverse's reference and returns the operation's name for errors.
func validReverse(ref QualificationRef) (string, error) {
	what := fmt.Sprintf("ledger: reverse qualification %d/%d", ref.LeadID, ref.Seq)
	if ref.LeadID <= 0 || ref.Seq <= 0 {
		return what, fmt.Errorf("%s: %w", what, ErrInvalid)
	}
	return what, nil
}

// notStanding is Reverse's ErrNotFound for a qualification that was reversed already: by a
// concurrent caller, or before a newer generation of the lead was qualified.
func notStanding(what string, q Qualification) error {
	return fmt.Errorf("%s: reversed at %s (%s): no standing qualification: %w",
		what, formatTS(q.ReversedAt), q.ReversalReason, ErrNotFound)
}

// validRematch checks RematchDueReward's arguments and returns the operation's name for errors.
func validRematch(dueRewardID int64, from, to QualificationRef, slot RewardSlot) (string, error) {
	what := fmt.Sprintf("ledger: rematch due reward %d (recipient %d, reward %d) from qualification %d/%d to %d/%d",
		dueRewardID, slot.RecipientID, slot.RewardID, from.LeadID, from.Seq, to.LeadID, to.Seq)
	switch {
	case dueRewardID <= 0 || from.LeadID <= 0 || from.Seq <= 0 || to.LeadID <= 0 || to.Seq <= 0 ||
		slot.RecipientID <= 0 || slot.RewardID <= 0:
		return what, fmt.Errorf("%s: %w", what, ErrInvalid)
	case from == to:
		return what, fmt.Errorf("%s: the same qualification: %w", what, ErrInvalid)
	}
	return what, nil
}

// rematchAnswer says what RematchDueReward does with a due reward r that is known to exist but
// whose from qualification is not matched to it: recorded for another slot → ErrInvalid;
// already matched to to → done (nil); matched to from → go on (done=false, a race: read again);
// otherwise → ErrConflict.
func rematchAnswer(what string, r DueReward, from, to QualificationRef, slot RewardSlot) (done bool, err error) {
	if err := slotMismatch(what, r, slot); err != nil {
		return true, err
	}
	switch {
	case r.Matched == to:
		return true, nil
	case r.Matched == from:
		return false, nil
	case r.Matched.IsZero():
		return true, fmt.Errorf("%s: due reward is not matched: %w", what, ErrConflict)
	}
	return true, fmt.Errorf("%s: due reward matched to %d/%d: %w", what, r.Matched.LeadID, r.Matched.Seq, ErrConflict)
}

// NextQualificationSeq is the Seq the lead's next Qualify will get, given its latest
// qualification (found=false: it has none). It names the generation in intent targets.
func NextQualificationSeq(latest Qualification, found bool) int64 {
	if !found {
		return 1
	}
	if latest.Standing() {
		return latest.Seq
	}
	return latest.Seq + 1
}

// recorded completes a qualification about to be stored: At defaults to now, EarliestAt to At,
// both in UTC; nothing of a reversal, a match or a slot is carried over. EarliestAt after At is
// ErrInvalid.
func (q Qualification) recorded(now time.Time) (Qualification, error) {
	if q.At.IsZero() {
		q.At = now
	}
	if q.EarliestAt.IsZero() {
		q.EarliestAt = q.At
	}
	q.At, q.EarliestAt = utc(q.At), utc(q.EarliestAt)
	if q.EarliestAt.After(q.At) {
		return Qualification{}, fmt.Errorf("%w: qualification of lead %d: earliest time %s is after its time %s",
			ErrInvalid, q.LeadID, formatTS(q.EarliestAt), formatTS(q.At))
	}
	q.ReversedAt, q.ReversalReason, q.MatchedDueRewardIDs, q.Slots = time.Time{}, "", nil, nil
	return q, nil
}

func (q Qualification) validate() error {
	if q.LeadID <= 0 {
		return fmt.Errorf("%w: qualification: lead id %d", ErrInvalid, q.LeadID)
	}
	switch q.Origin {
	case OriginRefbridge, OriginRFWebhook, OriginOther:
	default:
		return fmt.Errorf("%w: qualification of lead %d: origin %q", ErrInvalid, q.LeadID, q.Origin)
	}
	return nil
}

// RewardState is what refbridge knows about a due reward.
type RewardState string

// Due-reward states. Issued and canceled are final.
const (
	RewardSeen     RewardState = "seen"
	RewardIssued   RewardState = "issued"
	RewardCanceled RewardState = "canceled"
)

// Who settled a due reward.
const (
	SettledBySweep     = "sweep"
	SettledByRFWebhook = "rf_webhook"
)

// DueReward is a due reward of RF as refbridge recorded it.
type DueReward struct {
	ID          int64 // RF's due-reward id, the one issue/cancel take
	RewardID    int64 // the reward definition
	RecipientID int64
	Metric      string
	// FirstSeenAt never moves: it starts the hold of a reward with no qualification behind it.
	FirstSeenAt time.Time
	// CreatedAfter is a lower bound of when RF created the reward, set by its first sighting
	// and never moved: when the sweep's last complete listing of the metric before that
	// sighting started (the reward was not in it, so it did not exist yet). Zero when there was
	// no such listing (the first sweep after installation): no lower bound.
	CreatedAfter time.Time

	State     RewardState
	SettledAt time.Time
	SettledBy string

	Matched QualificationRef // zero: not matched
}

// validSighting checks SeeDueReward's input (FirstSeenAt already defaulted): a reward cannot have
// been created after it was seen.
func (r DueReward) validSighting() error {
	if r.ID <= 0 || (!r.CreatedAfter.IsZero() && r.CreatedAfter.After(r.FirstSeenAt)) {
		return fmt.Errorf("ledger: see due reward %d: created after %s, first seen %s: %w",
			r.ID, formatTS(r.CreatedAfter), formatTS(r.FirstSeenAt), ErrInvalid)
	}
	return nil
}

// Settlement records a due reward issued or canceled.
type Settlement struct {
	ID          int64       // RF's due-reward id
	RecipientID int64       // who received it; an issued reward counts in this recipient's month (0: unknown, not counted)
	State       RewardState // RewardIssued or RewardCanceled
	At          time.Time   // zero means now
	By          string      // SettledBySweep or SettledByRFWebhook
}

func (s Settlement) validate() error {
	if s.ID <= 0 || s.RecipientID < 0 || (s.State != RewardIssued && s.State != RewardCanceled) {
		return fmt.Errorf("ledger: settle due reward %d (recipient %d) as %q: %w", s.ID, s.RecipientID, s.State, ErrInvalid)
	}
	return nil
}

// counted reports whether the settlement counts in its recipient's month: only an issued reward
// of a known recipient does (IssuedInMonth).
func (s Settlement) counted() bool { return s.State == RewardIssued && s.RecipientID > 0 }

// alreadySettled is the error for a settlement of a reward recorded as settled, r.
func (s Settlement) alreadySettled(r DueReward) error {
	return fmt.Errorf("ledger: settle due reward %d as %s: %s by %s at %s: %w",
		s.ID, s.State, r.State, r.SettledBy, formatTS(r.SettledAt), ErrAlreadySettled)
}

// issuedCountRetention is how long after the end of its month a recipient's count of issued
// rewards is kept (IssuedInMonth then reads 0): far longer than any cap looks back, which is the
// current month only.
const issuedCountRetention = 400 * 24 * time.Hour

// monthStart is the first instant of t's calendar month, in UTC: the months IssuedInMonth
// counts are UTC months whatever zone t is in.
func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// issuedMonth names t's UTC month, "2026-11", in the counter's sort key and month attribute.
func issuedMonth(t time.Time) string { return monthStart(t).Format("2006-01") }

// issuedExpiration is when the count of t's month expires, in epoch seconds (the TTL
// attribute): issuedCountRetention after the month ends.
func issuedExpiration(t time.Time) int64 {
	return monthStart(t).AddDate(0, 1, 0).Add(issuedCountRetention).Unix()
}

// IntentKind is the kind of remote effect an intent guards.
type IntentKind string

// Intent kinds.
const (
	IntentQualify    IntentKind = "qualify"
	IntentUnqualify  IntentKind = "unqualify"
	IntentIssue      IntentKind = "issue"
	IntentCancel     IntentKind = "cancel"
	IntentCreateLead IntentKind = "create_lead" // POST /users at signup
)

func (k IntentKind) valid() bool {
	switch k {
	case IntentQualify, IntentUnqualify, IntentIssue, IntentCancel, IntentCreateLead:
		return true
	}
	return false
}

// IntentStatus is an intent's state.
type IntentStatus string

// Intent states.
const (
	IntentPending IntentStatus = "pending" // begun; the remote call may or may not have happened
	IntentDone    IntentStatus = "done"    // confirmed; never begun again
	IntentFailed  IntentStatus = "failed"  // the call is known not to have taken effect; retryable
)

// Intent records a remote effect before it is attempted (PRODUCT.md "Exactly once").
//
// There is one intent per (Kind, Target) for ever, so the target carries the generation of
// effects that can legitimately repeat: qualify and unqualify target one qualification
// (QualificationTarget: lead id and Seq), so a lead unqualified after a refund and qualified
// again after a won dispute uses a new target. Issue and cancel target a due reward
// (DueRewardTarget), which is settled once. Create-lead targets the campaign and email hash
// (LeadCreationTarget).
type Intent struct {
	Kind   IntentKind
	Target string
	Ref    string // what caused the first attempt (invoice, event, sweep run)

	Status IntentStatus
	// Attempts counts attempts begun: the first Begin, each Begin after a failure and each
	// TakeOverIntent. Refused Begins are not counted.
	Attempts    int
	CreatedAt   time.Time
	AttemptedAt time.Time // start of the latest attempt
	FinishedAt  time.Time
	LastError   string

	// PreviousAttemptAt is set only with ErrIntentPending: when the unfinished attempt began (the
	// stored AttemptedAt). A recent one may still be in flight (answer "in progress"); an old
	// one may have crashed (reconcile with RF, then FinishIntent or TakeOverIntent).
	PreviousAttemptAt time.Time
}

// QualificationTarget is the intent target for qualifying (or unqualifying) qualification seq of
// a lead; NextQualificationSeq gives the seq a Qualify is about to create.
func QualificationTarget(leadID, seq int64) string {
	return strconv.FormatInt(leadID, 10) + "#" + strconv.FormatInt(seq, 10)
}

// DueRewardTarget is the intent target for issuing or canceling a due reward.
func DueRewardTarget(dueRewardID int64) string { return strconv.FormatInt(dueRewardID, 10) }

// LeadCreationTarget is the intent target for creating the lead of an email in a campaign.
func LeadCreationTarget(campaignID int64, emailHash string) string {
	return strconv.FormatInt(campaignID, 10) + "#" + emailHash
}

// UnmatchedStatus is the state of an unmatched paid invoice.
type UnmatchedStatus string

// Unmatched states.
const (
	UnmatchedWaiting UnmatchedStatus = "waiting" // retried until RetryUntil
	UnmatchedMatched UnmatchedStatus = "matched"
	UnmatchedExpired UnmatchedStatus = "expired"
)

// Unmatched is a paid invoice that matched no lead yet.
type Unmatched struct {
	InvoiceID   string
	CustomerID  string
	EmailHash   string
	AmountMinor int64
	Currency    string
	Reason      string // why the last attempt did not match
	PaidAt      time.Time
	RetryUntil  time.Time
	NextRetryAt time.Time
	Retries     int // reschedules so far

	Status           UnmatchedStatus
	ResolvedAt       time.Time
	ResolutionReason string
}

func (u Unmatched) validate() error {
	switch {
	case u.InvoiceID == "":
		return fmt.Errorf("%w: unmatched invoice without an id", ErrInvalid)
	case u.Currency != "" && !validCurrency(u.Currency):
		return fmt.Errorf("%w: unmatched %s: currency %q", ErrInvalid, u.InvoiceID, u.Currency)
	case !validEmailHash(u.EmailHash):
		return fmt.Errorf("%w: unmatched %s: EmailHash is not a HashEmail digest", ErrInvalid, u.InvoiceID)
	}
	return nil
}

// Decision is one entry of the decision log: what was decided about a subject, by which rule,
// from which inputs. Inputs must not hold raw emails.
type Decision struct {
	Subject   string // "due#12", "invoice#in_1", "lead#42"
	At        time.Time
	Rule      string
	Outcome   string
	Reason    string
	Inputs    map[string]string
	ExpiresAt time.Time // set by the store: At + retention
}

// recorded completes a new unmatched record: waiting, first retry now unless given.
func (u Unmatched) recorded(now time.Time) Unmatched {
	if u.NextRetryAt.IsZero() {
		u.NextRetryAt = now
	}
	u.PaidAt, u.RetryUntil, u.NextRetryAt = utc(u.PaidAt), utc(u.RetryUntil), utc(u.NextRetryAt)
	u.Status, u.Retries, u.ResolvedAt, u.ResolutionReason = UnmatchedWaiting, 0, time.Time{}, ""
	return u
}

// resolvedConflict answers a change to an unmatched invoice that is no longer waiting: resolving
// it the same way again is a no-op; anything else conflicts with the resolution.
func resolvedConflict(cur Unmatched, op string, outcome UnmatchedStatus) (Unmatched, error) {
	if outcome != "" && cur.Status == outcome {
		return cur, nil
	}
	return cur, fmt.Errorf("ledger: %s unmatched %s: already %s: %w", op, cur.InvoiceID, cur.Status, ErrConflict)
}

// utc drops the zone and the monotonic reading, so that stored and returned times compare equal.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Round(0)
}

// ChargeMapping says that a Stripe charge paid for a lead. Disputes name only the charge; the
// mapping, recorded when the charge's invoice is matched, tells whose it is.
type ChargeMapping struct {
	ChargeID string
	LeadID   int64
	Currency string // lower-case ISO 4217, the charge's currency
	MappedAt time.Time
}

// ChargeRefund is what a charge.refunded event says: how much of the charge has been refunded
// so far, in total. Stripe no longer includes the refunds themselves (API 2022-11-15), and
// events may arrive twice or out of order, so the ledger keeps the highest total seen.
type ChargeRefund struct {
	LeadID          int64
	ChargeID        string
	Currency        string // lower-case ISO 4217
	CumulativeMinor int64  // the charge's amount_refunded, ≥ 0
	At              time.Time
}

func (r ChargeRefund) validate() error {
	switch {
	case r.LeadID <= 0:
		return fmt.Errorf("%w: refund of charge %q: lead id %d", ErrInvalid, r.ChargeID, r.LeadID)
	case r.ChargeID == "":
		return fmt.Errorf("%w: charge refund without a charge id", ErrInvalid)
	case !validCurrency(r.Currency):
		return fmt.Errorf("%w: refund of charge %q: currency %q is not lower-case ISO 4217", ErrInvalid, r.ChargeID, r.Currency)
	case r.CumulativeMinor < 0:
		return fmt.Errorf("%w: refund of charge %q: cumulative amount %d is negative", ErrInvalid, r.ChargeID, r.CumulativeMinor)
	}
	return nil
}

func validChargeMapping(chargeID string, leadID int64, currency string) error {
	if chargeID == "" || leadID <= 0 || !validCurrency(currency) {
		return fmt.Errorf("%w: map charge %q to lead %d in %q", ErrInvalid, chargeID, leadID, currency)
	}
	return nil
}
