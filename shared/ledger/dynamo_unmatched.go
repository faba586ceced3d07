package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// RecordUnmatched implements Store: one PutItem on condition that the invoice is not recorded;
// an existing record comes back from the failed condition (ALL_OLD), unchanged.
func (d *Dynamo) RecordUnmatched(ctx context.Context, u Unmatched) (Unmatched, error) {
	if err := u.validate(); err != nil {
		return Unmatched{}, fmt.Errorf("ledger: record unmatched: %w", err)
	}
	u = u.recorded(d.cfg.clock())
	k := unmatchedKey(u.InvoiceID)
	it := unmatchedItem{
		ID: k.id, SK: k.sk, Type: typeUnmatched, InvoiceID: u.InvoiceID, CustomerID: u.CustomerID,
		EmailHash: u.EmailHash, AmountMinor: u.AmountMinor, Currency: u.Currency, ChargeID: u.ChargeID, Reason: u.Reason,
		PaidAt: formatTS(u.PaidAt), RetryUntil: formatTS(u.RetryUntil), NextRetryAt: formatTS(u.NextRetryAt),
		Status: string(u.Status), GSI1PK: gsiUnmatched, GSI1SK: unmatchedGSI1SK(u.NextRetryAt, u.InvoiceID),
	}
	cond := notExists()
	err := d.put(ctx, it, &cond)
	if old, failed := conditionFailed(err); failed {
		prev, derr := decodeItem(old, unmatchedItem.unmatched)
		if derr != nil {
			return Unmatched{}, fmt.Errorf("ledger: record unmatched %s: %w", u.InvoiceID, derr)
		}
		return prev, nil
	}
	if err != nil {
		return Unmatched{}, fmt.Errorf("ledger: record unmatched %s: %w", u.InvoiceID, err)
	}
	return u, nil
}

// UnmatchedInvoice implements Store: one consistent GetItem.
func (d *Dynamo) UnmatchedInvoice(ctx context.Context, invoiceID string) (Unmatched, error) {
	av, found, err := d.get(ctx, unmatchedKey(invoiceID))
	if err != nil {
		return Unmatched{}, fmt.Errorf("ledger: read unmatched %s: %w", invoiceID, err)
	}
	if !found {
		return Unmatched{}, fmt.Errorf("ledger: unmatched %s: %w", invoiceID, ErrNotFound)
	}
	u, err := decodeItem(av, unmatchedItem.unmatched)
	if err != nil {
		return Unmatched{}, fmt.Errorf("ledger: unmatched %s: %w", invoiceID, err)
	}
	return u, nil
}

// UnmatchedDue implements Store: one Query of gsi1 (gsi1pk "unmatched", gsi1sk before now),
// ascending, Limit limit (more pages only past 1 MB). Only waiting invoices carry gsi1 keys.
func (d *Dynamo) UnmatchedDue(ctx context.Context, now time.Time, limit int) ([]Unmatched, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("ledger: unmatched due: %w: limit %d", ErrInvalid, limit)
	}
	// gsi1sk is "<next_retry_at>#<invoice>"; '$' sorts right after '#', so "< now$" keeps every
	// key whose time is ≤ now.
	kc := expression.Key(attrGSI1PK).Equal(expression.Value(gsiUnmatched)).
		And(expression.Key(attrGSI1SK).LessThan(expression.Value(formatTS(now) + "$")))
	items, err := d.queryGSI(ctx, kc, nil, limit)
	if err != nil {
		return nil, fmt.Errorf("ledger: unmatched due: %w", err)
	}
	return decodeWaiting(items)
}

// UnmatchedWaitingCount implements Store: a COUNT Query of gsi1's "unmatched" partition (only
// waiting invoices have gsi1 keys), one request per 1 MB of index.
func (d *Dynamo) UnmatchedWaitingCount(ctx context.Context) (int, error) {
	expr, err := expression.NewBuilder().WithKeyCondition(expression.Key(attrGSI1PK).Equal(expression.Value(gsiUnmatched))).Build()
	if err != nil {
		return 0, fmt.Errorf("ledger: count unmatched: %w", err)
	}
	in := &dynamodb.QueryInput{
		TableName: aws.String(d.table), IndexName: aws.String(indexGSI1), Select: types.SelectCount,
		KeyConditionExpression: expr.KeyCondition(), ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
	}
	n := 0
	for {
		out, err := conflictRetry(ctx, func() (*dynamodb.QueryOutput, error) { return d.db.Query(ctx, in) })
		if err != nil {
			return 0, fmt.Errorf("ledger: count unmatched: %w", err)
		}
		n += int(out.Count)
		if len(out.LastEvaluatedKey) == 0 {
			return n, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// UnmatchedFor implements Store: one Query of gsi1's "unmatched" partition with a filter on the
// customer or the email hash. It reads every waiting invoice, a set kept small by retry expiry.
func (d *Dynamo) UnmatchedFor(ctx context.Context, customerID, emailHash string) ([]Unmatched, error) {
	if customerID == "" && emailHash == "" {
		return nil, fmt.Errorf("ledger: unmatched for: %w: no customer and no email", ErrInvalid)
	}
	var f expression.ConditionBuilder
	switch {
	case customerID != "" && emailHash != "":
		f = eq("customer_id", customerID).Or(eq("email_hash", emailHash))
	case customerID != "":
		f = eq("customer_id", customerID)
	default:
		f = eq("email_hash", emailHash)
	}
	kc := expression.Key(attrGSI1PK).Equal(expression.Value(gsiUnmatched))
	items, err := d.queryGSI(ctx, kc, &f, 0)
	if err != nil {
		return nil, fmt.Errorf("ledger: unmatched for customer %q: %w", customerID, err)
	}
	return decodeWaiting(items)
}

func (d *Dynamo) queryGSI(ctx context.Context, kc expression.KeyConditionBuilder, filter *expression.ConditionBuilder, limit int) ([]map[string]types.AttributeValue, error) {
	b := expression.NewBuilder().WithKeyCondition(kc)
	if filter != nil {
		b = b.WithFilter(*filter)
	}
	expr, err := b.Build()
	if err != nil {
		return nil, fmt.Errorf("build query: %w", err)
	}
	in := &dynamodb.QueryInput{
		IndexName: aws.String(indexGSI1), KeyConditionExpression: expr.KeyCondition(),
		FilterExpression: expr.Filter(), ExpressionAttributeNames: expr.Names(),
		ExpressionAttributeValues: expr.Values(), ScanIndexForward: aws.Bool(true),
	}
	if limit > 0 {
		in.Limit = aws.Int32(int32(limit))
	}
	return d.query(ctx, in, limit)
}

// decodeWaiting decodes index items, dropping any the index still shows after resolution.
func decodeWaiting(items []map[string]types.AttributeValue) ([]Unmatched, error) {
	var out []Unmatched
	for _, av := range items {
		u, err := decodeItem(av, unmatchedItem.unmatched)
		if err != nil {
			return nil, err
		}
		if u.Status == UnmatchedWaiting {
			out = append(out, u)
		}
	}
	return out, nil
}

// ResolveUnmatched implements Store: one UpdateItem on condition that the invoice is waiting; it
// removes the gsi1 keys, so the invoice leaves the retry index.
func (d *Dynamo) ResolveUnmatched(ctx context.Context, invoiceID string, outcome UnmatchedStatus, reason string) (Unmatched, error) {
	if invoiceID == "" || (outcome != UnmatchedMatched && outcome != UnmatchedExpired) {
		return Unmatched{}, fmt.Errorf("ledger: resolve unmatched %q as %q: %w", invoiceID, outcome, ErrInvalid)
	}
	upd := set("status", string(outcome)).
		Set(expression.Name("resolved_at"), expression.Value(formatTS(d.cfg.clock()))).
		Set(expression.Name("resolution_reason"), expression.Value(reason)).
		Remove(expression.Name(attrGSI1PK)).
		Remove(expression.Name(attrGSI1SK))
	return d.updateWaiting(ctx, invoiceID, upd, "resolve", outcome)
}

// RescheduleUnmatched implements Store: one UpdateItem on condition that the invoice is waiting;
// it moves the invoice in the retry index.
func (d *Dynamo) RescheduleUnmatched(ctx context.Context, invoiceID string, next time.Time, reason string) (Unmatched, error) {
	if invoiceID == "" || next.IsZero() {
		return Unmatched{}, fmt.Errorf("ledger: reschedule unmatched %q: %w", invoiceID, ErrInvalid)
	}
	upd := set("next_retry_at", formatTS(next)).
		Set(expression.Name(attrGSI1SK), expression.Value(unmatchedGSI1SK(next, invoiceID))).
		Add(expression.Name("retries"), expression.Value(1))
	if reason != "" {
		upd = upd.Set(expression.Name("reason"), expression.Value(reason))
	}
	return d.updateWaiting(ctx, invoiceID, upd, "reschedule", "")
}

func (d *Dynamo) updateWaiting(ctx context.Context, invoiceID string, upd expression.UpdateBuilder, op string, outcome UnmatchedStatus) (Unmatched, error) {
	cond := exists().And(eq("status", string(UnmatchedWaiting)))
	av, err := d.update(ctx, unmatchedKey(invoiceID), upd, &cond, types.ReturnValueAllNew)
	if old, failed := conditionFailed(err); failed {
		if len(old) == 0 {
			return Unmatched{}, fmt.Errorf("ledger: %s unmatched %s: %w", op, invoiceID, ErrNotFound)
		}
		cur, derr := decodeItem(old, unmatchedItem.unmatched)
		if derr != nil {
			return Unmatched{}, fmt.Errorf("ledger: %s unmatched %s: %w", op, invoiceID, derr)
		}
		return resolvedConflict(cur, op, outcome)
	}
	if err != nil {
		return Unmatched{}, fmt.Errorf("ledger: %s unmatched %s: %w", op, invoiceID, err)
	}
	u, err := decodeItem(av, unmatchedItem.unmatched)
	if err != nil {
		return Unmatched{}, fmt.Errorf("ledger: %s unmatched %s: %w", op, invoiceID, err)
	}
	return u, nil
}
