package ledger

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The DynamoDB encodings of the records. Times are tsLayout strings ("" when zero), so they read
// well in the console and order correctly where they appear in sort keys.

type leadItem struct {
	ID               string `dynamodbav:"id"`
	SK               string `dynamodbav:"sk"`
	Type             string `dynamodbav:"type"`
	LeadID           int64  `dynamodbav:"lead_id"`
	Code             string `dynamodbav:"code,omitempty"`
	EmailHash        string `dynamodbav:"email_hash,omitempty"`
	EmailMasked      string `dynamodbav:"email_masked,omitempty"`
	ReferrerID       int64  `dynamodbav:"referrer_id,omitempty"`
	CampaignID       int64  `dynamodbav:"campaign_id,omitempty"`
	SignedUpAt       string `dynamodbav:"signed_up_at,omitempty"`
	Source           string `dynamodbav:"source,omitempty"`
	StripeCustomerID string `dynamodbav:"stripe_customer_id,omitempty"`
	UpdatedAt        string `dynamodbav:"updated_at,omitempty"`
	// Version guards the lead item against concurrent upserts (optimistic locking); lookup
	// copies carry it too, harmlessly.
	Version int64 `dynamodbav:"version,omitempty"`
}

func newLeadItem(k key, typ string, l Lead, version int64) leadItem {
	return leadItem{
		ID: k.id, SK: k.sk, Type: typ, LeadID: l.ID, Code: l.Code, EmailHash: l.EmailHash,
		EmailMasked: l.EmailMasked, ReferrerID: l.ReferrerID, CampaignID: l.CampaignID,
		SignedUpAt: formatTS(l.SignedUpAt), Source: string(l.Source),
		StripeCustomerID: l.StripeCustomerID, UpdatedAt: formatTS(l.UpdatedAt), Version: version,
	}
}

func (it leadItem) lead() (Lead, error) {
	signed, err1 := parseTS(it.SignedUpAt)
	updated, err2 := parseTS(it.UpdatedAt)
	if err := errors.Join(err1, err2); err != nil {
		return Lead{}, fmt.Errorf("decode lead %d: %w", it.LeadID, err)
	}
	return Lead{
		ID: it.LeadID, Code: it.Code, EmailHash: it.EmailHash, EmailMasked: it.EmailMasked,
		ReferrerID: it.ReferrerID, CampaignID: it.CampaignID, SignedUpAt: signed,
		Source: LeadSource(it.Source), StripeCustomerID: it.StripeCustomerID, UpdatedAt: updated,
	}, nil
}

type mappingItem struct {
	ID         string `dynamodbav:"id"`
	SK         string `dynamodbav:"sk"`
	Type       string `dynamodbav:"type"`
	CustomerID string `dynamodbav:"customer_id"`
	LeadID     int64  `dynamodbav:"lead_id"`
	Rule       string `dynamodbav:"rule"`
	MappedAt   string `dynamodbav:"mapped_at"`
}

func (it mappingItem) mapping() (Mapping, error) {
	at, err := parseTS(it.MappedAt)
	if err != nil {
		return Mapping{}, fmt.Errorf("decode mapping %s: %w", it.CustomerID, err)
	}
	return Mapping{CustomerID: it.CustomerID, LeadID: it.LeadID, Rule: it.Rule, MappedAt: at}, nil
}

type chargeMappingItem struct {
	ID       string `dynamodbav:"id"`
	SK       string `dynamodbav:"sk"`
	Type     string `dynamodbav:"type"`
	ChargeID string `dynamodbav:"charge_id"`
	LeadID   int64  `dynamodbav:"lead_id"`
	Currency string `dynamodbav:"currency"`
	MappedAt string `dynamodbav:"mapped_at"`
}

func (it chargeMappingItem) mapping() (ChargeMapping, error) {
	at, err := parseTS(it.MappedAt)
	if err != nil {
		return ChargeMapping{}, fmt.Errorf("decode mapping of charge %s: %w", it.ChargeID, err)
	}
	return ChargeMapping{ChargeID: it.ChargeID, LeadID: it.LeadID, Currency: it.Currency, MappedAt: at}, nil
}

// chargeRefundItem is the highest cumulative refund seen for a charge.
type chargeRefundItem struct {
	ID         string `dynamodbav:"id"`
	SK         string `dynamodbav:"sk"`
	Type       string `dynamodbav:"type"`
	ChargeID   string `dynamodbav:"charge_id"`
	LeadID     int64  `dynamodbav:"lead_id"`
	Currency   string `dynamodbav:"currency"`
	Refunded   int64  `dynamodbav:"refunded"`
	RefundedAt string `dynamodbav:"refunded_at"`
	UpdatedAt  string `dynamodbav:"updated_at"`
}

type spendEntryItem struct {
	ID          string `dynamodbav:"id"`
	SK          string `dynamodbav:"sk"`
	Type        string `dynamodbav:"type"`
	LeadID      int64  `dynamodbav:"lead_id"`
	Key         string `dynamodbav:"spend_key"`
	Kind        string `dynamodbav:"kind"`
	Currency    string `dynamodbav:"currency"`
	AmountMinor int64  `dynamodbav:"amount_minor"`
	InvoiceID   string `dynamodbav:"invoice_id,omitempty"`
	At          string `dynamodbav:"at"`
}

type invoiceItem struct {
	ID        string `dynamodbav:"id"`
	SK        string `dynamodbav:"sk"`
	Type      string `dynamodbav:"type"`
	InvoiceID string `dynamodbav:"invoice_id"`
	LeadID    int64  `dynamodbav:"lead_id"`
	SpendKey  string `dynamodbav:"spend_key"`
}

// decodeSpend reads a spend-totals item: lead_id, updated_at and one net_<currency> number per
// currency (top-level attributes, because ADD cannot update a nested map entry).
func decodeSpend(leadID int64, av map[string]types.AttributeValue) (Spend, error) {
	s := Spend{LeadID: leadID, Net: map[string]int64{}}
	for name, v := range av {
		switch {
		case strings.HasPrefix(name, netPrefix):
			n, ok := v.(*types.AttributeValueMemberN)
			if !ok {
				return Spend{}, fmt.Errorf("decode spend of lead %d: %s is not a number", leadID, name)
			}
			amt, err := strconv.ParseInt(n.Value, 10, 64)
			if err != nil {
				return Spend{}, fmt.Errorf("decode spend of lead %d: %s: %w", leadID, name, err)
			}
			s.Net[strings.TrimPrefix(name, netPrefix)] = amt
		case name == "updated_at":
			if sv, ok := v.(*types.AttributeValueMemberS); ok {
				t, err := parseTS(sv.Value)
				if err != nil {
					return Spend{}, fmt.Errorf("decode spend of lead %d: %w", leadID, err)
				}
				s.UpdatedAt = t
			}
		}
	}
	return s, nil
}

type qualItem struct {
	ID         string `dynamodbav:"id"`
	SK         string `dynamodbav:"sk"`
	Type       string `dynamodbav:"type"`
	LeadID     int64  `dynamodbav:"lead_id"`
	Seq        int64  `dynamodbav:"seq"`
	ReferrerID int64  `dynamodbav:"referrer_id,omitempty"`
	At         string `dynamodbav:"at"`
	// EarliestAt: absent on items of earlier builds, read as At.
	EarliestAt string `dynamodbav:"earliest_at,omitempty"`
	Origin     string `dynamodbav:"origin"`
	InvoiceID  string `dynamodbav:"invoice_id,omitempty"`
	Rule       string `dynamodbav:"rule,omitempty"`
	// Standing is derived (not reversed), stored so the console shows it at a glance; Reverse
	// clears it in the same write that sets reversed_at.
	Standing       bool   `dynamodbav:"standing"`
	ReversedAt     string `dynamodbav:"reversed_at,omitempty"`
	ReversalReason string `dynamodbav:"reversal_reason,omitempty"`
	// MatchedDueRewardIDs (a number set, on the qualification item only) lists every due reward
	// the qualification backs: MatchDueReward ADDs to it, RematchDueReward DELETEs from `from`'s.
	// The slots themselves are top-level numbers slot_<rewardID> on the recipients' index copies
	// (slotPrefix); decodeQual reads them.
	MatchedDueRewardIDs []int64 `dynamodbav:"matched_due_reward_ids,numberset,omitempty"`
	// CancelsPending (a number set, on the qualification item only): the due rewards whose
	// cancel BeginCancelIfNewest began on this reversed qualification and FinishIntent has not
	// finished. The qualify intent and the Qualify of the next generation are conditioned on its
	// absence (DynamoDB removes a set emptied by DELETE).
	CancelsPending []int64 `dynamodbav:"cancels_pending,numberset,omitempty"`
}

func newQualItem(k key, typ string, q Qualification) qualItem {
	return qualItem{
		ID: k.id, SK: k.sk, Type: typ, LeadID: q.LeadID, Seq: q.Seq, ReferrerID: q.ReferrerID,
		At: formatTS(q.At), EarliestAt: formatTS(q.EarliestAt), Origin: string(q.Origin), InvoiceID: q.InvoiceID, Rule: q.Rule,
		Standing: q.Standing(), ReversedAt: formatTS(q.ReversedAt), ReversalReason: q.ReversalReason,
		MatchedDueRewardIDs: q.MatchedDueRewardIDs,
	}
}

// decodeQual reads a qualification item or index copy: the fields, and the slot_<rewardID>
// numbers of a copy (top-level attributes, one per reward definition, so that a condition and
// an update can name exactly one slot).
func decodeQual(av map[string]types.AttributeValue) (Qualification, error) {
	q, err := decodeItem(av, qualItem.qualification)
	if err != nil {
		return Qualification{}, err
	}
	for name, v := range av {
		rest, ok := strings.CutPrefix(name, slotPrefix)
		if !ok {
			continue
		}
		rewardID, err1 := strconv.ParseInt(rest, 10, 64)
		n, isN := v.(*types.AttributeValueMemberN)
		if err1 != nil || !isN {
			return Qualification{}, fmt.Errorf("decode qualification %d/%d: %s is not a slot", q.LeadID, q.Seq, name)
		}
		due, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil {
			return Qualification{}, fmt.Errorf("decode qualification %d/%d: %s: %w", q.LeadID, q.Seq, name, err)
		}
		if q.Slots == nil {
			q.Slots = map[int64]int64{}
		}
		q.Slots[rewardID] = due
	}
	return q, nil
}

func (it qualItem) qualification() (Qualification, error) {
	at, err1 := parseTS(it.At)
	rev, err2 := parseTS(it.ReversedAt)
	earliest, err3 := parseTS(it.EarliestAt)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Qualification{}, fmt.Errorf("decode qualification %d/%d: %w", it.LeadID, it.Seq, err)
	}
	if earliest.IsZero() {
		earliest = at
	}
	return Qualification{
		LeadID: it.LeadID, Seq: it.Seq, ReferrerID: it.ReferrerID, At: at, EarliestAt: earliest, Origin: Origin(it.Origin),
		InvoiceID: it.InvoiceID, Rule: it.Rule, ReversedAt: rev, ReversalReason: it.ReversalReason,
		MatchedDueRewardIDs: sortedIDs(it.MatchedDueRewardIDs), CancelsPending: sortedIDs(it.CancelsPending),
	}, nil
}

type dueItem struct {
	ID          string `dynamodbav:"id"`
	SK          string `dynamodbav:"sk"`
	Type        string `dynamodbav:"type"`
	DueRewardID int64  `dynamodbav:"due_reward_id"`
	RewardID    int64  `dynamodbav:"reward_id,omitempty"`
	RecipientID int64  `dynamodbav:"recipient_id,omitempty"`
	Metric      string `dynamodbav:"metric,omitempty"`
	FirstSeenAt string `dynamodbav:"first_seen_at"`
	// CreatedAfter is written by the first SeeDueReward, "" when there is no lower bound, so
	// that if_not_exists keeps it from being set by a later sighting.
	CreatedAfter  string `dynamodbav:"created_after,omitempty"`
	State         string `dynamodbav:"state"`
	SettledAt     string `dynamodbav:"settled_at,omitempty"`
	SettledBy     string `dynamodbav:"settled_by,omitempty"`
	MatchedLeadID int64  `dynamodbav:"matched_lead_id,omitempty"`
	MatchedSeq    int64  `dynamodbav:"matched_seq,omitempty"`
}

func (it dueItem) dueReward() (DueReward, error) {
	seen, err1 := parseTS(it.FirstSeenAt)
	settled, err2 := parseTS(it.SettledAt)
	after, err3 := parseTS(it.CreatedAfter)
	if err := errors.Join(err1, err2, err3); err != nil {
		return DueReward{}, fmt.Errorf("decode due reward %d: %w", it.DueRewardID, err)
	}
	return DueReward{
		ID: it.DueRewardID, RewardID: it.RewardID, RecipientID: it.RecipientID, Metric: it.Metric,
		FirstSeenAt: seen, CreatedAfter: after, State: RewardState(it.State), SettledAt: settled, SettledBy: it.SettledBy,
		Matched: QualificationRef{LeadID: it.MatchedLeadID, Seq: it.MatchedSeq},
	}, nil
}

// issuedCountItem counts the rewards recorded as issued to a recipient in a calendar month
// (UTC). MarkRewardSettled ADDs to it in the transaction that settles the reward; nothing but
// IssuedInMonth reads it.
type issuedCountItem struct {
	ID          string `dynamodbav:"id"`
	SK          string `dynamodbav:"sk"`
	Type        string `dynamodbav:"type"`
	RecipientID int64  `dynamodbav:"recipient_id"`
	Month       string `dynamodbav:"month"` // "2026-11"
	Issued      int    `dynamodbav:"issued"`
	UpdatedAt   string `dynamodbav:"updated_at"`
	Expiration  int64  `dynamodbav:"expiration"` // epoch seconds: the table's TTL
}

type intentItem struct {
	ID          string `dynamodbav:"id"`
	SK          string `dynamodbav:"sk"`
	Type        string `dynamodbav:"type"`
	Kind        string `dynamodbav:"kind"`
	Target      string `dynamodbav:"target"`
	Ref         string `dynamodbav:"ref"`
	Status      string `dynamodbav:"status"`
	Attempts    int    `dynamodbav:"attempts"`
	CreatedAt   string `dynamodbav:"created_at"`
	AttemptedAt string `dynamodbav:"attempted_at"`
	FinishedAt  string `dynamodbav:"finished_at,omitempty"`
	LastError   string `dynamodbav:"last_error,omitempty"`
	// CancelLeadID and CancelSeq: the reversed qualification a cancel begun with
	// BeginCancelIfNewest stands on, whose cancels_pending FinishIntent leaves.
	CancelLeadID int64 `dynamodbav:"cancel_lead_id,omitempty"`
	CancelSeq    int64 `dynamodbav:"cancel_seq,omitempty"`
}

func (it intentItem) intent() (Intent, error) {
	created, err1 := parseTS(it.CreatedAt)
	attempted, err2 := parseTS(it.AttemptedAt)
	finished, err3 := parseTS(it.FinishedAt)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Intent{}, fmt.Errorf("decode intent %s %s: %w", it.Kind, it.Target, err)
	}
	return Intent{
		Kind: IntentKind(it.Kind), Target: it.Target, Ref: it.Ref, Status: IntentStatus(it.Status),
		Attempts: it.Attempts, CreatedAt: created, AttemptedAt: attempted, FinishedAt: finished,
		LastError: it.LastError, CancelOf: QualificationRef{LeadID: it.CancelLeadID, Seq: it.CancelSeq},
	}, nil
}

type unmatchedItem struct {
	ID               string `dynamodbav:"id"`
	SK               string `dynamodbav:"sk"`
	Type             string `dynamodbav:"type"`
	InvoiceID        string `dynamodbav:"invoice_id"`
	CustomerID       string `dynamodbav:"customer_id,omitempty"`
	EmailHash        string `dynamodbav:"email_hash,omitempty"`
	AmountMinor      int64  `dynamodbav:"amount_minor"`
	Currency         string `dynamodbav:"currency,omitempty"`
	ChargeID         string `dynamodbav:"charge_id,omitempty"`
	Reason           string `dynamodbav:"reason,omitempty"`
	PaidAt           string `dynamodbav:"paid_at,omitempty"`
	RetryUntil       string `dynamodbav:"retry_until,omitempty"`
	NextRetryAt      string `dynamodbav:"next_retry_at"`
	Retries          int    `dynamodbav:"retries"`
	Status           string `dynamodbav:"status"`
	ResolvedAt       string `dynamodbav:"resolved_at,omitempty"`
	ResolutionReason string `dynamodbav:"resolution_reason,omitempty"`
	// Only while waiting: gsi1pk "unmatched", gsi1sk "<next_retry_at>#<invoice_id>".
	GSI1PK string `dynamodbav:"gsi1pk,omitempty"`
	GSI1SK string `dynamodbav:"gsi1sk,omitempty"`
}

func unmatchedGSI1SK(next time.Time, invoiceID string) string {
	return formatTS(next) + "#" + invoiceID
}

func (it unmatchedItem) unmatched() (Unmatched, error) {
	paid, err1 := parseTS(it.PaidAt)
	until, err2 := parseTS(it.RetryUntil)
	next, err3 := parseTS(it.NextRetryAt)
	resolved, err4 := parseTS(it.ResolvedAt)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return Unmatched{}, fmt.Errorf("decode unmatched %s: %w", it.InvoiceID, err)
	}
	return Unmatched{
		InvoiceID: it.InvoiceID, CustomerID: it.CustomerID, EmailHash: it.EmailHash,
		AmountMinor: it.AmountMinor, Currency: it.Currency, ChargeID: it.ChargeID, Reason: it.Reason, PaidAt: paid,
		RetryUntil: until, NextRetryAt: next, Retries: it.Retries, Status: UnmatchedStatus(it.Status),
		ResolvedAt: resolved, ResolutionReason: it.ResolutionReason,
	}, nil
}

type checkpointItem struct {
	ID      string `dynamodbav:"id"`
	SK      string `dynamodbav:"sk"`
	Type    string `dynamodbav:"type"`
	Name    string `dynamodbav:"name"`
	Data    []byte `dynamodbav:"data"`
	SavedAt string `dynamodbav:"saved_at"`
}

type decisionItem struct {
	ID         string            `dynamodbav:"id"`
	SK         string            `dynamodbav:"sk"`
	Type       string            `dynamodbav:"type"`
	Subject    string            `dynamodbav:"subject"`
	At         string            `dynamodbav:"at"`
	Rule       string            `dynamodbav:"rule,omitempty"`
	Outcome    string            `dynamodbav:"outcome,omitempty"`
	Reason     string            `dynamodbav:"reason,omitempty"`
	Inputs     map[string]string `dynamodbav:"inputs,omitempty"`
	Expiration int64             `dynamodbav:"expiration"` // epoch seconds: the table's TTL
}

// sortedIDs orders a number set's ids (DynamoDB keeps no order); nil stays nil.
func sortedIDs(ids []int64) []int64 {
	if len(ids) == 0 {
		return nil
	}
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// decodeItem unmarshals an item into the encoding type T and converts it with conv.
func decodeItem[T, R any](av map[string]types.AttributeValue, conv func(T) (R, error)) (R, error) {
	var it T
	if err := attributevalue.UnmarshalMap(av, &it); err != nil {
		var zero R
		return zero, fmt.Errorf("unmarshal item: %w", err)
	}
	return conv(it)
}

var errEmptyItem = errors.New("empty item")

// decodeAV unmarshals a raw item into an encoding struct.
func decodeAV(av map[string]types.AttributeValue, out any) error {
	if len(av) == 0 {
		return fmt.Errorf("unmarshal item: %w", errEmptyItem)
	}
	if err := attributevalue.UnmarshalMap(av, out); err != nil {
		return fmt.Errorf("unmarshal item: %w", err)
	}
	return nil
}
