package ledger

import (
	"context"
	"fmt"
	"maps"
)

// heldFor returns the charge's unexpired hold; the caller holds the mutex.
func (m *Memory) heldFor(chargeID string) (ChargeHold, bool) {
	h, ok := m.holds[chargeID]
	if !ok || !h.ExpiresAt.After(m.cfg.clock()) {
		return ChargeHold{}, false
	}
	h.Disputes = maps.Clone(h.Disputes)
	return h, true
}

// HoldChargeReversal implements Store.
func (m *Memory) HoldChargeReversal(ctx context.Context, h ChargeHold) (ChargeHold, error) {
	if err := h.validate(); err != nil {
		return ChargeHold{}, fmt.Errorf("ledger: hold charge reversal: %w", err)
	}
	if err := m.lock(ctx); err != nil {
		return ChargeHold{}, err
	}
	defer m.mu.Unlock()
	if cm, ok := m.charges[h.ChargeID]; ok {
		return ChargeHold{}, fmt.Errorf("ledger: hold reversal of charge %s: mapped to lead %d: %w", h.ChargeID, cm.LeadID, ErrChargeMapped)
	}
	var cur *ChargeHold
	if old, ok := m.heldFor(h.ChargeID); ok {
		cur = &old
	}
	next, changed, err := h.merge(cur, m.cfg.clock())
	if err != nil || !changed {
		return next, err
	}
	if m.holds == nil {
		m.holds = map[string]ChargeHold{}
	}
	m.holds[h.ChargeID] = next
	next.Disputes = maps.Clone(next.Disputes)
	return next, nil
}

// ChargeHoldOf implements Store.
func (m *Memory) ChargeHoldOf(ctx context.Context, chargeID string) (ChargeHold, error) {
	if err := m.lock(ctx); err != nil {
		return ChargeHold{}, err
	}
	defer m.mu.Unlock()
	h, ok := m.heldFor(chargeID)
	if !ok {
		return ChargeHold{}, fmt.Errorf("ledger: hold of charge %s: %w", chargeID, ErrNotFound)
	}
	return h, nil
}

// PlaceCharge implements Store.
func (m *Memory) PlaceCharge(ctx context.Context, p ChargePlacement) (Placement, error) {
	if err := p.validate(); err != nil {
		return Placement{}, fmt.Errorf("ledger: place charge: %w", err)
	}
	if err := m.lock(ctx); err != nil {
		return Placement{}, err
	}
	defer m.mu.Unlock()
	now := m.cfg.clock()
	out := Placement{}
	if e := p.Payment; e != nil {
		if prev, ok := m.entries[e.Key]; ok {
			if prev.LeadID != e.LeadID || prev.Currency != e.Currency || prev.AmountMinor != e.AmountMinor {
				return Placement{}, fmt.Errorf("ledger: apply spend %s: key applied before as %d %s to lead %d: %w",
					e.Key, prev.AmountMinor, prev.Currency, prev.LeadID, ErrConflict)
			}
			out.Spend, out.Placed = m.spendOf(p.LeadID), m.placed[e.Key]
			return out, nil
		}
		if _, counted := m.invoices[e.InvoiceID]; e.InvoiceID != "" && counted {
			out.Spend = m.spendOf(p.LeadID)
			return out, nil
		}
	}
	var hold ChargeHold
	held, mapIt := false, false
	if p.ChargeID != "" {
		if cm, ok := m.charges[p.ChargeID]; ok && cm.LeadID != p.LeadID {
			if p.Payment == nil {
				return Placement{}, fmt.Errorf("ledger: map charge %s to lead %d: mapped to lead %d: %w",
					p.ChargeID, p.LeadID, cm.LeadID, ErrConflict)
			}
		} else {
			mapIt = true
			hold, held = m.heldFor(p.ChargeID)
		}
	}
	if held {
		if _, ok := m.refunds[p.ChargeID]; ok && hold.RefundedMinor > 0 {
			return Placement{}, fmt.Errorf("ledger: place hold of charge %s: refunds recorded already: %w", p.ChargeID, ErrConflict)
		}
		for _, e := range hold.heldEntries(p.LeadID) {
			if _, ok := m.entries[e.Key]; ok {
				return Placement{}, fmt.Errorf("ledger: place hold of charge %s: %s counted already: %w", p.ChargeID, e.Key, ErrConflict)
			}
		}
	}
	// Every check passed: write, as one transaction would.
	if mapIt {
		if _, ok := m.charges[p.ChargeID]; !ok {
			m.charges[p.ChargeID] = ChargeMapping{ChargeID: p.ChargeID, LeadID: p.LeadID, Currency: p.Currency, MappedAt: now}
		}
	}
	s := m.spendOf(p.LeadID)
	if e := p.Payment; e != nil {
		pe := *e
		pe.At = utc(orNow(pe.At, now))
		m.entries[pe.Key] = pe
		if pe.InvoiceID != "" {
			m.invoices[pe.InvoiceID] = pe.Key
		}
		s.Net[pe.Currency] += pe.AmountMinor
		out.Applied = true
	}
	if held {
		if hold.RefundedMinor > 0 {
			m.refunds[p.ChargeID] = ChargeRefund{LeadID: p.LeadID, ChargeID: p.ChargeID, Currency: hold.Currency,
				CumulativeMinor: hold.RefundedMinor, At: hold.RefundedAt}
		}
		s.Net[hold.Currency] -= hold.RefundedMinor
		for _, e := range hold.heldEntries(p.LeadID) {
			m.entries[e.Key] = e
			s.Net[e.Currency] += e.AmountMinor
		}
		delete(m.holds, p.ChargeID)
		out.Placed = hold.Decrease()
		if p.Payment != nil {
			if m.placed == nil {
				m.placed = map[string]int64{}
			}
			m.placed[p.Payment.Key] = out.Placed
		}
	}
	if out.Applied || held {
		s.UpdatedAt = now
		m.spend[p.LeadID] = s
	}
	out.Spend = m.spendOf(p.LeadID)
	return out, nil
}
