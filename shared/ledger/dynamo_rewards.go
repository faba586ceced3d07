package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// SeeDueReward implements Store: one UpdateItem that sets every field only if absent
// (if_not_exists), so the first sighting wins and FirstSeenAt never moves, and returns the item.
// A record created earlier by MarkRewardSettled gets its missing fields filled in.
func (d *Dynamo) SeeDueReward(ctx context.Context, r DueReward) (DueReward, error) {
	if r.ID <= 0 {
		return DueReward{}, fmt.Errorf("ledger: see due reward: %w: id %d", ErrInvalid, r.ID)
	}
	if r.FirstSeenAt.IsZero() {
		r.FirstSeenAt = d.cfg.clock()
	}
	upd := set(attrType, typeDueReward).
		Set(expression.Name("due_reward_id"), expression.Value(r.ID)).
		Set(expression.Name("first_seen_at"), ifAbsent("first_seen_at", formatTS(r.FirstSeenAt))).
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

// MarkRewardSettled implements Store: one UpdateItem on condition that the reward is absent or
// only seen; a settled reward comes back from the failed condition (ALL_OLD).
func (d *Dynamo) MarkRewardSettled(ctx context.Context, id int64, state RewardState, at time.Time, by string) (DueReward, error) {
	if err := validSettlement(id, state); err != nil {
		return DueReward{}, err
	}
	if at.IsZero() {
		at = d.cfg.clock()
	}
	ts := formatTS(at)
	upd := set(attrType, typeDueReward).
		Set(expression.Name("due_reward_id"), expression.Value(id)).
		Set(expression.Name("first_seen_at"), ifAbsent("first_seen_at", ts)).
		Set(expression.Name("state"), expression.Value(string(state))).
		Set(expression.Name("settled_at"), expression.Value(ts)).
		Set(expression.Name("settled_by"), expression.Value(by))
	cond := notExists().Or(eq("state", string(RewardSeen)))
	av, err := d.update(ctx, dueKey(id), upd, &cond, types.ReturnValueAllNew)
	if old, failed := conditionFailed(err); failed {
		r, derr := decodeItem(old, dueItem.dueReward)
		if derr != nil {
			return DueReward{}, fmt.Errorf("ledger: settle due reward %d: %w", id, derr)
		}
		return r, fmt.Errorf("ledger: settle due reward %d as %s: %s by %s at %s: %w",
			id, state, r.State, r.SettledBy, formatTS(r.SettledAt), ErrAlreadySettled)
	}
	if err != nil {
		return DueReward{}, fmt.Errorf("ledger: settle due reward %d: %w", id, err)
	}
	r, err := decodeItem(av, dueItem.dueReward)
	if err != nil {
		return DueReward{}, fmt.Errorf("ledger: settle due reward %d: %w", id, err)
	}
	return r, nil
}

func validSettlement(id int64, state RewardState) error {
	if id <= 0 || (state != RewardIssued && state != RewardCanceled) {
		return fmt.Errorf("ledger: settle due reward %d as %q: %w", id, state, ErrInvalid)
	}
	return nil
}
