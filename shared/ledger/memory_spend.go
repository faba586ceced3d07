package ledger

import (
	"context"
	"fmt"
	"maps"
)

// ApplySpend implements Store.
func (m *Memory) ApplySpend(ctx context.Context, e SpendEntry) (Spend, bool, error) {
	if err := e.validate(); err != nil {
		return Spend{}, false, fmt.Errorf("ledger: apply spend: %w", err)
	}
	if err := m.lock(ctx); err != nil {
		return Spend{}, false, err
	}
	defer m.mu.Unlock()
	if prev, ok := m.entries[e.Key]; ok {
		if prev.LeadID != e.LeadID || prev.Currency != e.Currency || prev.AmountMinor != e.AmountMinor {
			return Spend{}, false, fmt.Errorf("ledger: apply spend %s: key applied before as %d %s to lead %d: %w",
				e.Key, prev.AmountMinor, prev.Currency, prev.LeadID, ErrConflict)
		}
		return m.spendOf(e.LeadID), false, nil
	}
	if _, counted := m.invoices[e.InvoiceID]; e.Kind == SpendPayment && e.InvoiceID != "" && counted {
		return m.spendOf(e.LeadID), false, nil
	}
	now := m.cfg.clock()
	if e.At.IsZero() {
		e.At = now
	}
	e.At = utc(e.At)
	m.entries[e.Key] = e
	if e.Kind == SpendPayment && e.InvoiceID != "" {
		m.invoices[e.InvoiceID] = e.Key
	}
	s := m.spendOf(e.LeadID)
	s.Net[e.Currency] += e.AmountMinor
	s.UpdatedAt = now
	m.spend[e.LeadID] = s
	return m.spendOf(e.LeadID), true, nil
}

// spendOf returns a copy of a lead's totals; the caller holds the mutex.
func (m *Memory) spendOf(leadID int64) Spend {
	s, ok := m.spend[leadID]
	if !ok {
		return Spend{LeadID: leadID, Net: map[string]int64{}}
	}
	s.Net = maps.Clone(s.Net)
	return s
}

// SpendOf implements Store.
func (m *Memory) SpendOf(ctx context.Context, leadID int64) (Spend, error) {
	if err := m.lock(ctx); err != nil {
		return Spend{}, err
	}
	defer m.mu.Unlock()
	return m.spendOf(leadID), nil
}

// InvoiceCounted implements Store.
func (m *Memory) InvoiceCounted(ctx context.Context, invoiceID string) (bool, error) {
	if invoiceID == "" {
		return false, fmt.Errorf("ledger: invoice counted: %w: empty invoice id", ErrInvalid)
	}
	if err := m.lock(ctx); err != nil {
		return false, err
	}
	defer m.mu.Unlock()
	_, ok := m.invoices[invoiceID]
	return ok, nil
}
