package ledger

import (
	"context"
	"errors"
	"slices"
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
	get    func(key string)                           // called (locked) before a GetItem is answered
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
			if f.get != nil {
				f.get(avKey(in.Key))
			}
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

// canceledAt cancels a 5-item rematch transaction with item i's condition failed (old item).
func canceledAt(i int, old map[string]types.AttributeValue) error {
	reasons := make([]types.CancellationReason, 5)
	for j := range reasons {
		reasons[j].Code = aws.String("None")
	}
	reasons[i] = types.CancellationReason{Code: aws.String("ConditionalCheckFailed"), Item: old}
	return &types.TransactionCanceledException{Message: aws.String("canceled"), CancellationReasons: reasons}
}

func TestRematchTransaction(t *testing.T) {
	when := time.Date(2026, 2, 3, 1, 0, 0, 0, time.UTC)
	// The referrer's reward 700 (definition 7) moves; the lead's coupon 800 (definition 8) stays
	// on from: the transaction touches only the referrer's slot.
	from := Qualification{LeadID: 41, Seq: 1, ReferrerID: 100, At: when, Origin: OriginRefbridge,
		ReversedAt: when.Add(time.Hour), MatchedDueRewardIDs: []int64{700, 800}}
	to := Qualification{LeadID: 41, Seq: 2, ReferrerID: 100, At: when.Add(2 * time.Hour), Origin: OriginRefbridge}
	slot := RewardSlot{RecipientID: 100, RewardID: 7}
	due := func(m QualificationRef) map[string]types.AttributeValue {
		return mustAV(t, dueItem{ID: "due#700", SK: "due", Type: typeDueReward, DueRewardID: 700, RewardID: 7, RecipientID: 100,
			FirstSeenAt: formatTS(when), State: string(RewardSeen), MatchedLeadID: m.LeadID, MatchedSeq: m.Seq})
	}
	qualAV := func(q Qualification) map[string]types.AttributeValue {
		k := qualKey(q.LeadID, q.Seq)
		return mustAV(t, newQualItem(k, typeQualification, q))
	}
	// copyAV is the referrer's index copy of q with its slot for definition 7 holding id (0: free).
	copyAV := func(q Qualification, id int64) map[string]types.AttributeValue {
		av := mustAV(t, newQualItem(recipientKey(100, q), typeQualIndex, q))
		if id != 0 {
			av[slotAttr(7)] = &types.AttributeValueMemberN{Value: itoa(id)}
		}
		return av
	}
	toMatched := to
	toMatched.MatchedDueRewardIDs = []int64{700}
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
		if err := NewDynamo(f.db(), "t").RematchDueReward(ctx, 700, from.Ref(), to.Ref(), slot); err != nil {
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
			{"qual#41/q#0000000001", "DELETE", true},
			{recipientKey(100, from).id + "/" + recipientKey(100, from).sk, "REMOVE", true},
			{"qual#41/q#0000000002", "ADD", true},
			{recipientKey(100, to).id + "/" + recipientKey(100, to).sk, "SET", true},
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
		if err := NewDynamo(f.db(), "t").RematchDueReward(ctx, 700, from.Ref(), to.Ref(), slot); err != nil {
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
		{"to's slot taken meanwhile", canceledAt(4, copyAV(to, 999)), ErrConflict, false},
		{"from's slot holds another reward", canceledAt(2, copyAV(from, 998)), ErrConflict, false},
		// Not a race: the store's own items disagree. Reported as it is, not retried.
		{"an index copy missing", canceledAt(2, nil), nil, true},
		{"a qualification item missing", canceledAt(3, nil), nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := fresh()
			f.answer = func(int) error { return c.cancel }
			err := NewDynamo(f.db(), "t").RematchDueReward(ctx, 700, from.Ref(), to.Ref(), slot)
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

	t.Run("a slot of another recipient: refused before any write", func(t *testing.T) {
		f := fresh()
		err := NewDynamo(f.db(), "t").RematchDueReward(ctx, 700, from.Ref(), to.Ref(), RewardSlot{RecipientID: 55, RewardID: 7})
		if !errors.Is(err, ErrInvalid) || len(f.txs) != 0 {
			t.Errorf("error %v after %d TransactWriteItems, want ErrInvalid and none", err, len(f.txs))
		}
	})

	t.Run("matched to from meanwhile: read again", func(t *testing.T) {
		// from's item did not list the reward when read, but the reward says from: a match
		// landed in between. The next pass reads both again and moves it.
		f := fresh()
		k := qualKey(41, 1)
		unmatched := from
		unmatched.MatchedDueRewardIDs = []int64{800}
		f.items[k.id+"/"+k.sk] = qualAV(unmatched)
		var once sync.Once
		f.get = func(key string) {
			if key == "due#700/due" {
				once.Do(func() { f.items[k.id+"/"+k.sk] = qualAV(from) })
			}
		}
		if err := NewDynamo(f.db(), "t").RematchDueReward(ctx, 700, from.Ref(), to.Ref(), slot); err != nil {
			t.Fatal(err)
		}
		if len(f.txs) != 1 || f.gets != 5 {
			t.Errorf("%d TransactWriteItems and %d GetItem, want 1 and 5", len(f.txs), f.gets)
		}
	})

	t.Run("races without end: bounded", func(t *testing.T) {
		f := fresh()
		k := qualKey(41, 1)
		unmatched := from
		unmatched.MatchedDueRewardIDs = []int64{800}
		f.items[k.id+"/"+k.sk] = qualAV(unmatched) // from never lists it, the reward always says from
		err := NewDynamo(f.db(), "t").RematchDueReward(ctx, 700, from.Ref(), to.Ref(), slot)
		if !errors.Is(err, errContention) || len(f.txs) != 0 || f.gets != 3*maxRaces {
			t.Errorf("error %v after %d transactions and %d GetItem, want errContention after 0 and %d", err, len(f.txs), f.gets, 3*maxRaces)
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
			{"another definition", mustAV(t, dueItem{ID: "due#700", SK: "due", Type: typeDueReward, DueRewardID: 700,
				RewardID: 8, RecipientID: 100, FirstSeenAt: formatTS(when), State: string(RewardSeen)}), ErrInvalid},
		} {
			f := fresh()
			k := qualKey(41, 1)
			unmatched := from
			unmatched.MatchedDueRewardIDs = []int64{800}
			f.items[k.id+"/"+k.sk] = qualAV(unmatched)
			f.items["due#700/due"] = c.due
			err := NewDynamo(f.db(), "t").RematchDueReward(ctx, 700, from.Ref(), to.Ref(), slot)
			if (c.want == nil && err != nil) || (c.want != nil && !errors.Is(err, c.want)) {
				t.Errorf("%s: error %v, want %v", c.name, err, c.want)
			}
			if len(f.txs) != 0 || f.gets != 3 {
				t.Errorf("%s: %d TransactWriteItems and %d GetItem, want 0 and 3", c.name, len(f.txs), f.gets)
			}
		}
	})
}

// MatchDueReward writes three items in one transaction, and a failed condition's old item says
// why without another read.
func TestMatchTransaction(t *testing.T) {
	when := time.Date(2026, 2, 3, 1, 0, 0, 0, time.UTC)
	q := Qualification{LeadID: 41, Seq: 1, ReferrerID: 100, At: when, Origin: OriginRefbridge}
	slot := RewardSlot{RecipientID: 100, RewardID: 7}
	due := func(m QualificationRef, rewardID int64) map[string]types.AttributeValue {
		return mustAV(t, dueItem{ID: "due#700", SK: "due", Type: typeDueReward, DueRewardID: 700, RewardID: rewardID, RecipientID: 100,
			FirstSeenAt: formatTS(when), State: string(RewardSeen), MatchedLeadID: m.LeadID, MatchedSeq: m.Seq})
	}
	taken := mustAV(t, newQualItem(recipientKey(100, q), typeQualIndex, q))
	taken[slotAttr(7)] = &types.AttributeValueMemberN{Value: "999"}
	fresh := func() *rematchFake {
		k := qualKey(41, 1)
		return &rematchFake{items: map[string]map[string]types.AttributeValue{
			k.id + "/" + k.sk: mustAV(t, newQualItem(k, typeQualification, q)),
			"due#700/due":     due(QualificationRef{}, 7),
		}}
	}
	cancel3 := func(i int, old map[string]types.AttributeValue) error {
		reasons := []types.CancellationReason{{Code: aws.String("None")}, {Code: aws.String("None")}, {Code: aws.String("None")}}
		reasons[i] = types.CancellationReason{Code: aws.String("ConditionalCheckFailed"), Item: old}
		return &types.TransactionCanceledException{Message: aws.String("canceled"), CancellationReasons: reasons}
	}
	ctx := context.Background()

	t.Run("three items", func(t *testing.T) {
		f := fresh()
		if err := NewDynamo(f.db(), "t").MatchDueReward(ctx, 700, q.Ref(), slot); err != nil {
			t.Fatal(err)
		}
		if f.gets != 1 || len(f.txs) != 1 {
			t.Fatalf("%d GetItem and %d TransactWriteItems, want 1 and 1", f.gets, len(f.txs))
		}
		ck := recipientKey(100, q)
		want := []struct{ key, update, names string }{
			{"due#700/due", "SET", "matched_lead_id"},
			{"qual#41/q#0000000001", "ADD", "matched_due_reward_ids"},
			{ck.id + "/" + ck.sk, "SET", "slot_7"},
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
			names := []string{}
			for _, n := range u.ExpressionAttributeNames {
				names = append(names, n)
			}
			if got := avKey(u.Key); got != w.key || !strings.HasPrefix(aws.ToString(u.UpdateExpression), w.update) ||
				aws.ToString(u.ConditionExpression) == "" || !slices.Contains(names, w.names) {
				t.Errorf("item %d: %s %q if %q (names %v), want %s %s on %s", i, got, aws.ToString(u.UpdateExpression),
					aws.ToString(u.ConditionExpression), names, w.key, w.update, w.names)
			}
		}
	})

	for _, c := range []struct {
		name   string
		cancel error
		want   error // nil: the cancellation itself
	}{
		{"reward matched elsewhere", cancel3(0, due(QualificationRef{LeadID: 9, Seq: 1}, 7)), ErrConflict},
		{"reward seen as another definition", cancel3(0, due(QualificationRef{}, 8)), ErrInvalid},
		{"reward never seen", cancel3(0, nil), ErrNotFound},
		{"slot taken", cancel3(2, taken), ErrConflict},
		{"index copy missing", cancel3(2, nil), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := fresh()
			f.answer = func(int) error { return c.cancel }
			err := NewDynamo(f.db(), "t").MatchDueReward(ctx, 700, q.Ref(), slot)
			if c.want == nil {
				if _, ok := cancellation(err); !ok || errors.Is(err, ErrConflict) {
					t.Errorf("error %v, want the cancellation", err)
				}
			} else if !errors.Is(err, c.want) {
				t.Errorf("error %v, want %v", err, c.want)
			}
			if len(f.txs) != 1 || f.gets != 1 {
				t.Errorf("%d TransactWriteItems and %d GetItem, want 1 and 1", len(f.txs), f.gets)
			}
		})
	}
}
