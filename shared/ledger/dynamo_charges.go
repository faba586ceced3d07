package ledger

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// maxRefundRaces bounds ApplyChargeRefunded's loop. It is larger than maxRaces because a burst
// of charge.refunded deliveries all target one item, and each race a caller loses means that
// the recorded level rose (to one still below the caller's, or the caller is done): a caller
// loses at most once per distinct lower level written concurrently.
const maxRefundRaces = 32

// MapCharge implements Store: one conditional UpdateItem returning the new item (condition
// `attribute_not_exists(id) OR lead_id = :lead`; currency and mapped_at are if_not_exists). A
// conflict returns the existing mapping from the failed condition (ALL_OLD), without a second
// read.
func (d *Dynamo) MapCharge(ctx context.Context, chargeID string, leadID int64, currency string) (ChargeMapping, error) {
	if err := validChargeMapping(chargeID, leadID, currency); err != nil {
		return ChargeMapping{}, fmt.Errorf("ledger: %w", err)
	}
	now := formatTS(d.cfg.clock())
	upd := set(attrType, typeChargeMapping).
		Set(expression.Name("charge_id"), expression.Value(chargeID)).
		Set(expression.Name("lead_id"), expression.Value(leadID)).
		Set(expression.Name("currency"), expression.IfNotExists(expression.Name("currency"), expression.Value(currency))).
		Set(expression.Name("mapped_at"), expression.IfNotExists(expression.Name("mapped_at"), expression.Value(now)))
	cond := notExists().Or(eq("lead_id", leadID))
	av, err := d.update(ctx, chargeMappingKey(chargeID), upd, &cond, types.ReturnValueAllNew)
	if old, failed := conditionFailed(err); failed {
		cm, derr := decodeItem(old, chargeMappingItem.mapping)
		if derr != nil {
			return ChargeMapping{}, fmt.Errorf("ledger: map charge %s: %w", chargeID, derr)
		}
		return cm, fmt.Errorf("ledger: map charge %s to lead %d: mapped to lead %d: %w",
			chargeID, leadID, cm.LeadID, ErrConflict)
	}
	if err != nil {
		return ChargeMapping{}, fmt.Errorf("ledger: map charge %s to lead %d: %w", chargeID, leadID, err)
	}
	cm, err := decodeItem(av, chargeMappingItem.mapping)
	if err != nil {
		return ChargeMapping{}, fmt.Errorf("ledger: map charge %s: %w", chargeID, err)
	}
	return cm, nil
}

// LeadByCharge implements Store: two consistent GetItems (the charge's mapping, then the lead).
func (d *Dynamo) LeadByCharge(ctx context.Context, chargeID string) (Lead, error) {
	if chargeID == "" {
		return Lead{}, fmt.Errorf("ledger: lead by charge: %w: empty charge id", ErrInvalid)
	}
	av, found, err := d.get(ctx, chargeMappingKey(chargeID))
	if err != nil {
		return Lead{}, fmt.Errorf("ledger: read mapping of charge %s: %w", chargeID, err)
	}
	if !found {
		return Lead{}, fmt.Errorf("ledger: mapping of charge %s: %w", chargeID, ErrNotFound)
	}
	cm, err := decodeItem(av, chargeMappingItem.mapping)
	if err != nil {
		return Lead{}, fmt.Errorf("ledger: mapping of charge %s: %w", chargeID, err)
	}
	l, err := d.LeadByID(ctx, cm.LeadID)
	if err != nil {
		return Lead{}, fmt.Errorf("ledger: charge %s: %w", chargeID, err)
	}
	return l, nil
}

// ApplyChargeRefunded implements Store: one consistent GetItem of the charge's refund level,
// then, if the new cumulative amount is higher, one TransactWriteItems of two updates: the level
// (condition: the item is absent, or `refunded` still equals the level read) and ADD −delta to
// the lead's net_<currency>; then one consistent GetItem for the totals. A level at or below the
// recorded one costs the first GetItem and the totals read, nothing written. A lost race (another
// delivery raised the level in between) fails the condition, which returns the item as it is now
// (ALL_OLD), so the next pass needs no read: it gives up if the level is now high enough, and
// otherwise sends a new transaction for the remaining increase.
func (d *Dynamo) ApplyChargeRefunded(ctx context.Context, r ChargeRefund) (Spend, int64, error) {
	if err := r.validate(); err != nil {
		return Spend{}, 0, fmt.Errorf("ledger: apply charge refunded: %w", err)
	}
	if r.At.IsZero() {
		r.At = d.cfg.clock()
	}
	k := chargeRefundKey(r.ChargeID)
	var (
		old   map[string]types.AttributeValue // the refund item as last seen; nil: read it
		known bool
	)
	for range maxRefundRaces {
		if !known {
			av, _, err := d.get(ctx, k)
			if err != nil {
				return Spend{}, 0, fmt.Errorf("ledger: read refunds of charge %s: %w", r.ChargeID, err)
			}
			old = av
		}
		known = false
		exists, level, err := r.recorded(old)
		if err != nil {
			return Spend{}, 0, err
		}
		if r.CumulativeMinor <= level {
			s, err := d.SpendOf(ctx, r.LeadID)
			return s, 0, err
		}
		delta := r.CumulativeMinor - level
		now := formatTS(d.cfg.clock())
		cond := notExists()
		if exists {
			cond = eq("refunded", level)
		}
		t := &txn{}
		refundAt := d.txUpdate(t, k, set(attrType, typeChargeRefund).
			Set(expression.Name("charge_id"), expression.Value(r.ChargeID)).
			Set(expression.Name("lead_id"), expression.Value(r.LeadID)).
			Set(expression.Name("currency"), expression.Value(r.Currency)).
			Set(expression.Name("refunded"), expression.Value(r.CumulativeMinor)).
			Set(expression.Name("refunded_at"), expression.Value(formatTS(r.At))).
			Set(expression.Name("updated_at"), expression.Value(now)), &cond)
		d.txUpdate(t, spendKey(r.LeadID), expression.Add(expression.Name(netPrefix+r.Currency), expression.Value(-delta)).
			Set(expression.Name(attrType), expression.Value(typeSpend)).
			Set(expression.Name("lead_id"), expression.Value(r.LeadID)).
			Set(expression.Name("updated_at"), expression.Value(now)), nil)
		err = d.transact(ctx, t)
		if err == nil {
			s, err := d.SpendOf(ctx, r.LeadID)
			if err != nil {
				return Spend{}, delta, err
			}
			return s, delta, nil
		}
		reasons, ok := cancellation(err)
		if !ok {
			return Spend{}, 0, fmt.Errorf("ledger: apply refund of charge %s: %w", r.ChargeID, err)
		}
		cur, lost := failedAt(reasons, refundAt)
		if !lost {
			return Spend{}, 0, fmt.Errorf("ledger: apply refund of charge %s: %w", r.ChargeID, err)
		}
		// Another delivery moved the level: the failure carries the item as it is now.
		old, known = cur, len(cur) > 0
	}
	return Spend{}, 0, fmt.Errorf("ledger: apply refund of charge %s: %w", r.ChargeID, errContention)
}

// recorded decodes a charge's refund item (nil: none) into whether it exists and its level,
// and refuses a refund for another lead or currency than the recorded ones.
func (r ChargeRefund) recorded(av map[string]types.AttributeValue) (bool, int64, error) {
	if len(av) == 0 {
		return false, 0, nil
	}
	var it chargeRefundItem
	if err := decodeAV(av, &it); err != nil {
		return false, 0, fmt.Errorf("ledger: refunds of charge %s: %w", r.ChargeID, err)
	}
	if it.LeadID != r.LeadID || it.Currency != r.Currency {
		return false, 0, fmt.Errorf("ledger: refund of charge %s to lead %d in %s: refunds recorded for lead %d in %s: %w",
			r.ChargeID, r.LeadID, r.Currency, it.LeadID, it.Currency, ErrConflict)
	}
	return true, it.Refunded, nil
}
