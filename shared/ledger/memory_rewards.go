package ledger

import (
	"context"
	"fmt"
	"time"
)

// SeeDueReward implements Store.
func (m *Memory) SeeDueReward(ctx context.Context, r DueReward) (DueReward, error) {
	if r.ID <= 0 {
		return DueReward{}, fmt.Errorf("ledger: see due reward: %w: id %d", ErrInvalid, r.ID)
	}
	if err := m.lock(ctx); err != nil {
		return DueReward{}, err
	}
	defer m.mu.Unlock()
	cur, ok := m.due[r.ID]
	if !ok {
		if r.FirstSeenAt.IsZero() {
			r.FirstSeenAt = m.cfg.clock()
		}
		cur = DueReward{ID: r.ID, FirstSeenAt: utc(r.FirstSeenAt), State: RewardSeen}
	}
	// Fill what a record created by MarkRewardSettled did not know; never change what is known.
	if cur.RewardID == 0 {
		cur.RewardID = r.RewardID
	}
	if cur.RecipientID == 0 {
		cur.RecipientID = r.RecipientID
	}
	if cur.Metric == "" {
		cur.Metric = r.Metric
	}
	m.due[r.ID] = cur
	return cur, nil
}

// DueRewardRecord implements Store.
func (m *Memory) DueRewardRecord(ctx context.Context, id int64) (DueReward, error) {
	if err := m.lock(ctx); err != nil {
		return DueReward{}, err
	}
	defer m.mu.Unlock()
	r, ok := m.due[id]
	if !ok {
		return DueReward{}, fmt.Errorf("ledger: due reward %d: %w", id, ErrNotFound)
	}
	return r, nil
}

// MarkRewardSettled implements Store.
func (m *Memory) MarkRewardSettled(ctx context.Context, id int64, state RewardState, at time.Time, by string) (DueReward, error) {
	if err := validSettlement(id, state); err != nil {
		return DueReward{}, err
	}
	if err := m.lock(ctx); err != nil {
		return DueReward{}, err
	}
	defer m.mu.Unlock()
	if at.IsZero() {
		at = m.cfg.clock()
	}
	at = utc(at)
	r, ok := m.due[id]
	if ok && r.State != RewardSeen {
		return r, fmt.Errorf("ledger: settle due reward %d as %s: %s by %s at %s: %w",
			id, state, r.State, r.SettledBy, formatTS(r.SettledAt), ErrAlreadySettled)
	}
	if !ok {
		r = DueReward{ID: id, FirstSeenAt: at}
	}
	r.State, r.SettledAt, r.SettledBy = state, at, by
	m.due[id] = r
	return r, nil
}
