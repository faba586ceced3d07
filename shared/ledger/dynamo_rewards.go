package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// SeeDueReward implements Store: one UpdateItem that sets every field only if absent
// (if_not_exists), so the first sighting wins and FirstSeenAt and CreatedAfter never move, and
// returns the item.
// A record created earlier by MarkRewardSettled gets its missing fields filled in.
func (d *Dynamo) SeeDueReward(ctx context.Context, r DueReward) (DueReward, error) {
	if r.ID <= 0 {
		return DueReward{}, fmt.Errorf("ledger: see due reward: %w: id %d", ErrInvalid, r.ID)
	}
	if r.FirstSeenAt.IsZero() {
		r.FirstSeenAt = d.cfg.clock()
	}
	if err := r.validSighting(); err != nil {
		return DueReward{}, err
	}
	upd := set(attrType, typeDueReward).
		Set(expression.Name("due_reward_id"), expression.Value(r.ID)).
		Set(expression.Name("first_seen_at"), ifAbsent("first_seen_at", formatTS(r.FirstSeenAt))).
		// Present from the first sighting on ("" for no bound), so no later sighting moves it.
		Set(expression.Name("created_after"), ifAbsent("created_after", formatTS(r.CreatedAfter))).
		Set(expression.Name("state"), ifAbsent("state", string(RewardSeen)))
	if r.RewardID != 0 {
		upd = upd.Set(expression.Name("reward_id"), ifAbsent("reward_id", r.RewardID))
	}
	if r.RecipientID != 0 {
		upd = upd.Set(expression.Name("recipient_id"), ifAbsent("recipient_id", r.RecipientID))
	}
	if r.Metric != "" {
		upd = upd.Set(expression.Name("metric"), ifAbsent("metric", r.Metric))
	}
	av, err := d.update(ctx, dueKey(r.ID), upd, nil, types.ReturnValueAllNew)
	if err != nil {
		return DueReward{}, fmt.Errorf("ledger: see due reward %d: %w", r.ID, err)
	}
	rec, err := decodeItem(av, dueItem.dueReward)
	if err != nil {
		return DueReward{}, fmt.Errorf("ledger: see due reward %d: %w", r.ID, err)
	}
	return rec, nil
}

func ifAbsent(name string, v any) expression.SetValueBuilder {
	return expression.IfNotExists(expression.Name(name), expression.Value(v))
}

// DueRewardRecord implements Store: one consistent GetItem.
func (d *Dynamo) DueRewardRecord(ctx context.Context, id int64) (DueReward, error) {
	av, found, err := d.get(ctx, dueKey(id))
	if err != nil {
		return DueReward{}, fmt.Errorf("ledger: read due reward %d: %w", id, err)
	}
	if !found {
		return DueReward{}, fmt.Errorf("ledger: due reward %d: %w", id, ErrNotFound)
	}
	r, err := decodeItem(av, dueItem.dueReward)
	if err != nil {
		return DueReward{}, fmt.Errorf("ledger: due reward %d: %w", id, err)
	}
	return r, nil
}

// MarkRewardSettled implements Store. A canceled reward, or an issued one whose recipient is
// unknown, costs one UpdateItem on condition that the reward is absent or only seen; a settled
// reward comes back from the failed condition (ALL_OLD).
//
// An issued reward of a known recipient is one TransactWriteItems instead: the same update under
// the same condition, and an ADD of one to the recipient's count for the month of At. Nothing
// can then record the settlement without counting it (a crash between two writes) or count a
// settlement that was refused (ErrAlreadySettled cancels both), and the request token makes the
// SDK's resend of a committed transaction succeed without counting twice. A transaction cannot
// return the record, so one consistent GetItem follows.
func (d *Dynamo) MarkRewardSettled(ctx context.Context, s Settlement) (DueReward, error) {
	if err := s.validate(); err != nil {
		return DueReward{}, err
	}
	if s.At.IsZero() {
		s.At = d.cfg.clock()
	}
	ts := formatTS(s.At)
	upd := set(attrType, typeDueReward).
		Set(expression.Name("due_reward_id"), expression.Value(s.ID)).
		Set(expression.Name("first_seen_at"), ifAbsent("first_seen_at", ts)).
		Set(expression.Name("state"), expression.Value(string(s.State))).
		Set(expression.Name("settled_at"), expression.Value(ts)).
		Set(expression.Name("settled_by"), expression.Value(s.By))
	if s.RecipientID != 0 {
		// Fills the recipient of a reward never seen; RF's recipient of a due reward never changes.
		upd = upd.Set(expression.Name("recipient_id"), ifAbsent("recipient_id", s.RecipientID))
	}
	cond := notExists().Or(eq("state", string(RewardSeen)))
	if !s.counted() {
		av, err := d.update(ctx, dueKey(s.ID), upd, &cond, types.ReturnValueAllNew)
		if old, failed := conditionFailed(err); failed {
			return settledBefore(s, old)
		}
		if err != nil {
			return DueReward{}, fmt.Errorf("ledger: settle due reward %d: %w", s.ID, err)
		}
		r, err := decodeItem(av, dueItem.dueReward)
		if err != nil {
			return DueReward{}, fmt.Errorf("ledger: settle due reward %d: %w", s.ID, err)
		}
		return r, nil
	}

	month := issuedMonth(s.At)
	count := expression.Add(expression.Name("issued"), expression.Value(1)).
		Set(expression.Name(attrType), expression.Value(typeIssuedCount)).
		Set(expression.Name("recipient_id"), expression.Value(s.RecipientID)).
		Set(expression.Name("month"), expression.Value(month)).
		Set(expression.Name("updated_at"), expression.Value(formatTS(d.cfg.clock()))).
		Set(expression.Name(attrExpiration), expression.Value(issuedExpiration(s.At)))
	t := &txn{}
	dueAt := d.txUpdate(t, dueKey(s.ID), upd, &cond)
	d.txUpdate(t, issuedKey(s.RecipientID, month), count, nil)
	if err := d.transact(ctx, t); err != nil {
		reasons, _ := cancellation(err)
		if old, failed := failedAt(reasons, dueAt); failed {
			return settledBefore(s, old)
		}
		return DueReward{}, fmt.Errorf("ledger: settle due reward %d: %w", s.ID, err)
	}
	av, found, err := d.get(ctx, dueKey(s.ID))
	if err == nil && !found {
		err = ErrNotFound // deleted by hand since
	}
	if err != nil {
		return DueReward{}, fmt.Errorf("ledger: settle due reward %d: settled and counted, read back: %w", s.ID, err)
	}
	r, err := decodeItem(av, dueItem.dueReward)
	if err != nil {
		return DueReward{}, fmt.Errorf("ledger: settle due reward %d: %w", s.ID, err)
	}
	return r, nil
}

// settledBefore answers a settlement refused because the reward was settled: old is the record
// that failed the condition.
func settledBefore(s Settlement, old map[string]types.AttributeValue) (DueReward, error) {
	r, err := decodeItem(old, dueItem.dueReward)
	if err != nil {
		return DueReward{}, fmt.Errorf("ledger: settle due reward %d: %w", s.ID, err)
	}
	return r, s.alreadySettled(r)
}

// IssuedInMonth implements Store: one consistent GetItem of the recipient's count for the month.
// A count past its expiration reads 0, as after its deletion: TTL deletes it only eventually.
func (d *Dynamo) IssuedInMonth(ctx context.Context, recipientID int64, month time.Time) (int, error) {
	if recipientID <= 0 {
		return 0, fmt.Errorf("ledger: rewards issued: %w: recipient %d", ErrInvalid, recipientID)
	}
	if month.IsZero() {
		month = d.cfg.clock()
	}
	m := issuedMonth(month)
	av, found, err := d.get(ctx, issuedKey(recipientID, m))
	if err != nil {
		return 0, fmt.Errorf("ledger: read rewards issued to %d in %s: %w", recipientID, m, err)
	}
	if !found {
		return 0, nil
	}
	var it issuedCountItem
	if err := decodeAV(av, &it); err != nil {
		return 0, fmt.Errorf("ledger: rewards issued to %d in %s: %w", recipientID, m, err)
	}
	if it.Expiration <= d.cfg.clock().Unix() {
		return 0, nil
	}
	return it.Issued, nil
}
