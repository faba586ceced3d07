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
	if r.FirstSeenAt.IsZero() {
		r.FirstSeenAt = m.cfg.clock()
	}
	if err := r.validSighting(); err != nil {
		return DueReward{}, err
	}
	cur, ok := m.due[r.ID]
	if !ok {
		cur = DueReward{ID: r.ID, FirstSeenAt: utc(r.FirstSeenAt), State: RewardSeen}
	}
	if !m.sighted[r.ID] {
		// The first sighting's bound, as the Dynamo store's if_not_exists keeps it; a record
		// made by a settlement before any sighting has none yet.
		cur.CreatedAfter = utc(r.CreatedAfter)
		m.sighted[r.ID] = true
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

// MarkRewardSettled implements Store: the settlement and its count under one lock, as the
// Dynamo store writes them in one transaction.
func (m *Memory) MarkRewardSettled(ctx context.Context, s Settlement) (DueReward, error) {
	if err := s.validate(); err != nil {
		return DueReward{}, err
	}
	if err := m.lock(ctx); err != nil {
		return DueReward{}, err
	}
	defer m.mu.Unlock()
	if s.At.IsZero() {
		s.At = m.cfg.clock()
	}
	s.At = utc(s.At)
	r, ok := m.due[s.ID]
	if ok && r.State != RewardSeen {
		return r, s.alreadySettled(r)
	}
	if !ok {
		r = DueReward{ID: s.ID, FirstSeenAt: s.At}
	}
	if r.RecipientID == 0 {
		r.RecipientID = s.RecipientID
	}
	r.State, r.SettledAt, r.SettledBy = s.State, s.At, s.By
	m.due[s.ID] = r
	if s.counted() {
		m.issued[issuedID{s.RecipientID, issuedMonth(s.At)}]++
	}
	return r, nil
}

// IssuedInMonth implements Store; a count past its expiration reads 0, as in the Dynamo store.
func (m *Memory) IssuedInMonth(ctx context.Context, recipientID int64, month time.Time) (int, error) {
	if recipientID <= 0 {
		return 0, fmt.Errorf("ledger: rewards issued: %w: recipient %d", ErrInvalid, recipientID)
	}
	if err := m.lock(ctx); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	if month.IsZero() {
		month = m.cfg.clock()
	}
	if issuedExpiration(month) <= m.cfg.clock().Unix() {
		return 0, nil
	}
	return m.issued[issuedID{recipientID, issuedMonth(month)}], nil
}
