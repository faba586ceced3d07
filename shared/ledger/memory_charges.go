package ledger

import (
	"context"
	"fmt"
)

// MapCharge implements Store.
func (m *Memory) MapCharge(ctx context.Context, chargeID string, leadID int64, currency string) (ChargeMapping, error) {
	if err := validChargeMapping(chargeID, leadID, currency); err != nil {
		return ChargeMapping{}, fmt.Errorf("ledger: %w", err)
	}
	if err := m.lock(ctx); err != nil {
		return ChargeMapping{}, err
	}
	defer m.mu.Unlock()
	if cm, ok := m.charges[chargeID]; ok {
		if cm.LeadID != leadID {
			return cm, fmt.Errorf("ledger: map charge %s to lead %d: mapped to lead %d: %w",
				chargeID, leadID, cm.LeadID, ErrConflict)
		}
		return cm, nil
	}
	cm := ChargeMapping{ChargeID: chargeID, LeadID: leadID, Currency: currency, MappedAt: m.cfg.clock()}
	m.charges[chargeID] = cm
	return cm, nil
}

// LeadByCharge implements Store.
func (m *Memory) LeadByCharge(ctx context.Context, chargeID string) (Lead, error) {
	if chargeID == "" {
		return Lead{}, fmt.Errorf("ledger: lead by charge: %w: empty charge id", ErrInvalid)
	}
	if err := m.lock(ctx); err != nil {
		return Lead{}, err
	}
	defer m.mu.Unlock()
	cm, ok := m.charges[chargeID]
	if !ok {
		return Lead{}, fmt.Errorf("ledger: mapping of charge %s: %w", chargeID, ErrNotFound)
	}
	l, ok := m.leads[cm.LeadID]
	if !ok {
		return Lead{}, fmt.Errorf("ledger: charge %s: lead %d: %w", chargeID, cm.LeadID, ErrNotFound)
	}
	return l, nil
}

// ApplyChargeRefunded implements Store.
func (m *Memory) ApplyChargeRefunded(ctx context.Context, r ChargeRefund) (Spend, int64, error) {
	if err := r.validate(); err != nil {
		return Spend{}, 0, fmt.Errorf("ledger: apply charge refunded: %w", err)
	}
	if err := m.lock(ctx); err != nil {
		return Spend{}, 0, err
	}
	defer m.mu.Unlock()
	prev, seen := m.refunds[r.ChargeID]
	if seen && (prev.LeadID != r.LeadID || prev.Currency != r.Currency) {
		return Spend{}, 0, fmt.Errorf("ledger: refund of charge %s to lead %d in %s: refunds recorded for lead %d in %s: %w",
			r.ChargeID, r.LeadID, r.Currency, prev.LeadID, prev.Currency, ErrConflict)
	}
	delta := r.CumulativeMinor - prev.CumulativeMinor
	if delta <= 0 {
		return m.spendOf(r.LeadID), 0, nil
	}
	now := m.cfg.clock()
	if r.At.IsZero() {
		r.At = now
	}
	r.At = utc(r.At)
	m.refunds[r.ChargeID] = r
	s := m.spendOf(r.LeadID)
	s.Net[r.Currency] -= delta
	s.UpdatedAt = now
	m.spend[r.LeadID] = s
	return m.spendOf(r.LeadID), delta, nil
}
