package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The charge's held reversals share its partition with its mapping and refund level:
//
//	charge held            charge#<chargeID>           held          TTL: expiration
const typeChargeHold = "charge_held"

func chargeHoldKey(chargeID string) key { return key{"charge#" + chargeID, "held"} }

type chargeHoldItem struct {
	ID          string                     `dynamodbav:"id"`
	SK          string                     `dynamodbav:"sk"`
	Type        string                     `dynamodbav:"type"`
	ChargeID    string                     `dynamodbav:"charge_id"`
	InvoiceID   string                     `dynamodbav:"invoice_id,omitempty"`
	CustomerID  string                     `dynamodbav:"customer_id,omitempty"`
	Currency    string                     `dynamodbav:"currency"`
	Refunded    int64                      `dynamodbav:"refunded"`
	RefundedAt  string                     `dynamodbav:"refunded_at,omitempty"`
	Disputes    map[string]heldDisputeItem `dynamodbav:"disputes,omitempty"`
	FirstSeenAt string                     `dynamodbav:"first_seen_at"`
	UpdatedAt   string                     `dynamodbav:"updated_at"`
	Version     int64                      `dynamodbav:"version"`
	Expiration  int64                      `dynamodbav:"expiration"`
}

type heldDisputeItem struct {
	Amount int64  `dynamodbav:"amount_minor"`
	Won    bool   `dynamodbav:"won"`
	At     string `dynamodbav:"at"`
}

func holdItem(h ChargeHold) chargeHoldItem {
	k := chargeHoldKey(h.ChargeID)
	it := chargeHoldItem{ID: k.id, SK: k.sk, Type: typeChargeHold, ChargeID: h.ChargeID, InvoiceID: h.InvoiceID,
		CustomerID: h.CustomerID, Currency: h.Currency, Refunded: h.RefundedMinor, RefundedAt: formatTS(h.RefundedAt),
		FirstSeenAt: formatTS(h.FirstSeenAt), UpdatedAt: formatTS(h.UpdatedAt), Version: h.version,
		Expiration: h.ExpiresAt.Unix()}
	if len(h.Disputes) > 0 {
		it.Disputes = map[string]heldDisputeItem{}
		for id, dp := range h.Disputes {
			it.Disputes[id] = heldDisputeItem{Amount: dp.AmountMinor, Won: dp.Won, At: formatTS(dp.At)}
		}
	}
	return it
}

func (it chargeHoldItem) hold() (ChargeHold, error) {
	h := ChargeHold{ChargeID: it.ChargeID, InvoiceID: it.InvoiceID, CustomerID: it.CustomerID, Currency: it.Currency,
		RefundedMinor: it.Refunded, Disputes: map[string]HeldDispute{}, ExpiresAt: unixUTC(it.Expiration), version: it.Version}
	var err error
	for _, ts := range []struct {
		s string
		t *time.Time
	}{{it.RefundedAt, &h.RefundedAt}, {it.FirstSeenAt, &h.FirstSeenAt}, {it.UpdatedAt, &h.UpdatedAt}} {
		if *ts.t, err = parseTS(ts.s); err != nil {
			return ChargeHold{}, fmt.Errorf("decode hold of charge %s: %w", it.ChargeID, err)
		}
	}
	for id, dp := range it.Disputes {
		at, err := parseTS(dp.At)
		if err != nil {
			return ChargeHold{}, fmt.Errorf("decode hold of charge %s: %w", it.ChargeID, err)
		}
		h.Disputes[id] = HeldDispute{AmountMinor: dp.Amount, Won: dp.Won, At: at}
	}
	return h, nil
}

// decodeHold reads a hold item (nil or expired: none).
func (d *Dynamo) decodeHold(av map[string]types.AttributeValue) (*ChargeHold, error) {
	if len(av) == 0 {
		return nil, nil
	}
	h, err := decodeItem(av, chargeHoldItem.hold)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	if !h.ExpiresAt.After(d.cfg.clock()) {
		return nil, nil // TTL deletes lazily: an expired hold is absent
	}
	return &h, nil
}

// holdAbsent is the condition under which a charge has nothing held: no item, or an expired one.
func (d *Dynamo) holdAbsent() expression.ConditionBuilder {
	return notExists().Or(expression.Name(attrExpiration).LessThanEqual(expression.Value(d.cfg.clock().Unix())))
}

// HoldChargeReversal implements Store: one TransactWriteItems of a ConditionCheck that the
// charge is not mapped and the hold's put (condition: absent or expired, or the version read).
// The first attempt assumes no hold, so a first refund or dispute costs that one request; a
// hold that exists fails the condition and comes back with it (ALL_OLD), and the merged hold is
// put on the next pass. An observation that adds nothing writes nothing.
func (d *Dynamo) HoldChargeReversal(ctx context.Context, h ChargeHold) (ChargeHold, error) {
	if err := h.validate(); err != nil {
		return ChargeHold{}, fmt.Errorf("ledger: hold charge reversal: %w", err)
	}
	var cur *ChargeHold // as last seen; nil: none
	for range maxRefundRaces {
		next, changed, err := h.merge(cur, d.cfg.clock())
		if err != nil || !changed {
			return next, err
		}
		t := &txn{}
		mapAt := d.txCheck(t, chargeMappingKey(h.ChargeID), notExists())
		cond := d.holdAbsent()
		if cur != nil {
			cond = eq("version", cur.version)
		}
		holdAt := d.txPut(t, holdItem(next), &cond)
		err = d.transact(ctx, t)
		if err == nil {
			return next, nil
		}
		reasons, ok := cancellation(err)
		if !ok {
			return ChargeHold{}, fmt.Errorf("ledger: hold reversal of charge %s: %w", h.ChargeID, err)
		}
		if old, mapped := failedAt(reasons, mapAt); mapped {
			lead := int64(0)
			if cm, derr := decodeItem(old, chargeMappingItem.mapping); derr == nil {
				lead = cm.LeadID
			}
			return ChargeHold{}, fmt.Errorf("ledger: hold reversal of charge %s: mapped to lead %d: %w", h.ChargeID, lead, ErrChargeMapped)
		}
		old, lost := failedAt(reasons, holdAt)
		if !lost {
			return ChargeHold{}, fmt.Errorf("ledger: hold reversal of charge %s: %w", h.ChargeID, err)
		}
		if cur, err = d.decodeHold(old); err != nil {
			return ChargeHold{}, err
		}
	}
	return ChargeHold{}, fmt.Errorf("ledger: hold reversal of charge %s: %w", h.ChargeID, errContention)
}

// ChargeHoldOf implements Store: one consistent GetItem.
func (d *Dynamo) ChargeHoldOf(ctx context.Context, chargeID string) (ChargeHold, error) {
	if chargeID == "" {
		return ChargeHold{}, fmt.Errorf("ledger: hold of charge: %w: empty charge id", ErrInvalid)
	}
	av, _, err := d.get(ctx, chargeHoldKey(chargeID))
	if err != nil {
		return ChargeHold{}, fmt.Errorf("ledger: read hold of charge %s: %w", chargeID, err)
	}
	h, err := d.decodeHold(av)
	if err != nil {
		return ChargeHold{}, err
	}
	if h == nil {
		return ChargeHold{}, fmt.Errorf("ledger: hold of charge %s: %w", chargeID, ErrNotFound)
	}
	return *h, nil
}

// placedEntryItem is a payment's spend entry, with the decrease of the hold placed with it.
type placedEntryItem struct {
	spendEntryItem
	Placed int64 `dynamodbav:"placed_minor,omitempty"`
}

// PlaceCharge implements Store: one TransactWriteItems, then one consistent GetItem for the
// totals. The transaction holds the payment's entry and invoice marker (conditions: new), the
// charge mapping (condition: absent or this lead), a ConditionCheck that nothing is held for the
// charge, and the ADD of the amount to the lead's net: one item more than ApplySpend and no extra
// request, and it replaces MapCharge's UpdateItem. When something is held, the check fails and
// returns the hold (ALL_OLD), and the next pass places it: the hold is deleted (condition: the
// version read), its refund level becomes the charge's refund item (condition: absent), its
// disputes' entries are put (condition: new), and the ADD includes their decrease. A duplicate
// payment fails its entry's condition; the entry it returns says what was placed with it.
func (d *Dynamo) PlaceCharge(ctx context.Context, p ChargePlacement) (Placement, error) {
	if err := p.validate(); err != nil {
		return Placement{}, fmt.Errorf("ledger: place charge: %w", err)
	}
	mapIt := p.ChargeID != ""
	var hold *ChargeHold // as last seen; nil: none
	for range maxRaces {
		now := d.cfg.clock()
		t := &txn{}
		entryAt, invoiceAt, mapAt, holdAt := -1, -1, -1, -1
		refundAt, heldAt := -1, map[int]bool{}
		net := map[string]int64{}
		out := Placement{}
		if e := p.Payment; e != nil {
			at := orNow(e.At, now)
			ek := spendEntryKey(e.Key)
			it := placedEntryItem{spendEntryItem: spendEntryItem{ID: ek.id, SK: ek.sk, Type: typeSpendEntry,
				LeadID: e.LeadID, Key: e.Key, Kind: string(e.Kind), Currency: e.Currency,
				AmountMinor: e.AmountMinor, InvoiceID: e.InvoiceID, At: formatTS(at)}}
			if hold != nil {
				it.Placed = hold.Decrease()
			}
			notSeen := notExists()
			entryAt = d.txPut(t, it, &notSeen)
			if e.InvoiceID != "" {
				k := invoiceKey(e.InvoiceID)
				invoiceAt = d.txPut(t, invoiceItem{ID: k.id, SK: k.sk, Type: typeInvoice,
					InvoiceID: e.InvoiceID, LeadID: e.LeadID, SpendKey: e.Key}, &notSeen)
			}
			net[e.Currency] += e.AmountMinor
			out.Applied = true
		}
		if mapIt {
			ts := formatTS(now)
			mapCond := notExists().Or(eq("lead_id", p.LeadID))
			mapAt = d.txUpdate(t, chargeMappingKey(p.ChargeID), set(attrType, typeChargeMapping).
				Set(expression.Name("charge_id"), expression.Value(p.ChargeID)).
				Set(expression.Name("lead_id"), expression.Value(p.LeadID)).
				Set(expression.Name("currency"), expression.IfNotExists(expression.Name("currency"), expression.Value(p.Currency))).
				Set(expression.Name("mapped_at"), expression.IfNotExists(expression.Name("mapped_at"), expression.Value(ts))), &mapCond)
			if hold == nil {
				holdAt = d.txCheck(t, chargeHoldKey(p.ChargeID), d.holdAbsent())
			} else {
				holdAt = d.txDelete(t, chargeHoldKey(p.ChargeID), eq("version", hold.version))
				if hold.RefundedMinor > 0 {
					k := chargeRefundKey(p.ChargeID)
					absent := notExists()
					refundAt = d.txPut(t, chargeRefundItem{ID: k.id, SK: k.sk, Type: typeChargeRefund, ChargeID: p.ChargeID,
						LeadID: p.LeadID, Currency: hold.Currency, Refunded: hold.RefundedMinor,
						RefundedAt: formatTS(hold.RefundedAt), UpdatedAt: ts}, &absent)
					net[hold.Currency] -= hold.RefundedMinor
				}
				for _, e := range hold.heldEntries(p.LeadID) {
					ek := spendEntryKey(e.Key)
					absent := notExists()
					heldAt[d.txPut(t, spendEntryItem{ID: ek.id, SK: ek.sk, Type: typeSpendEntry, LeadID: e.LeadID,
						Key: e.Key, Kind: string(e.Kind), Currency: e.Currency, AmountMinor: e.AmountMinor,
						At: formatTS(e.At)}, &absent)] = true
					net[e.Currency] += e.AmountMinor
				}
				out.Placed = hold.Decrease()
			}
		}
		if len(net) > 0 {
			var upd expression.UpdateBuilder
			for cur, amount := range net {
				upd = upd.Add(expression.Name(netPrefix+cur), expression.Value(amount))
			}
			d.txUpdate(t, spendKey(p.LeadID), upd.Set(expression.Name(attrType), expression.Value(typeSpend)).
				Set(expression.Name("lead_id"), expression.Value(p.LeadID)).
				Set(expression.Name("updated_at"), expression.Value(formatTS(now))), nil)
		}
		err := d.transact(ctx, t)
		if err == nil {
			return d.placed(ctx, p, out)
		}
		reasons, ok := cancellation(err)
		if !ok {
			return Placement{}, fmt.Errorf("ledger: place charge %s for lead %d: %w", p.ChargeID, p.LeadID, err)
		}
		old, entrySeen := failedAt(reasons, entryAt)
		_, invoiceSeen := failedAt(reasons, invoiceAt)
		switch {
		case entrySeen || invoiceSeen:
			out = Placement{}
			if entrySeen {
				var prev placedEntryItem
				if err := decodeAV(old, &prev); err != nil {
					return Placement{}, fmt.Errorf("ledger: apply spend %s: %w", p.Payment.Key, err)
				}
				if prev.LeadID != p.Payment.LeadID || prev.Currency != p.Payment.Currency || prev.AmountMinor != p.Payment.AmountMinor {
					return Placement{}, fmt.Errorf("ledger: apply spend %s: key applied before as %d %s to lead %d: %w",
						p.Payment.Key, prev.AmountMinor, prev.Currency, prev.LeadID, ErrConflict)
				}
				out.Placed = prev.Placed
			}
			return d.placed(ctx, p, out)
		}
		if cur, mapped := failedAt(reasons, mapAt); mapped {
			cm, derr := decodeItem(cur, chargeMappingItem.mapping)
			if derr != nil {
				return Placement{}, fmt.Errorf("ledger: map charge %s: %w", p.ChargeID, derr)
			}
			if p.Payment == nil {
				return Placement{}, fmt.Errorf("ledger: map charge %s to lead %d: mapped to lead %d: %w",
					p.ChargeID, p.LeadID, cm.LeadID, ErrConflict)
			}
			// Another lead's charge: the payment counts alone, as ApplySpend with a failed
			// MapCharge would. Nothing can be held for a mapped charge.
			mapIt, hold = false, nil
			continue
		}
		if cur, lost := failedAt(reasons, holdAt); lost {
			if hold, err = d.decodeHold(cur); err != nil {
				return Placement{}, err
			}
			continue
		}
		_, refundSeen := failedAt(reasons, refundAt)
		for i := range heldAt {
			if _, seen := failedAt(reasons, i); seen {
				refundSeen = true
			}
		}
		if refundSeen {
			return Placement{}, fmt.Errorf("ledger: place hold of charge %s: its refunds or disputes are counted already: %w", p.ChargeID, ErrConflict)
		}
		return Placement{}, fmt.Errorf("ledger: place charge %s for lead %d: %w", p.ChargeID, p.LeadID, err)
	}
	return Placement{}, fmt.Errorf("ledger: place charge %s for lead %d: %w", p.ChargeID, p.LeadID, errContention)
}

// placed completes a Placement with the lead's totals.
func (d *Dynamo) placed(ctx context.Context, p ChargePlacement, out Placement) (Placement, error) {
	s, err := d.SpendOf(ctx, p.LeadID)
	if err != nil {
		return Placement{}, err
	}
	out.Spend = s
	return out, nil
}
