package ledger

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DynamoDB Local serialises transactions and never answers TransactionConflict; real DynamoDB
// does under contention. These tests drive that path with a fake client.

// fakeDB is a DynamoDBAPI of function fields; unset methods fail the call.
type fakeDB struct {
	transact func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error)
	update   func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error)
	get      func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error)
}

var _ DynamoDBAPI = (*fakeDB)(nil)

var errUnexpected = errors.New("fakeDB: unexpected call")

func (f *fakeDB) GetItem(_ context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if f.get == nil {
		return nil, errUnexpected
	}
	return f.get(in)
}
func (f *fakeDB) PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return nil, errUnexpected
}
func (f *fakeDB) UpdateItem(_ context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if f.update == nil {
		return nil, errUnexpected
	}
	return f.update(in)
}
func (f *fakeDB) Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	return nil, errUnexpected
}
func (f *fakeDB) TransactWriteItems(_ context.Context, in *dynamodb.TransactWriteItemsInput, _ ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	if f.transact == nil {
		return nil, errUnexpected
	}
	return f.transact(in)
}

func canceled(codes ...string) error {
	var reasons []types.CancellationReason
	for _, c := range codes {
		reasons = append(reasons, types.CancellationReason{Code: aws.String(c)})
	}
	return &types.TransactionCanceledException{Message: aws.String("canceled"), CancellationReasons: reasons}
}

func TestTransactRetriesConflicts(t *testing.T) {
	var calls atomic.Int32
	db := &fakeDB{
		transact: func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			if calls.Add(1) <= 3 {
				return nil, canceled("None", "TransactionConflict", "None")
			}
			return &dynamodb.TransactWriteItemsOutput{}, nil
		},
		get: func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
			return &dynamodb.GetItemOutput{Item: map[string]types.AttributeValue{
				"net_usd": &types.AttributeValueMemberN{Value: "10"}}}, nil
		},
	}
	d := NewDynamo(db, "t")
	s, applied, err := d.ApplySpend(context.Background(), SpendEntry{LeadID: 1, Key: "k", Kind: SpendPayment, Currency: "usd", AmountMinor: 10})
	if err != nil || !applied || s.Net["usd"] != 10 {
		t.Fatalf("ApplySpend = %+v, %v, %v", s, applied, err)
	}
	if calls.Load() != 4 {
		t.Errorf("%d TransactWriteItems calls, want 4 (3 conflicts, then success)", calls.Load())
	}
}

func TestTransactDoesNotRetryConditionFailures(t *testing.T) {
	var calls atomic.Int32
	db := &fakeDB{transact: func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
		calls.Add(1)
		// A failed condition decides the outcome even if another item also conflicted.
		return nil, canceled("ConditionalCheckFailed", "TransactionConflict")
	}}
	d := NewDynamo(db, "t")
	err := d.transact(context.Background(), &txn{items: make([]types.TransactWriteItem, 2)})
	reasons, ok := cancellation(err)
	if _, failed := failedAt(reasons, 0); !ok || !failed {
		t.Fatalf("error %v does not carry the failed condition", err)
	}
	if calls.Load() != 1 {
		t.Errorf("%d calls, want 1", calls.Load())
	}
}

func TestUpdateRetriesTransactionConflictException(t *testing.T) {
	var calls atomic.Int32
	db := &fakeDB{update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		if calls.Add(1) == 1 {
			return nil, &types.TransactionConflictException{Message: aws.String("transaction in progress")}
		}
		return &dynamodb.UpdateItemOutput{Attributes: map[string]types.AttributeValue{
			"due_reward_id": &types.AttributeValueMemberN{Value: "7"},
			"state":         &types.AttributeValueMemberS{Value: "issued"},
			"first_seen_at": &types.AttributeValueMemberS{Value: "2026-03-01T12:00:00.000000000Z"},
		}}, nil
	}}
	d := NewDynamo(db, "t")
	r, err := d.MarkRewardSettled(context.Background(), Settlement{ID: 7, State: RewardIssued, By: SettledBySweep})
	if err != nil || r.State != RewardIssued {
		t.Fatalf("MarkRewardSettled = %+v, %v", r, err)
	}
	if calls.Load() != 2 {
		t.Errorf("%d UpdateItem calls, want 2", calls.Load())
	}
}

// An issued reward of a known recipient is settled and counted in one TransactWriteItems (with
// a request token), then read back; a canceled one is the single UpdateItem of old.
func TestSettleIssuedIsOneTransaction(t *testing.T) {
	var txs []*dynamodb.TransactWriteItemsInput
	var updates atomic.Int32
	db := &fakeDB{
		transact: func(in *dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			txs = append(txs, in)
			return &dynamodb.TransactWriteItemsOutput{}, nil
		},
		get: func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
			return &dynamodb.GetItemOutput{Item: map[string]types.AttributeValue{
				"due_reward_id": &types.AttributeValueMemberN{Value: "7"},
				"recipient_id":  &types.AttributeValueMemberN{Value: "100"},
				"state":         &types.AttributeValueMemberS{Value: "issued"},
				"first_seen_at": &types.AttributeValueMemberS{Value: "2026-11-30T23:59:59.900000000Z"},
			}}, nil
		},
		update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			updates.Add(1)
			return &dynamodb.UpdateItemOutput{Attributes: map[string]types.AttributeValue{
				"due_reward_id": &types.AttributeValueMemberN{Value: "8"},
				"state":         &types.AttributeValueMemberS{Value: "canceled"},
			}}, nil
		},
	}
	d := NewDynamo(db, "t")
	ctx := context.Background()
	at := time.Date(2026, 11, 30, 23, 59, 59, 900000000, time.UTC)
	r, err := d.MarkRewardSettled(ctx, Settlement{ID: 7, RecipientID: 100, State: RewardIssued, At: at, By: SettledBySweep})
	if err != nil || r.State != RewardIssued || r.RecipientID != 100 {
		t.Fatalf("MarkRewardSettled = %+v, %v", r, err)
	}
	if len(txs) != 1 || updates.Load() != 0 {
		t.Fatalf("%d TransactWriteItems and %d UpdateItem, want 1 and 0", len(txs), updates.Load())
	}
	if aws.ToString(txs[0].ClientRequestToken) == "" {
		t.Error("no ClientRequestToken")
	}
	items := txs[0].TransactItems
	if len(items) != 2 || items[0].Update == nil || items[1].Update == nil {
		t.Fatalf("transaction items %+v, want two updates", items)
	}
	key := func(u *types.Update) string {
		id, _ := u.Key[attrID].(*types.AttributeValueMemberS)
		sk, _ := u.Key[attrSK].(*types.AttributeValueMemberS)
		return id.Value + "/" + sk.Value
	}
	if got := key(items[0].Update); got != "due#7/due" || aws.ToString(items[0].Update.ConditionExpression) == "" {
		t.Errorf("first item: %s, condition %q", got, aws.ToString(items[0].Update.ConditionExpression))
	}
	if got := key(items[1].Update); got != "recipient#100/issued#2026-11" || !strings.Contains(aws.ToString(items[1].Update.UpdateExpression), "ADD") {
		t.Errorf("second item: %s, update %q", got, aws.ToString(items[1].Update.UpdateExpression))
	}

	if _, err := d.MarkRewardSettled(ctx, Settlement{ID: 8, RecipientID: 100, State: RewardCanceled, By: SettledBySweep}); err != nil {
		t.Fatal(err)
	}
	if len(txs) != 1 || updates.Load() != 1 {
		t.Errorf("canceled: %d TransactWriteItems and %d UpdateItem, want none more and 1", len(txs)-1, updates.Load())
	}
}

func TestConflictRetryGivesUpAndHonoursContext(t *testing.T) {
	var calls atomic.Int32
	always := func() (int, error) {
		calls.Add(1)
		return 0, canceled("TransactionConflict")
	}
	if _, err := conflictRetry(context.Background(), always); !isTxConflict(err) {
		t.Fatalf("after giving up: %v", err)
	}
	if got := calls.Load(); got != maxConflictRetries+1 {
		t.Errorf("%d attempts, want %d", got, maxConflictRetries+1)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	calls.Store(0)
	_, err := conflictRetry(ctx, always)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want the context's", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("kept retrying %v after the deadline", time.Since(start))
	}
}

// Every TransactWriteItems carries its own ClientRequestToken: present, within DynamoDB's 36
// characters, and fresh for each request, including a resend after a TransactionConflict and
// each pass of a read-modify-write loop (a reused token with other items would be refused).
func TestTransactSendsFreshRequestTokens(t *testing.T) {
	var tokens []string
	db := &fakeDB{
		transact: func(in *dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			tokens = append(tokens, aws.ToString(in.ClientRequestToken))
			if len(tokens) == 1 {
				return nil, canceled("None", "TransactionConflict", "None")
			}
			return &dynamodb.TransactWriteItemsOutput{}, nil
		},
		get: func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
			return &dynamodb.GetItemOutput{}, nil
		},
	}
	d := NewDynamo(db, "t")
	ctx := context.Background()
	for _, key := range []string{"k1", "k2"} {
		if _, _, err := d.ApplySpend(ctx, SpendEntry{LeadID: 1, Key: key, Kind: SpendPayment, Currency: "usd", AmountMinor: 10}); err != nil {
			t.Fatal(err)
		}
	}
	if len(tokens) != 3 {
		t.Fatalf("%d TransactWriteItems calls, want 3 (a conflict, its resend, the second entry)", len(tokens))
	}
	seen := map[string]bool{}
	for i, tok := range tokens {
		if tok == "" || len(tok) > 36 {
			t.Errorf("request %d: ClientRequestToken %q", i, tok)
		}
		if seen[tok] {
			t.Errorf("request %d reuses token %q", i, tok)
		}
		seen[tok] = true
	}
}
