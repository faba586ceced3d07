package idempotency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DynamoDBAPI is the part of the DynamoDB client the store uses.
type DynamoDBAPI interface {
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// Item layout in the state table: the Powertools attributes, keyed id = "idem#<key>", sk = "idem".
const (
	keyPrefix      = "idem#"
	sortKey        = "idem"
	attrID         = "id"
	attrSK         = "sk"
	attrStatus     = "status"
	attrExpiration = "expiration"
	attrInProgress = "in_progress_expiration"
	attrData       = "data"
	attrOwner      = "owner"
)

// Dynamo is the DynamoDB Store.
type Dynamo struct {
	db    DynamoDBAPI
	table string
}

// NewDynamo returns a store on table.
func NewDynamo(db DynamoDBAPI, table string) *Dynamo { return &Dynamo{db: db, table: table} }

var _ Store = (*Dynamo)(nil)

func itemKey(key string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrID: &types.AttributeValueMemberS{Value: keyPrefix + key},
		attrSK: &types.AttributeValueMemberS{Value: sortKey},
	}
}

// item is a record as stored.
type item struct {
	ID         string `dynamodbav:"id"`
	SK         string `dynamodbav:"sk"`
	Status     string `dynamodbav:"status"`
	Expiration int64  `dynamodbav:"expiration"`
	InProgress int64  `dynamodbav:"in_progress_expiration,omitempty"`
	Data       string `dynamodbav:"data,omitempty"`
	Validation string `dynamodbav:"validation,omitempty"`
	Owner      string `dynamodbav:"owner"`
}

// PutInProgress implements Store with ONE conditional PutItem; a conflict returns the existing
// item from the failed condition check (ALL_OLD), so it costs no second read.
func (d *Dynamo) PutInProgress(ctx context.Context, rec Record, now time.Time) (*Record, error) {
	av, err := attributevalue.MarshalMap(item{
		ID: keyPrefix + rec.Key, SK: sortKey, Status: string(rec.Status),
		Expiration: rec.Expiration.Unix(), InProgress: rec.InProgressExpiration.UnixMilli(),
		Validation: rec.Validation, Owner: rec.Owner,
	})
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	cond := expression.AttributeNotExists(expression.Name(attrID)).
		Or(expression.Name(attrExpiration).LessThan(expression.Value(now.Unix()))).
		Or(expression.Name(attrStatus).Equal(expression.Value(string(StatusInProgress))).
			And(expression.Name(attrInProgress).LessThan(expression.Value(now.UnixMilli()))))
	expr, err := expression.NewBuilder().WithCondition(cond).Build()
	if err != nil {
		return nil, fmt.Errorf("build condition: %w", err)
	}
	_, err = d.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                           aws.String(d.table),
		Item:                                av,
		ConditionExpression:                 expr.Condition(),
		ExpressionAttributeNames:            expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		old, derr := decode(rec.Key, ccf.Item)
		if derr != nil {
			return nil, derr
		}
		return old, fmt.Errorf("%w: %s", errConflict, rec.Key)
	}
	if err != nil {
		return nil, fmt.Errorf("put record: %w", err)
	}
	return nil, nil
}

// Complete implements Store: the result is saved only while this owner still holds the lock.
func (d *Dynamo) Complete(ctx context.Context, rec Record) error {
	upd := expression.Set(expression.Name(attrStatus), expression.Value(string(StatusCompleted))).
		Set(expression.Name(attrData), expression.Value(string(rec.Data))).
		Set(expression.Name(attrExpiration), expression.Value(rec.Expiration.Unix())).
		Remove(expression.Name(attrInProgress))
	cond := expression.Name(attrOwner).Equal(expression.Value(rec.Owner)).
		And(expression.Name(attrStatus).Equal(expression.Value(string(StatusInProgress))))
	expr, err := expression.NewBuilder().WithUpdate(upd).WithCondition(cond).Build()
	if err != nil {
		return fmt.Errorf("build update: %w", err)
	}
	_, err = d.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(d.table),
		Key:                       itemKey(rec.Key),
		UpdateExpression:          expr.Update(),
		ConditionExpression:       expr.Condition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return fmt.Errorf("%w: %s", ErrLockLost, rec.Key)
	}
	if err != nil {
		return fmt.Errorf("complete record: %w", err)
	}
	return nil
}

// Release implements Store: it deletes the record only if this owner still holds it.
func (d *Dynamo) Release(ctx context.Context, key, owner string) error {
	expr, err := expression.NewBuilder().WithCondition(expression.Name(attrOwner).Equal(expression.Value(owner))).Build()
	if err != nil {
		return fmt.Errorf("build condition: %w", err)
	}
	_, err = d.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 aws.String(d.table),
		Key:                       itemKey(key),
		ConditionExpression:       expr.Condition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	})
	var ccf *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &ccf) { // someone else's lock now, or gone: nothing to release
		return fmt.Errorf("release record: %w", err)
	}
	return nil
}

func decode(key string, av map[string]types.AttributeValue) (*Record, error) {
	var it item
	if err := attributevalue.UnmarshalMap(av, &it); err != nil {
		return nil, fmt.Errorf("decode record %s: %w", key, err)
	}
	r := &Record{Key: key, Status: Status(it.Status), Validation: it.Validation, Owner: it.Owner,
		Expiration: time.Unix(it.Expiration, 0)}
	if it.Data != "" {
		r.Data = []byte(it.Data)
	}
	if it.InProgress > 0 {
		r.InProgressExpiration = time.UnixMilli(it.InProgress)
	}
	return r, nil
}
