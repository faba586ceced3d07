package ledger

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// HoldRetention is how long a held reversal waits for its charge's payment to count: far longer
// than Stripe retries a delivery (3 days) or refbridge retries an unmatched invoice. A charge
// whose payment never counts for a lead (a customer nobody referred) leaves its hold to expire.
const HoldRetention = 400 * 24 * time.Hour

// ErrChargeMapped means HoldChargeReversal found the charge mapped to a lead: its payment
// counted meanwhile, so the reversal is applied to that lead instead of being held.
var ErrChargeMapped = errors.New("charge is mapped to a lead")

// ChargeHold is what refbridge learned about a charge's refunds and disputes before the charge
// was mapped to a lead, i.e. before the payment it belongs to counted. Stripe delivers in no
// guaranteed order and retries a failed delivery for days, so a refund or a dispute can be
// processed first; the hold keeps it until PlaceCharge maps the charge and applies it with the
// payment, in one transaction, so that the order of arrival does not change the outcome.
type ChargeHold struct {
	ChargeID   string
	InvoiceID  string // the charge's invoice, when the event names it (API versions before basil)
	CustomerID string
	Currency   string // lower-case ISO 4217, the charge's
	// RefundedMinor is the highest cumulative amount_refunded seen (0: no refund held).
	RefundedMinor int64
	RefundedAt    time.Time
	// Disputes holds each dispute of the charge by id: its amount is withdrawn, and reinstated
	// too if it was won.
	Disputes    map[string]HeldDispute
	FirstSeenAt time.Time
	UpdatedAt   time.Time
	ExpiresAt   time.Time // the last update + HoldRetention; read as absent from then on
	version     int64
}

// HeldDispute is a dispute of a charge whose payment has not counted yet.
type HeldDispute struct {
	AmountMinor int64
	Won         bool // closed as won: the withdrawal is reinstated
	At          time.Time
}

// Decrease is how much the hold takes from the net paid amount once placed: the refunds and the
// withdrawals of disputes not won.
func (h ChargeHold) Decrease() int64 {
	d := h.RefundedMinor
	for _, dp := range h.Disputes {
		if !dp.Won {
			d += dp.AmountMinor
		}
	}
	return d
}

func (h ChargeHold) validate() error {
	switch {
	case h.ChargeID == "":
		return fmt.Errorf("%w: hold without a charge id", ErrInvalid)
	case !validCurrency(h.Currency):
		return fmt.Errorf("%w: hold of charge %q: currency %q is not lower-case ISO 4217", ErrInvalid, h.ChargeID, h.Currency)
	case h.RefundedMinor < 0:
		return fmt.Errorf("%w: hold of charge %q: cumulative refund %d is negative", ErrInvalid, h.ChargeID, h.RefundedMinor)
	case h.RefundedMinor == 0 && len(h.Disputes) == 0:
		return fmt.Errorf("%w: hold of charge %q holds nothing", ErrInvalid, h.ChargeID)
	}
	for id, dp := range h.Disputes {
		if id == "" || dp.AmountMinor < 0 {
			return fmt.Errorf("%w: hold of charge %q: dispute %q of %d", ErrInvalid, h.ChargeID, id, dp.AmountMinor)
		}
	}
	return nil
}

// merge folds an observation into the stored hold (cur, nil when none): the highest cumulative
// refund, every dispute, won once seen won. changed=false when the observation adds nothing, so
// a redelivery writes nothing. The currency of the first observation stays; another one is a
// conflict.
func (h ChargeHold) merge(cur *ChargeHold, now time.Time) (next ChargeHold, changed bool, err error) {
	if cur == nil {
		next = h
		next.Disputes = map[string]HeldDispute{}
		for id, dp := range h.Disputes {
			dp.At = orNow(dp.At, now)
			next.Disputes[id] = dp
		}
		if next.RefundedMinor > 0 {
			next.RefundedAt = orNow(next.RefundedAt, now)
		} else {
			next.RefundedAt = time.Time{}
		}
		next.FirstSeenAt, next.UpdatedAt, next.ExpiresAt = now, now, holdExpiry(now)
		next.version = 1
		return next, true, nil
	}
	if cur.Currency != h.Currency {
		return *cur, false, fmt.Errorf("ledger: hold of charge %s in %s: held in %s: %w", h.ChargeID, h.Currency, cur.Currency, ErrConflict)
	}
	next = *cur
	next.Disputes = maps.Clone(cur.Disputes)
	if next.Disputes == nil {
		next.Disputes = map[string]HeldDispute{}
	}
	if h.RefundedMinor > next.RefundedMinor {
		next.RefundedMinor, next.RefundedAt, changed = h.RefundedMinor, orNow(h.RefundedAt, now), true
	}
	for id, dp := range h.Disputes {
		old, seen := next.Disputes[id]
		switch {
		case !seen:
			dp.At = orNow(dp.At, now)
			next.Disputes[id], changed = dp, true
		case dp.Won && !old.Won:
			old.Won, old.At = true, orNow(dp.At, now)
			next.Disputes[id], changed = old, true
		}
	}
	if next.InvoiceID == "" && h.InvoiceID != "" {
		next.InvoiceID, changed = h.InvoiceID, true
	}
	if next.CustomerID == "" && h.CustomerID != "" {
		next.CustomerID, changed = h.CustomerID, true
	}
	if !changed {
		return *cur, false, nil
	}
	next.UpdatedAt, next.ExpiresAt = now, holdExpiry(now)
	next.version = cur.version + 1
	return next, true, nil
}

// holdExpiry is when a hold written at now expires, rounded up to the whole second the TTL
// attribute holds.
func holdExpiry(now time.Time) time.Time {
	return unixUTC(now.Add(HoldRetention).Add(time.Second - 1).Unix())
}

func orNow(t, now time.Time) time.Time {
	if t.IsZero() {
		return now
	}
	return utc(t)
}

// ChargePlacement asks PlaceCharge to map a charge to a lead, count the payment it belongs to (if
// given), and apply whatever was held for the charge, in one step.
type ChargePlacement struct {
	LeadID   int64
	ChargeID string // "": count the payment only (invoices of API basil and later name no charge)
	Currency string // the charge's, lower-case ISO 4217
	// Payment is the invoice's payment entry (Kind SpendPayment, for LeadID and Currency); nil
	// when the charge was found by a refund or a dispute and only needs mapping.
	Payment *SpendEntry
}

func (p ChargePlacement) validate() error {
	switch {
	case p.LeadID <= 0 || !validCurrency(p.Currency):
		return fmt.Errorf("%w: place charge %q for lead %d in %q", ErrInvalid, p.ChargeID, p.LeadID, p.Currency)
	case p.Payment == nil && p.ChargeID == "":
		return fmt.Errorf("%w: place charge: neither a charge nor a payment", ErrInvalid)
	case p.Payment == nil:
		return nil
	case p.Payment.Kind != SpendPayment || p.Payment.LeadID != p.LeadID || p.Payment.Currency != p.Currency:
		return fmt.Errorf("%w: place charge %q: payment %q is not a %s payment of lead %d", ErrInvalid,
			p.ChargeID, p.Payment.Key, p.Currency, p.LeadID)
	}
	return p.Payment.validate()
}

// Placement is what PlaceCharge did.
type Placement struct {
	Spend Spend // the lead's totals after it
	// Applied: the payment counted now (false: counted before, or no payment given).
	Applied bool
	// Placed is the decrease the held reversals brought to the lead's net paid amount (Decrease
	// of the hold) when the charge was mapped with this payment: by this call, or, for a payment
	// counted before, by the call that counted it (kept on the payment's entry), so that a
	// redelivery after a crash still knows that the qualification must be checked again.
	Placed int64
}

// DisputeWithdrawnKey and DisputeReinstatedKey are the spend keys of a dispute's withdrawal and
// reinstatement: the dispute flow counts them, and PlaceCharge counts a held dispute under the
// same keys, so that a later delivery of the dispute counts nothing twice.
func DisputeWithdrawnKey(disputeID string) string { return disputeID + "#withdrawn" }

// DisputeReinstatedKey: see DisputeWithdrawnKey.
func DisputeReinstatedKey(disputeID string) string { return disputeID + "#reinstated" }

// heldEntries are the spend entries a placed hold counts for the lead: one per dispute
// withdrawal and reinstatement (the refunds go to the charge's refund level instead).
func (h ChargeHold) heldEntries(leadID int64) []SpendEntry {
	var out []SpendEntry
	for _, id := range slices.Sorted(maps.Keys(h.Disputes)) {
		dp := h.Disputes[id]
		out = append(out, SpendEntry{LeadID: leadID, Key: DisputeWithdrawnKey(id), Kind: SpendDisputeWithdrawn,
			Currency: h.Currency, AmountMinor: -dp.AmountMinor, At: dp.At})
		if dp.Won {
			out = append(out, SpendEntry{LeadID: leadID, Key: DisputeReinstatedKey(id), Kind: SpendDisputeReinstated,
				Currency: h.Currency, AmountMinor: dp.AmountMinor, At: dp.At})
		}
	}
	return out
}
