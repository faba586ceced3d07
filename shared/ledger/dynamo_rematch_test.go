package ledger

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DynamoDB Local serialises transactions, so which item of a rematch's transaction fails its
// condition in a race is up to timing. These tests give RematchDueReward each cancellation in
// turn, with a fake client, and check its answer and the transaction it sends.

type rematchFake struct {
	mu     sync.Mutex
	items  map[string]map[string]types.AttributeValue // "id/sk" → item
	gets   int
	txs    []*dynamodb.TransactWriteItemsInput
	answer func(pass int) error // the pass-th TransactWriteItems (from 1); nil: success
}

func avKey(k map[string]types.AttributeValue) string {
	id, _ := k[attrID].(*types.AttributeValueMemberS)
	sk, _ := k[attrSK].(*types.AttributeValueMemberS)
	return id.Value + "/" + sk.Value
}

func (f *rematchFake) db() *fakeDB {
	return &fakeDB{
		get: func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.gets++
			return &dynamodb.GetItemOutput{Item: f.items[avKey(in.Key)]}, nil
		},
		transact: func(in *dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			f.mu.Lock()
			f.txs = append(f.txs, in)
			pass := len(f.txs)
			f.mu.Unlock()
			if f.answer != nil {
				if err := f.answer(pass); err != nil {
					return nil, err
				}
			}
			return &dynamodb.TransactWriteItemsOutput{}, nil
		},
	}
}

func mustAV(t *testing.T, v any) map[string]types.AttributeValue {
	t.Helper()
	av, err := attributevalue.MarshalMap(v)
	if err != nil {
		t.Fatal(err)
	}
	return av
}

// canceledAt cancels a 7-item rematch transaction with item i's condition failed (old item).
func canceledAt(i int, old map[string]types.AttributeValue) error {
	reasons := make([]types.CancellationReason, 7)
	for j := range reasons {
		reasons[j].Code = aws.String("None")
	}
	reasons[i] = types.CancellationReason{Code: aws.String("ConditionalCheckFailed"), Item: old}
	return &types.TransactionCanceledException{Message: aws.String("canceled"), CancellationReasons: reasons}
}

func TestRematchTransaction(t *testing.T) {
	when := time.Date(2026, 2, 3, 1, 0, 0, 0, time.UTC)
	from := Qualification{LeadID: 41, Seq: 1, ReferrerID: 100, At: when, Origin: OriginRefbridge,
		ReversedAt: when.Add(time.Hour), MatchedDueRewardID: 700}
	to := Qualification{LeadID: 41, Seq: 2, ReferrerID: 100, At: when.Add(2 * time.Hour), Origin: OriginRefbridge}
	due := func(m QualificationRef) map[string]types.AttributeValue {
		return mustAV(t, dueItem{ID: "due#700", SK: "due", Type: typeDueReward, DueRewardID: 700,
			FirstSeenAt: formatTS(when), State: string(RewardSeen), MatchedLeadID: m.LeadID, MatchedSeq: m.Seq})
	}
	qualAV := func(q Qualification) map[string]types.AttributeValue {
		k := qualKey(q.LeadID, q.Seq)
		return mustAV(t, newQualItem(k, typeQualification, q))
	}
	toMatched := to
	toMatched.MatchedDueRewardID = 700
	toTaken := to
	toTaken.MatchedDueRewardID = 999
	fresh := func() *rematchFake {
		f := &rematchFake{items: map[string]map[string]types.AttributeValue{}}
		for _, q := range []Qualification{from, to} {
			k := qualKey(q.LeadID, q.Seq)
			f.items[k.id+"/"+k.sk] = qualAV(q)
		}
		f.items["due#700/due"] = due(from.Ref())
		return f
	}
	ctx := context.Background()

	t.Run("moves in one transaction", func(t *testing.T) {
		f := fresh()
		if err := NewDynamo(f.db(), "t").RematchDueReward(ctx, 700, from.Ref(), to.Ref()); err != nil {
			t.Fatal(err)
		}
		if f.gets != 2 || len(f.txs) != 1 {
			t.Fatalf("%d GetItem and %d TransactWriteItems, want 2 and 1", f.gets, len(f.txs))
		}
		if aws.ToString(f.txs[0].ClientRequestToken) == "" {
			t.Error("no ClientRequestToken")
		}
		want := []struct {
			key, update string
			cond        bool
		}{
			{"due#700/due", "SET", true},
			{"qual#41/q#0000000001", "REMOVE", true},
			{recipientKey(100, from).id + "/" + recipientKey(100, from).sk, "REMOVE", true},
			{recipientKey(41, from).id + "/" + recipientKey(41, from).sk, "REMOVE", true},
			{"qual#41/q#0000000002", "SET", true},
			{recipientKey(100, to).id + "/" + recipientKey(100, to).sk, "SET", true},
			{recipientKey(41, to).id + "/" + recipientKey(41, to).sk, "SET", true},
		}
		items := f.txs[0].TransactItems
		if len(items) != len(want) {
			t.Fatalf("%d items, want %d", len(items), len(want))
		}
		for i, w := range want {
			u := items[i].Update
			if u == nil {
				t.Fatalf("item %d is not an update", i)
			}
			if got := avKey(u.Key); got != w.key || !strings.HasPrefix(aws.ToString(u.UpdateExpression), w.update) ||
				aws.ToString(u.ConditionExpression) == "" || u.ReturnValuesOnConditionCheckFailure != types.ReturnValuesOnConditionCheckFailureAllOld {
				t.Errorf("item %d: %s %q if %q, want %s %s", i, got, aws.ToString(u.UpdateExpression),
					aws.ToString(u.ConditionExpression), w.key, w.update)
			}
		}
	})

	t.Run("already moved: no write", func(t *testing.T) {
		f := fresh()
		k := qualKey(41, 2)
		f.items[k.id+"/"+k.sk] = qualAV(toMatched)
		if err := NewDynamo(f.db(), "t").RematchDueReward(ctx, 700, from.Ref(), to.Ref()); err != nil {
			t.Fatal(err)
		}
		if f.gets != 1 || len(f.txs) != 0 {
			t.Errorf("%d GetItem and %d TransactWriteItems, want 1 and 0", f.gets, len(f.txs))
		}
	})

	for _, c := range []struct {
		name   string
		cancel error
		want   error // nil: success
		raw    bool  // the cancellation itself comes back
	}{
		{"moved by another caller meanwhile", canceledAt(0, due(to.Ref())), nil, false},
		{"reward matched elsewhere meanwhile", canceledAt(0, due(QualificationRef{LeadID: 9, Seq: 1})), ErrConflict, false},
		{"reward missing", canceledAt(0, nil), ErrNotFound, false},
		{"to taken meanwhile", canceledAt(4, qualAV(toTaken)), ErrConflict, false},
		// Not a race: the store's own items disagree. Reported as it is, not retried.
		{"an index copy missing", canceledAt(2, nil), nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := fresh()
			f.answer = func(int) error { return c.cancel }
			err := NewDynamo(f.db(), "t").RematchDueReward(ctx, 700, from.Ref(), to.Ref())
			switch {
			case c.raw:
				if _, ok := cancellation(err); !ok || errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound) {
					t.Errorf("error %v, want the cancellation", err)
				}
			case c.want == nil && err != nil:
				t.Errorf("error %v, want success", err)
			case c.want != nil && !errors.Is(err, c.want):
				t.Errorf("error %v, want %v", err, c.want)
			}
			if len(f.txs) != 1 {
				t.Errorf("%d TransactWriteItems, want 1 (the failed condition decides)", len(f.txs))
			}
		})
	}

	t.Run("a qualification changed: read again", func(t *testing.T) {
		f := fresh()
		f.answer = func(pass int) error {
			// The first pass loses to a concurrent move; the re-read then finds to matched.
			f.mu.Lock()
			defer f.mu.Unlock()
			k := qualKey(41, 2)
			f.items[k.id+"/"+k.sk] = qualAV(toMatched)
			return canceledAt(1, qualAV(Qualification{LeadID: 41, Seq: 1, At: when, Origin: OriginRefbridge}))
		}
		if err := NewDynamo(f.db(), "t").RematchDueReward(ctx, 700, from.Ref(), to.Ref()); err != nil {
			t.Fatal(err)
		}
		if len(f.txs) != 1 || f.gets != 3 {
			t.Errorf("%d TransactWriteItems and %d GetItem, want 1 and 3", len(f.txs), f.gets)
		}
	})

	t.Run("races without end: bounded", func(t *testing.T) {
		f := fresh()
		f.answer = func(int) error { return canceledAt(1, qualAV(from)) }
		err := NewDynamo(f.db(), "t").RematchDueReward(ctx, 700, from.Ref(), to.Ref())
		if !errors.Is(err, errContention) || len(f.txs) != maxRaces {
			t.Errorf("error %v after %d transactions, want errContention after %d", err, len(f.txs), maxRaces)
		}
	})

	t.Run("from not matched: the reward says why", func(t *testing.T) {
		for _, c := range []struct {
			name string
			due  map[string]types.AttributeValue
			want error
		}{
			{"moved", due(to.Ref()), nil},
			{"elsewhere", due(QualificationRef{LeadID: 9, Seq: 1}), ErrConflict},
			{"unmatched", due(QualificationRef{}), ErrConflict},
			{"missing", nil, ErrNotFound},
		} {
			f := fresh()
			k := qualKey(41, 1)
			unmatched := from
			unmatched.MatchedDueRewardID = 0
			f.items[k.id+"/"+k.sk] = qualAV(unmatched)
			f.items["due#700/due"] = c.due
			err := NewDynamo(f.db(), "t").RematchDueReward(ctx, 700, from.Ref(), to.Ref())
			if (c.want == nil && err != nil) || (c.want != nil && !errors.Is(err, c.want)) {
				t.Errorf("%s: error %v, want %v", c.name, err, c.want)
			}
			if len(f.txs) != 0 || f.gets != 3 {
				t.Errorf("%s: %d TransactWriteItems and %d GetItem, want 0 and 3", c.name, len(f.txs), f.gets)
			}
		}
	})
}
