package idempotency

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Memory is an in-process Store with the same semantics as Dynamo, for local runs and tests.
type Memory struct {
	mu   sync.Mutex
	recs map[string]Record
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{recs: map[string]Record{}} }

var _ Store = (*Memory)(nil)

// free is the lock condition of both stores: absent, expired, or in progress with its lease
// ended, compared in whole seconds and milliseconds as the DynamoDB condition does.
func free(r Record, found bool, now time.Time) bool {
	return !found || r.Expiration.Unix() < now.Unix() ||
		(r.Status == StatusInProgress && r.InProgressExpiration.UnixMilli() < now.UnixMilli())
}

// PutInProgress implements Store.
func (m *Memory) PutInProgress(ctx context.Context, rec Record, now time.Time) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, found := m.recs[rec.Key]; !free(old, found, now) {
		return &old, fmt.Errorf("%w: %s", errConflict, rec.Key)
	}
	m.recs[rec.Key] = rec
	return nil, nil
}

// Complete implements Store.
func (m *Memory) Complete(ctx context.Context, rec Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, found := m.recs[rec.Key]
	if !found || old.Owner != rec.Owner || old.Status != StatusInProgress {
		return fmt.Errorf("%w: %s", ErrLockLost, rec.Key)
	}
	rec.InProgressExpiration = time.Time{}
	m.recs[rec.Key] = rec
	return nil
}

// Release implements Store.
func (m *Memory) Release(ctx context.Context, key, owner string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, found := m.recs[key]; found && old.Owner == owner {
		delete(m.recs, key)
	}
	return nil
}
