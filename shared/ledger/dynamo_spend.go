package ledger

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
)

// ApplySpend implements Store: one TransactWriteItems that puts the entry (condition: key not
// seen), for a payment also the invoice marker (condition: invoice not counted), and ADDs the
// amount to the lead's net_<currency>; then one consistent GetItem for the totals. A transaction
// cannot return values, hence the read.
func (d *Dynamo) ApplySpend(ctx context.Context, e SpendEntry) (Spend, bool, error) {
	if err := e.validate(); err != nil {
		return Spend{}, false, fmt.Errorf("ledger: apply spend: %w", err)
	}
	if e.At.IsZero() {
		e.At = d.cfg.clock()
	}
	now := formatTS(d.cfg.clock())
	t := &txn{}
	notSeen := notExists()
	entryAt := d.txPut(t, spendEntryItem{
		ID: spendEntryKey(e.Key).id, SK: spendEntryKey(e.Key).sk, Type: typeSpendEntry,
		LeadID: e.LeadID, Key: e.Key, Kind: string(e.Kind), Currency: e.Currency,
		AmountMinor: e.AmountMinor, InvoiceID: e.InvoiceID, At: formatTS(e.At),
	}, &notSeen)
	invoiceAt := -1
	if e.Kind == SpendPayment && e.InvoiceID != "" {
		k := invoiceKey(e.InvoiceID)
		invoiceAt = d.txPut(t, invoiceItem{ID: k.id, SK: k.sk, Type: typeInvoice,
			InvoiceID: e.InvoiceID, LeadID: e.LeadID, SpendKey: e.Key}, &notSeen)
	}
	add := expression.Add(expression.Name(netPrefix+e.Currency), expression.Value(e.AmountMinor)).
		Set(expression.Name(attrType), expression.Value(typeSpend)).
		Set(expression.Name("lead_id"), expression.Value(e.LeadID)).
		Set(expression.Name("updated_at"), expression.Value(now))
	d.txUpdate(t, spendKey(e.LeadID), add, nil)

	applied := true
	if err := d.transact(ctx, t); err != nil {
		reasons, ok := cancellation(err)
		if !ok {
			return Spend{}, false, fmt.Errorf("ledger: apply spend %s: %w", e.Key, err)
		}
		old, entrySeen := failedAt(reasons, entryAt)
		_, invoiceSeen := failedAt(reasons, invoiceAt)
		if !entrySeen && !invoiceSeen {
			return Spend{}, false, fmt.Errorf("ledger: apply spend %s: %w", e.Key, err)
		}
		if entrySeen {
			var prev spendEntryItem
			if err := decodeAV(old, &prev); err != nil {
				return Spend{}, false, fmt.Errorf("ledger: apply spend %s: %w", e.Key, err)
			}
			if prev.LeadID != e.LeadID || prev.Currency != e.Currency || prev.AmountMinor != e.AmountMinor {
				return Spend{}, false, fmt.Errorf("ledger: apply spend %s: key applied before as %d %s to lead %d: %w",
					e.Key, prev.AmountMinor, prev.Currency, prev.LeadID, ErrConflict)
			}
		}
		applied = false
	}
	s, err := d.SpendOf(ctx, e.LeadID)
	if err != nil {
		return Spend{}, applied, err
	}
	return s, applied, nil
}

// SpendOf implements Store: one consistent GetItem.
func (d *Dynamo) SpendOf(ctx context.Context, leadID int64) (Spend, error) {
	av, found, err := d.get(ctx, spendKey(leadID))
	if err != nil {
		return Spend{}, fmt.Errorf("ledger: read spend of lead %d: %w", leadID, err)
	}
	if !found {
		return Spend{LeadID: leadID, Net: map[string]int64{}}, nil
	}
	s, err := decodeSpend(leadID, av)
	if err != nil {
		return Spend{}, fmt.Errorf("ledger: %w", err)
	}
	return s, nil
}

// InvoiceCounted implements Store: one consistent GetItem of the invoice marker.
func (d *Dynamo) InvoiceCounted(ctx context.Context, invoiceID string) (bool, error) {
	if invoiceID == "" {
		return false, fmt.Errorf("ledger: invoice counted: %w: empty invoice id", ErrInvalid)
	}
	_, found, err := d.get(ctx, invoiceKey(invoiceID))
	if err != nil {
		return false, fmt.Errorf("ledger: read invoice %s: %w", invoiceID, err)
	}
	return found, nil
}
