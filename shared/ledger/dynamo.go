package ledger

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DynamoDBAPI is the part of *dynamodb.Client the ledger uses.
type DynamoDBAPI interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// Dynamo is the Store on the DynamoDB state table, what the Lambda functions use.
type Dynamo struct {
	db    DynamoDBAPI
	table string
	cfg   config
}

// NewDynamo returns the ledger on table.
func NewDynamo(db DynamoDBAPI, table string, opts ...Option) *Dynamo {
	return &Dynamo{db: db, table: table, cfg: newConfig(opts)}
}

var _ Store = (*Dynamo)(nil)

const (
	// maxRaces bounds read-modify-write loops (PutLead, Qualify, Reverse, MatchDueReward,
	// RematchDueReward) that start over when a concurrent writer changed what they read.
	maxRaces = 8
	// maxConflictRetries bounds retries of a request DynamoDB refused because a transaction was
	// in flight on one of its items (TransactionConflict). The SDK does not retry those.
	maxConflictRetries = 12
)

// conflictRetry runs op again while DynamoDB reports a transaction conflict, with jittered
// exponential backoff. Conditions are re-evaluated on every attempt, so retrying is safe.
func conflictRetry[T any](ctx context.Context, op func() (T, error)) (T, error) {
	for attempt := 0; ; attempt++ {
		v, err := op()
		if err == nil || attempt >= maxConflictRetries || !isTxConflict(err) {
			return v, err
		}
		backoff := min(5*time.Millisecond<<attempt, 250*time.Millisecond)
		t := time.NewTimer(rand.N(backoff) + time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

// isTxConflict: the request lost a race with a transaction, and no condition failed.
func isTxConflict(err error) bool {
	var tce *types.TransactionConflictException
	if errors.As(err, &tce) {
		return true
	}
	reasons, ok := cancellation(err)
	if !ok {
		return false
	}
	conflict := false
	for _, r := range reasons {
		switch aws.ToString(r.Code) {
		case "", "None":
		case "TransactionConflict":
			conflict = true
		default:
			return false
		}
	}
	return conflict
}

// cancellation returns the per-item reasons of a canceled transaction.
func cancellation(err error) ([]types.CancellationReason, bool) {
	var tce *types.TransactionCanceledException
	if !errors.As(err, &tce) {
		return nil, false
	}
	return tce.CancellationReasons, true
}

// failedAt reports whether item i of a canceled transaction failed its condition, and returns
// the item as it was (every condition asks for ALL_OLD).
func failedAt(reasons []types.CancellationReason, i int) (map[string]types.AttributeValue, bool) {
	if i < 0 || i >= len(reasons) || aws.ToString(reasons[i].Code) != "ConditionalCheckFailed" {
		return nil, false
	}
	return reasons[i].Item, true
}

// conditionFailed returns the old item of a single-item write whose condition failed.
func conditionFailed(err error) (map[string]types.AttributeValue, bool) {
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		return nil, false
	}
	return ccf.Item, true
}

// get reads one item with a strongly consistent read; found=false when absent.
func (d *Dynamo) get(ctx context.Context, k key) (map[string]types.AttributeValue, bool, error) {
	out, err := conflictRetry(ctx, func() (*dynamodb.GetItemOutput, error) {
		return d.db.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(d.table), Key: k.av(), ConsistentRead: aws.Bool(true),
		})
	})
	if err != nil {
		return nil, false, err
	}
	return out.Item, len(out.Item) > 0, nil
}

// put writes an item, with an optional condition; a failed condition returns the old item in a
// *types.ConditionalCheckFailedException.
func (d *Dynamo) put(ctx context.Context, item any, cond *expression.ConditionBuilder) error {
	av, err := attributevalue.MarshalMap(item)
	if err != nil {
		return fmt.Errorf("marshal item: %w", err)
	}
	in := &dynamodb.PutItemInput{
		TableName: aws.String(d.table), Item: av,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	if cond != nil {
		expr, err := expression.NewBuilder().WithCondition(*cond).Build()
		if err != nil {
			return fmt.Errorf("build condition: %w", err)
		}
		in.ConditionExpression = expr.Condition()
		in.ExpressionAttributeNames, in.ExpressionAttributeValues = expr.Names(), expr.Values()
	}
	_, err = conflictRetry(ctx, func() (*dynamodb.PutItemOutput, error) { return d.db.PutItem(ctx, in) })
	return err
}

// update applies upd to an item under an optional condition and returns the attributes rv asks
// for. A failed condition returns the old item in a *types.ConditionalCheckFailedException.
func (d *Dynamo) update(ctx context.Context, k key, upd expression.UpdateBuilder, cond *expression.ConditionBuilder, rv types.ReturnValue) (map[string]types.AttributeValue, error) {
	b := expression.NewBuilder().WithUpdate(upd)
	if cond != nil {
		b = b.WithCondition(*cond)
	}
	expr, err := b.Build()
	if err != nil {
		return nil, fmt.Errorf("build update: %w", err)
	}
	out, err := conflictRetry(ctx, func() (*dynamodb.UpdateItemOutput, error) {
		return d.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: aws.String(d.table), Key: k.av(),
			UpdateExpression: expr.Update(), ConditionExpression: expr.Condition(),
			ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
			ReturnValues:                        rv,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
	})
	if err != nil {
		return nil, err
	}
	return out.Attributes, nil
}

// query runs a query to the end, or until max items (max ≤ 0: all), following pages.
func (d *Dynamo) query(ctx context.Context, in *dynamodb.QueryInput, max int) ([]map[string]types.AttributeValue, error) {
	in.TableName = aws.String(d.table)
	var items []map[string]types.AttributeValue
	for {
		out, err := conflictRetry(ctx, func() (*dynamodb.QueryOutput, error) { return d.db.Query(ctx, in) })
		if err != nil {
			return nil, err
		}
		items = append(items, out.Items...)
		if len(out.LastEvaluatedKey) == 0 || (max > 0 && len(items) >= max) {
			break
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
	if max > 0 && len(items) > max {
		items = items[:max]
	}
	return items, nil
}

// queryPartition reads the items of one partition whose sort key starts with prefix, strongly
// consistent, in sort-key order.
func (d *Dynamo) queryPartition(ctx context.Context, pk, skPrefix string, forward bool, max int) ([]map[string]types.AttributeValue, error) {
	kc := expression.Key(attrID).Equal(expression.Value(pk))
	if skPrefix != "" {
		kc = kc.And(expression.Key(attrSK).BeginsWith(skPrefix))
	}
	expr, err := expression.NewBuilder().WithKeyCondition(kc).Build()
	if err != nil {
		return nil, fmt.Errorf("build key condition: %w", err)
	}
	in := &dynamodb.QueryInput{
		KeyConditionExpression: expr.KeyCondition(), ExpressionAttributeNames: expr.Names(),
		ExpressionAttributeValues: expr.Values(), ConsistentRead: aws.Bool(true),
		ScanIndexForward: aws.Bool(forward),
	}
	if max > 0 {
		in.Limit = aws.Int32(int32(max))
	}
	return d.query(ctx, in, max)
}

// txn accumulates the items of one TransactWriteItems; the first encoding error sticks.
type txn struct {
	items []types.TransactWriteItem
	err   error
}

// put adds a Put and returns its index in the transaction (for reading cancellation reasons).
func (d *Dynamo) txPut(t *txn, item any, cond *expression.ConditionBuilder) int {
	av, err := attributevalue.MarshalMap(item)
	if err != nil {
		t.err = errors.Join(t.err, fmt.Errorf("marshal item: %w", err))
		return -1
	}
	p := &types.Put{
		TableName: aws.String(d.table), Item: av,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	if cond != nil {
		expr, err := expression.NewBuilder().WithCondition(*cond).Build()
		if err != nil {
			t.err = errors.Join(t.err, fmt.Errorf("build condition: %w", err))
			return -1
		}
		p.ConditionExpression = expr.Condition()
		p.ExpressionAttributeNames, p.ExpressionAttributeValues = expr.Names(), expr.Values()
	}
	t.items = append(t.items, types.TransactWriteItem{Put: p})
	return len(t.items) - 1
}

func (d *Dynamo) txUpdate(t *txn, k key, upd expression.UpdateBuilder, cond *expression.ConditionBuilder) int {
	b := expression.NewBuilder().WithUpdate(upd)
	if cond != nil {
		b = b.WithCondition(*cond)
	}
	expr, err := b.Build()
	if err != nil {
		t.err = errors.Join(t.err, fmt.Errorf("build update: %w", err))
		return -1
	}
	t.items = append(t.items, types.TransactWriteItem{Update: &types.Update{
		TableName: aws.String(d.table), Key: k.av(),
		UpdateExpression: expr.Update(), ConditionExpression: expr.Condition(),
		ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}})
	return len(t.items) - 1
}

// txCheck adds a ConditionCheck: the item must meet cond for the transaction to be written.
func (d *Dynamo) txCheck(t *txn, k key, cond expression.ConditionBuilder) int {
	expr, err := expression.NewBuilder().WithCondition(cond).Build()
	if err != nil {
		t.err = errors.Join(t.err, fmt.Errorf("build condition: %w", err))
		return -1
	}
	t.items = append(t.items, types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{
		TableName: aws.String(d.table), Key: k.av(),
		ConditionExpression: expr.Condition(), ExpressionAttributeNames: expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}})
	return len(t.items) - 1
}

func (d *Dynamo) txDelete(t *txn, k key, cond expression.ConditionBuilder) int {
	expr, err := expression.NewBuilder().WithCondition(cond).Build()
	if err != nil {
		t.err = errors.Join(t.err, fmt.Errorf("build condition: %w", err))
		return -1
	}
	t.items = append(t.items, types.TransactWriteItem{Delete: &types.Delete{
		TableName: aws.String(d.table), Key: k.av(),
		ConditionExpression: expr.Condition(), ExpressionAttributeNames: expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}})
	return len(t.items) - 1
}

// transact writes the transaction; a cancellation comes back as the SDK's
// *types.TransactionCanceledException, for cancellation and failedAt.
//
// Every request carries a ClientRequestToken, made here once per request, before the SDK sees
// it. The SDK retries a request whose response was lost (a timeout, a reset connection) by
// sending the same input again, so the retry carries the same token, and DynamoDB answers a
// token it has already committed (for 10 minutes) with success instead of applying the
// transaction again. Without it the retry of a committed transaction would be refused by its
// own conditions: a spend entry reported as counted by someone else, a new qualification as
// ErrAlreadyQualified, a lead's version as a concurrent upsert.
//
// The token is per request, not per method call: a resend after a TransactionConflict (below)
// follows a definite cancellation, so nothing was written and it is a new request; and the
// read-modify-write loops build a different transaction on each pass, which under a reused
// token DynamoDB would refuse (IdempotentParameterMismatch). (The SDK's client also fills a
// missing token; setting it here does not depend on how the DynamoDBAPI was built.)
func (d *Dynamo) transact(ctx context.Context, t *txn) error {
	if t.err != nil {
		return t.err
	}
	_, err := conflictRetry(ctx, func() (*dynamodb.TransactWriteItemsOutput, error) {
		return d.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{
			TransactItems: t.items, ClientRequestToken: aws.String(requestToken()),
		})
	})
	return err
}

// requestToken is a fresh ClientRequestToken: 26 random base32 characters (the limit is 36).
func requestToken() string { return crand.Text() }

// Frequently used expression pieces.
func notExists() expression.ConditionBuilder {
	return expression.AttributeNotExists(expression.Name(attrID))
}
func exists() expression.ConditionBuilder { return expression.AttributeExists(expression.Name(attrID)) }
func eq(name string, v any) expression.ConditionBuilder {
	return expression.Name(name).Equal(expression.Value(v))
}
func set(name string, v any) expression.UpdateBuilder {
	return expression.Set(expression.Name(name), expression.Value(v))
}
