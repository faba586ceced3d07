package ledger

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// BeginIntent implements Store: one UpdateItem on condition that the intent is absent or failed.
// A pending or done intent fails the condition and comes back with the failure (ALL_OLD), so a
// refused Begin writes nothing and needs no second read: the unfinished attempt's attempted_at,
// attempts and place in the pending index stay what they were.
func (d *Dynamo) BeginIntent(ctx context.Context, in Intent) (Intent, error) {
	if !in.Kind.valid() || in.Target == "" {
		return Intent{}, fmt.Errorf("ledger: begin intent %q %q: %w", in.Kind, in.Target, ErrInvalid)
	}
	if prev, ok := previousGeneration(in.Kind, in.Target); ok {
		return d.beginQualify(ctx, in, prev)
	}
	upd, cond := beginWrite(in, formatTS(d.cfg.clock()))
	av, err := d.update(ctx, intentKey(in.Kind, in.Target), upd, &cond, types.ReturnValueAllNew)
	if old, failed := conditionFailed(err); failed {
		cur, derr := decodeItem(old, intentItem.intent)
		if derr != nil {
			return Intent{}, fmt.Errorf("ledger: begin intent %s %s: %w", in.Kind, in.Target, derr)
		}
		return beginRefused(cur)
	}
	if err != nil {
		return Intent{}, fmt.Errorf("ledger: begin intent %s %s: %w", in.Kind, in.Target, err)
	}
	it, err := decodeItem(av, intentItem.intent)
	if err != nil {
		return Intent{}, fmt.Errorf("ledger: begin intent %s %s: %w", in.Kind, in.Target, err)
	}
	return it, nil
}

// beginQualify is BeginIntent of a qualify intent of generation prev.Seq+1: one
// TransactWriteItems of BeginIntent's update of the intent (same condition) and a
// ConditionCheck that qualification prev has no cancels_pending (a missing item has none), then
// one consistent GetItem of the intent. BeginCancelIfNewest writes prev and checks this intent
// in its own transaction, so DynamoDB serialises the two.
func (d *Dynamo) beginQualify(ctx context.Context, in Intent, prev QualificationRef) (Intent, error) {
	what := fmt.Sprintf("ledger: begin intent %s %s", in.Kind, in.Target)
	upd, cond := beginWrite(in, formatTS(d.cfg.clock()))
	t := &txn{}
	intentAt := d.txUpdate(t, intentKey(in.Kind, in.Target), upd, &cond)
	prevAt := d.txCheck(t, qualKey(prev.LeadID, prev.Seq), expression.AttributeNotExists(expression.Name("cancels_pending")))
	if err := d.transact(ctx, t); err != nil {
		reasons, ok := cancellation(err)
		if !ok {
			return Intent{}, fmt.Errorf("%s: %w", what, err)
		}
		if old, failed := failedAt(reasons, intentAt); failed && len(old) > 0 {
			return refusedBegin(what, old)
		}
		if old, failed := failedAt(reasons, prevAt); failed && len(old) > 0 {
			q, derr := decodeQual(old)
			if derr != nil {
				return Intent{}, fmt.Errorf("%s: %w", what, derr)
			}
			return Intent{}, cancelsPendingOn(what, prev, q.CancelsPending)
		}
		return Intent{}, fmt.Errorf("%s: %w", what, err)
	}
	return d.readBegun(ctx, what, in)
}

// readBegun reads back an intent a transaction just began (a transaction returns no values).
func (d *Dynamo) readBegun(ctx context.Context, what string, in Intent) (Intent, error) {
	return d.readBack(ctx, what+": begun", in.Kind, in.Target)
}

// readBack reads an intent just written: one consistent GetItem.
func (d *Dynamo) readBack(ctx context.Context, what string, kind IntentKind, target string) (Intent, error) {
	av, found, err := d.get(ctx, intentKey(kind, target))
	if err == nil && !found {
		err = ErrNotFound // deleted by hand since
	}
	if err != nil {
		return Intent{}, fmt.Errorf("%s, read back: %w", what, err)
	}
	it, err := decodeItem(av, intentItem.intent)
	if err != nil {
		return Intent{}, fmt.Errorf("%s: %w", what, err)
	}
	return it, nil
}

// beginWrite is BeginIntent's update of the intent item at time ts, and its condition: absent
// or failed.
func beginWrite(in Intent, ts string) (expression.UpdateBuilder, expression.ConditionBuilder) {
	upd := set(attrType, typeIntent).
		Set(expression.Name("kind"), expression.Value(string(in.Kind))).
		Set(expression.Name("target"), expression.Value(in.Target)).
		Set(expression.Name("ref"), ifAbsent("ref", in.Ref)).
		Set(expression.Name("status"), expression.Value(string(IntentPending))).
		Add(expression.Name("attempts"), expression.Value(1)).
		Set(expression.Name("created_at"), ifAbsent("created_at", ts)).
		Set(expression.Name("attempted_at"), expression.Value(ts)).
		Remove(expression.Name("finished_at")).
		// Pending intents are listed for reconciliation through gsi1, oldest attempt first.
		Set(expression.Name(attrGSI1PK), expression.Value(intentPendingPK(in.Kind))).
		Set(expression.Name(attrGSI1SK), expression.Value(intentPendingSK(ts, in.Target)))
	return upd, notExists().Or(eq("status", string(IntentFailed)))
}

// BeginIntentIfStanding implements Store: one TransactWriteItems of BeginIntent's update of the
// intent (same condition) and a ConditionCheck on the qualification item (it exists and has no
// reversed_at), then one consistent GetItem of the intent (a transaction returns no values).
// Reverse writes the same qualification item in its own transaction, so DynamoDB serialises the
// two: either the intent is begun before the reversal (and the reversal flow, reading the intent
// after it, sees it), or the reversal comes first and the condition check cancels the begin.
// A failed condition's ALL_OLD item tells which: the intent pending or done (as BeginIntent
// answers, first: the effect may already be under way), or the qualification reversed
// (ErrQualificationReversed) or missing (ErrNotFound).
func (d *Dynamo) BeginIntentIfStanding(ctx context.Context, in Intent, ref QualificationRef) (Intent, error) {
	what, err := validBeginIfStanding(in, ref)
	if err != nil {
		return Intent{}, err
	}
	upd, cond := beginWrite(in, formatTS(d.cfg.clock()))
	t := &txn{}
	intentAt := d.txUpdate(t, intentKey(in.Kind, in.Target), upd, &cond)
	standing := exists().And(expression.AttributeNotExists(expression.Name("reversed_at")))
	qualAt := d.txCheck(t, qualKey(ref.LeadID, ref.Seq), standing)
	if err := d.transact(ctx, t); err != nil {
		reasons, ok := cancellation(err)
		if !ok {
			return Intent{}, fmt.Errorf("%s: %w", what, err)
		}
		if old, failed := failedAt(reasons, intentAt); failed && len(old) > 0 {
			return refusedBegin(what, old)
		}
		if old, failed := failedAt(reasons, qualAt); failed {
			q, err := refusedQual(what, old)
			if err != nil {
				return Intent{}, err
			}
			return Intent{}, reversedBefore(what, q)
		}
		return Intent{}, fmt.Errorf("%s: %w", what, err)
	}
	return d.readBegun(ctx, what, in)
}

// BeginCancelIfNewest implements Store: one TransactWriteItems of four items, then one
// consistent GetItem of the intent: BeginIntent's update of the cancel intent (same condition,
// and SET cancel_lead_id, cancel_seq), an update of the qualification item ADDing the due reward
// to cancels_pending (condition: it exists and is reversed), a ConditionCheck that the next
// generation's qualification item does not exist, and one that its qualify intent does not
// exist or is failed. Qualify and the qualify intent's begin condition on the same items, so
// DynamoDB serialises them with this: whichever commits first, the other fails its condition.
// The failed condition's ALL_OLD item tells which refusal to answer.
func (d *Dynamo) BeginCancelIfNewest(ctx context.Context, in Intent, ref QualificationRef) (Intent, error) {
	what, id, err := validBeginCancel(in, ref)
	if err != nil {
		return Intent{}, err
	}
	upd, cond := beginWrite(in, formatTS(d.cfg.clock()))
	upd = upd.Set(expression.Name("cancel_lead_id"), expression.Value(ref.LeadID)).
		Set(expression.Name("cancel_seq"), expression.Value(ref.Seq))
	next := QualificationRef{LeadID: ref.LeadID, Seq: ref.Seq + 1}
	nextTarget := QualificationTarget(next.LeadID, next.Seq)
	t := &txn{}
	intentAt := d.txUpdate(t, intentKey(in.Kind, in.Target), upd, &cond)
	reversed := exists().And(expression.AttributeExists(expression.Name("reversed_at")))
	qualAt := d.txUpdate(t, qualKey(ref.LeadID, ref.Seq),
		expression.Add(expression.Name("cancels_pending"), numberSet(id)), &reversed)
	nextAt := d.txCheck(t, qualKey(next.LeadID, next.Seq), notExists())
	qualifyAt := d.txCheck(t, intentKey(IntentQualify, nextTarget), notExists().Or(eq("status", string(IntentFailed))))
	if err := d.transact(ctx, t); err != nil {
		reasons, ok := cancellation(err)
		if !ok {
			return Intent{}, fmt.Errorf("%s: %w", what, err)
		}
		if old, failed := failedAt(reasons, intentAt); failed && len(old) > 0 {
			return refusedBegin(what, old)
		}
		if old, failed := failedAt(reasons, qualAt); failed {
			if len(old) == 0 {
				return Intent{}, fmt.Errorf("%s: qualification: %w", what, ErrNotFound)
			}
			return Intent{}, cancelOnStanding(what)
		}
		if _, failed := failedAt(reasons, nextAt); failed {
			return Intent{}, requalified(what, next)
		}
		if old, failed := failedAt(reasons, qualifyAt); failed && len(old) > 0 {
			cur, derr := decodeItem(old, intentItem.intent)
			if derr != nil {
				return Intent{}, fmt.Errorf("%s: %w", what, derr)
			}
			return Intent{}, requalifying(what, cur)
		}
		return Intent{}, fmt.Errorf("%s: %w", what, err)
	}
	return d.readBegun(ctx, what, in)
}

// TakeOverIntent implements Store: one UpdateItem on condition that the intent is still pending
// at the attempt the caller saw, and that attempt began before staleBefore (timestamps are fixed
// width, so they compare as strings). Of racing take-overs the first write moves attempts on and
// every other one fails the condition; the intent as it is comes back with the failure (ALL_OLD).
func (d *Dynamo) TakeOverIntent(ctx context.Context, kind IntentKind, target string, seenAttempts int, staleBefore time.Time) (Intent, error) {
	if err := validTakeOver(kind, target, seenAttempts, staleBefore); err != nil {
		return Intent{}, err
	}
	ts := formatTS(d.cfg.clock())
	upd := set("attempts", seenAttempts+1).
		Set(expression.Name("attempted_at"), expression.Value(ts)).
		Set(expression.Name(attrGSI1SK), expression.Value(intentPendingSK(ts, target)))
	cond := exists().And(eq("status", string(IntentPending))).And(eq("attempts", seenAttempts)).
		And(expression.Name("attempted_at").LessThan(expression.Value(formatTS(staleBefore))))
	av, err := d.update(ctx, intentKey(kind, target), upd, &cond, types.ReturnValueAllNew)
	if old, failed := conditionFailed(err); failed {
		if len(old) == 0 {
			return Intent{}, fmt.Errorf("ledger: take over intent %s %s: %w", kind, target, ErrNotFound)
		}
		cur, derr := decodeItem(old, intentItem.intent)
		if derr != nil {
			return Intent{}, fmt.Errorf("ledger: take over intent %s %s: %w", kind, target, derr)
		}
		return takeOverRefused(cur, seenAttempts, staleBefore)
	}
	if err != nil {
		return Intent{}, fmt.Errorf("ledger: take over intent %s %s: %w", kind, target, err)
	}
	it, err := decodeItem(av, intentItem.intent)
	if err != nil {
		return Intent{}, fmt.Errorf("ledger: take over intent %s %s: %w", kind, target, err)
	}
	return it, nil
}

// FinishIntent implements Store: one conditional UpdateItem (done: unless already done; failed:
// only while pending) that also drops the intent from the pending index. A cancel intent is read
// first (one consistent GetItem): a pending one begun by BeginCancelIfNewest is finished in one
// TransactWriteItems with the DELETE of its due reward from its qualification's cancels_pending,
// so the lead can never stay blocked by a cancel that is over.
func (d *Dynamo) FinishIntent(ctx context.Context, kind IntentKind, target string, outcome IntentStatus, lastErr string) (Intent, error) {
	if err := validFinish(kind, target, outcome); err != nil {
		return Intent{}, err
	}
	upd := set("status", string(outcome)).
		Set(expression.Name("finished_at"), expression.Value(formatTS(d.cfg.clock()))).
		Remove(expression.Name(attrGSI1PK)).
		Remove(expression.Name(attrGSI1SK))
	if lastErr != "" {
		upd = upd.Set(expression.Name("last_error"), expression.Value(lastErr))
	}
	cond := exists().And(expression.Name("status").NotEqual(expression.Value(string(IntentDone))))
	if outcome == IntentFailed {
		cond = exists().And(eq("status", string(IntentPending)))
	}
	if kind == IntentCancel {
		cur, err := d.IntentOf(ctx, kind, target)
		if err != nil {
			return Intent{}, fmt.Errorf("ledger: finish intent %s %s: %w", kind, target, err)
		}
		if cur.Status == IntentPending && !cur.CancelOf.IsZero() {
			return d.finishCancel(ctx, cur, upd, cond, outcome)
		}
		// Not begun on a qualification (or finished already): the plain write, on condition
		// that it still is not, since a cancel is only ever begun once at a time (the sweep's
		// lease), but a finish must never leave a qualification blocked.
		cond = cond.And(expression.AttributeNotExists(expression.Name("cancel_lead_id")).
			Or(expression.Name("status").NotEqual(expression.Value(string(IntentPending)))))
	}
	av, err := d.update(ctx, intentKey(kind, target), upd, &cond, types.ReturnValueAllNew)
	if old, failed := conditionFailed(err); failed {
		if len(old) == 0 {
			return Intent{}, fmt.Errorf("ledger: finish intent %s %s: %w", kind, target, ErrNotFound)
		}
		cur, derr := decodeItem(old, intentItem.intent)
		if derr != nil {
			return Intent{}, fmt.Errorf("ledger: finish intent %s %s: %w", kind, target, derr)
		}
		return finishConflict(cur, outcome)
	}
	if err != nil {
		return Intent{}, fmt.Errorf("ledger: finish intent %s %s: %w", kind, target, err)
	}
	it, err := decodeItem(av, intentItem.intent)
	if err != nil {
		return Intent{}, fmt.Errorf("ledger: finish intent %s %s: %w", kind, target, err)
	}
	return it, nil
}

// finishCancel finishes the pending cancel cur, begun on qualification cur.CancelOf, and takes
// its due reward out of that qualification's cancels_pending, in one transaction, then reads the
// intent back. The intent's condition also requires it to still stand on cur.CancelOf.
func (d *Dynamo) finishCancel(ctx context.Context, cur Intent, upd expression.UpdateBuilder, cond expression.ConditionBuilder, outcome IntentStatus) (Intent, error) {
	what := fmt.Sprintf("ledger: finish intent %s %s", cur.Kind, cur.Target)
	id, err := strconv.ParseInt(cur.Target, 10, 64)
	if err != nil {
		return Intent{}, fmt.Errorf("%s: %w", what, ErrInvalid)
	}
	ref := cur.CancelOf
	cond = cond.And(eq("cancel_lead_id", ref.LeadID)).And(eq("cancel_seq", ref.Seq))
	t := &txn{}
	intentAt := d.txUpdate(t, intentKey(cur.Kind, cur.Target), upd, &cond)
	present := exists()
	d.txUpdate(t, qualKey(ref.LeadID, ref.Seq), expression.Delete(expression.Name("cancels_pending"), numberSet(id)), &present)
	if err := d.transact(ctx, t); err != nil {
		reasons, ok := cancellation(err)
		if old, failed := failedAt(reasons, intentAt); ok && failed && len(old) > 0 {
			now, derr := decodeItem(old, intentItem.intent)
			if derr != nil {
				return Intent{}, fmt.Errorf("%s: %w", what, derr)
			}
			if now.Status != IntentPending {
				return finishConflict(now, outcome)
			}
		}
		return Intent{}, fmt.Errorf("%s: %w", what, err)
	}
	return d.readBack(ctx, what+": finished", cur.Kind, cur.Target)
}

// IntentOf implements Store: one consistent GetItem.
func (d *Dynamo) IntentOf(ctx context.Context, kind IntentKind, target string) (Intent, error) {
	av, found, err := d.get(ctx, intentKey(kind, target))
	if err != nil {
		return Intent{}, fmt.Errorf("ledger: read intent %s %s: %w", kind, target, err)
	}
	if !found {
		return Intent{}, fmt.Errorf("ledger: intent %s %s: %w", kind, target, ErrNotFound)
	}
	it, err := decodeItem(av, intentItem.intent)
	if err != nil {
		return Intent{}, fmt.Errorf("ledger: intent %s %s: %w", kind, target, err)
	}
	return it, nil
}

// PendingIntents implements Store: one Query of gsi1 (eventually consistent, as every GSI read).
func (d *Dynamo) PendingIntents(ctx context.Context, kind IntentKind) ([]Intent, error) {
	if !kind.valid() {
		return nil, fmt.Errorf("ledger: pending intents %q: %w", kind, ErrInvalid)
	}
	expr, err := expression.NewBuilder().
		WithKeyCondition(expression.Key(attrGSI1PK).Equal(expression.Value(intentPendingPK(kind)))).Build()
	if err != nil {
		return nil, fmt.Errorf("ledger: pending intents: build: %w", err)
	}
	items, err := d.query(ctx, &dynamodb.QueryInput{
		IndexName: aws.String(indexGSI1), KeyConditionExpression: expr.KeyCondition(),
		ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
	}, 0)
	if err != nil {
		return nil, fmt.Errorf("ledger: pending %s intents: %w", kind, err)
	}
	var out []Intent
	for _, av := range items {
		it, err := decodeItem(av, intentItem.intent)
		if err != nil {
			return nil, fmt.Errorf("ledger: pending %s intents: %w", kind, err)
		}
		if it.Status == IntentPending { // the index may lag a FinishIntent
			out = append(out, it)
		}
	}
	return out, nil
}

// refusedBegin answers a begin whose intent condition failed, from the intent as it is (ALL_OLD),
// as BeginIntent does.
func refusedBegin(what string, old map[string]types.AttributeValue) (Intent, error) {
	cur, err := decodeItem(old, intentItem.intent)
	if err != nil {
		return Intent{}, fmt.Errorf("%s: %w", what, err)
	}
	return beginRefused(cur)
}

// refusedQual decodes the qualification whose condition failed a begin (ALL_OLD): ErrNotFound
// when there is none.
func refusedQual(what string, old map[string]types.AttributeValue) (Qualification, error) {
	if len(old) == 0 {
		return Qualification{}, fmt.Errorf("%s: qualification: %w", what, ErrNotFound)
	}
	q, err := decodeQual(old)
	if err != nil {
		return Qualification{}, fmt.Errorf("%s: %w", what, err)
	}
	return q, nil
}
