package ledger

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// RecordUnmatched implements Store.
func (m *Memory) RecordUnmatched(ctx context.Context, u Unmatched) (Unmatched, error) {
	if err := u.validate(); err != nil {
		return Unmatched{}, fmt.Errorf("ledger: record unmatched: %w", err)
	}
	if err := m.lock(ctx); err != nil {
		return Unmatched{}, err
	}
	defer m.mu.Unlock()
	if prev, ok := m.unmatched[u.InvoiceID]; ok {
		return prev, nil
	}
	u = u.recorded(m.cfg.clock())
	m.unmatched[u.InvoiceID] = u
	return u, nil
}

// UnmatchedInvoice implements Store.
func (m *Memory) UnmatchedInvoice(ctx context.Context, invoiceID string) (Unmatched, error) {
	if err := m.lock(ctx); err != nil {
		return Unmatched{}, err
	}
	defer m.mu.Unlock()
	u, ok := m.unmatched[invoiceID]
	if !ok {
		return Unmatched{}, fmt.Errorf("ledger: unmatched %s: %w", invoiceID, ErrNotFound)
	}
	return u, nil
}

// UnmatchedDue implements Store.
func (m *Memory) UnmatchedDue(ctx context.Context, now time.Time, limit int) ([]Unmatched, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("ledger: unmatched due: %w: limit %d", ErrInvalid, limit)
	}
	return m.waiting(ctx, limit, func(u Unmatched) bool { return !u.NextRetryAt.After(now) })
}

// UnmatchedWaitingCount implements Store.
func (m *Memory) UnmatchedWaitingCount(ctx context.Context) (int, error) {
	w, err := m.waiting(ctx, 0, func(Unmatched) bool { return true })
	return len(w), err
}

// UnmatchedFor implements Store.
func (m *Memory) UnmatchedFor(ctx context.Context, customerID, emailHash string) ([]Unmatched, error) {
	if customerID == "" && emailHash == "" {
		return nil, fmt.Errorf("ledger: unmatched for: %w: no customer and no email", ErrInvalid)
	}
	return m.waiting(ctx, 0, func(u Unmatched) bool {
		return (customerID != "" && u.CustomerID == customerID) || (emailHash != "" && u.EmailHash == emailHash)
	})
}

func (m *Memory) waiting(ctx context.Context, limit int, keep func(Unmatched) bool) ([]Unmatched, error) {
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	var out []Unmatched
	for _, u := range m.unmatched {
		if u.Status == UnmatchedWaiting && keep(u) {
			out = append(out, u)
		}
	}
	sortUnmatched(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// ResolveUnmatched implements Store.
func (m *Memory) ResolveUnmatched(ctx context.Context, invoiceID string, outcome UnmatchedStatus, reason string) (Unmatched, error) {
	if invoiceID == "" || (outcome != UnmatchedMatched && outcome != UnmatchedExpired) {
		return Unmatched{}, fmt.Errorf("ledger: resolve unmatched %q as %q: %w", invoiceID, outcome, ErrInvalid)
	}
	return m.updateWaiting(ctx, invoiceID, "resolve", outcome, func(u *Unmatched) {
		u.Status, u.ResolvedAt, u.ResolutionReason = outcome, m.cfg.clock(), reason
	})
}

// RescheduleUnmatched implements Store.
func (m *Memory) RescheduleUnmatched(ctx context.Context, invoiceID string, next time.Time, reason string) (Unmatched, error) {
	if invoiceID == "" || next.IsZero() {
		return Unmatched{}, fmt.Errorf("ledger: reschedule unmatched %q: %w", invoiceID, ErrInvalid)
	}
	return m.updateWaiting(ctx, invoiceID, "reschedule", "", func(u *Unmatched) {
		u.NextRetryAt = utc(next)
		u.Retries++
		if reason != "" {
			u.Reason = reason
		}
	})
}

func (m *Memory) updateWaiting(ctx context.Context, invoiceID, op string, outcome UnmatchedStatus, change func(*Unmatched)) (Unmatched, error) {
	if err := m.lock(ctx); err != nil {
		return Unmatched{}, err
	}
	defer m.mu.Unlock()
	u, ok := m.unmatched[invoiceID]
	if !ok {
		return Unmatched{}, fmt.Errorf("ledger: %s unmatched %s: %w", op, invoiceID, ErrNotFound)
	}
	if u.Status != UnmatchedWaiting {
		return resolvedConflict(u, op, outcome)
	}
	change(&u)
	m.unmatched[invoiceID] = u
	return u, nil
}

func sortUnmatched(us []Unmatched) {
	slices.SortFunc(us, func(a, b Unmatched) int {
		if c := a.NextRetryAt.Compare(b.NextRetryAt); c != 0 {
			return c
		}
		return cmp.Compare(a.InvoiceID, b.InvoiceID)
	})
}
