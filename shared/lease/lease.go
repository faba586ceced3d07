// Package lease is a named, expiring, single-holder lock kept in the state table: the reward
// sweep takes one per run, so two overlapping runs (the schedule and an async retry) never both
// act. A holder that dies simply lets it expire; expiry is compared against the clock, never
// left to DynamoDB's lazy TTL.
package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ErrHeld means another holder has the lease until it expires.
var ErrHeld = errors.New("lease: held by another run")

// Store takes and releases leases.
type Store interface {
	// Acquire takes name for owner until expires, if nobody holds it at now.
	Acquire(ctx context.Context, name, owner string, now, expires time.Time) error
	// Release gives it back, if owner still holds it.
	Release(ctx context.Context, name, owner string) error
}

// Memory is an in-process Store.
type Memory struct {
	mu     sync.Mutex
	leases map[string]struct {
		owner   string
		expires time.Time
	}
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{leases: map[string]struct {
		owner   string
		expires time.Time
	}{}}
}

// Acquire implements Store.
func (m *Memory) Acquire(ctx context.Context, name, owner string, now, expires time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[name]; ok && l.owner != owner && l.expires.UnixMilli() >= now.UnixMilli() {
		return fmt.Errorf("%w until %s", ErrHeld, l.expires.UTC().Format(time.RFC3339))
	}
	m.leases[name] = struct {
		owner   string
		expires time.Time
	}{owner, expires}
	return nil
}

// Release implements Store.
func (m *Memory) Release(ctx context.Context, name, owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[name]; ok && l.owner == owner {
		delete(m.leases, name)
	}
	return nil
}

// DynamoDBAPI is the part of the DynamoDB client the store uses.
type DynamoDBAPI interface {
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// Dynamo keeps leases as items id = "lease#<name>", sk = "lease".
type Dynamo struct {
	db    DynamoDBAPI
	table string
}

// NewDynamo returns a store on table.
func NewDynamo(db DynamoDBAPI, table string) *Dynamo { return &Dynamo{db: db, table: table} }

func key(name string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"id": &types.AttributeValueMemberS{Value: "lease#" + name},
		"sk": &types.AttributeValueMemberS{Value: "lease"},
	}
}

// Acquire implements Store with one conditional PutItem: absent, expired, or already ours.
func (d *Dynamo) Acquire(ctx context.Context, name, owner string, now, expires time.Time) error {
	item := key(name)
	item["owner"] = &types.AttributeValueMemberS{Value: owner}
	item["lease_expires_ms"] = &types.AttributeValueMemberN{Value: fmt.Sprint(expires.UnixMilli())}
	item["expiration"] = &types.AttributeValueMemberN{Value: fmt.Sprint(expires.Add(24 * time.Hour).Unix())}
	cond := expression.AttributeNotExists(expression.Name("id")).
		Or(expression.Name("lease_expires_ms").LessThan(expression.Value(now.UnixMilli()))).
		Or(expression.Name("owner").Equal(expression.Value(owner)))
	expr, err := expression.NewBuilder().WithCondition(cond).Build()
	if err != nil {
		return fmt.Errorf("lease %s: %w", name, err)
	}
	_, err = d.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(d.table), Item: item,
		ConditionExpression: expr.Condition(), ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values()})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return fmt.Errorf("lease %s: %w", name, ErrHeld)
	}
	if err != nil {
		return fmt.Errorf("lease %s: %w", name, err)
	}
	return nil
}

// Release implements Store: deletes the lease only if owner still holds it.
func (d *Dynamo) Release(ctx context.Context, name, owner string) error {
	expr, err := expression.NewBuilder().WithCondition(expression.Name("owner").Equal(expression.Value(owner))).Build()
	if err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	_, err = d.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(d.table), Key: key(name),
		ConditionExpression: expr.Condition(), ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values()})
	var ccf *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &ccf) {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}
