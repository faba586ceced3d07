package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/ledger"
)

// TestDynamoItemLayout writes one of every record and checks each item in the table against the
// layout documented in keys.go and docs/state.md: its prefixes (never the idempotency or rate
// limiter ones), its type, and which items use gsi1 and TTL.
func TestDynamoItemLayout(t *testing.T) {
	db, table := ddbtest.Table(t)
	clk := newClock()
	s := ledger.NewDynamo(db, table, ledger.WithClock(clk.Now))
	ctx := ctxT(t)

	l := lead(1, "CODE1", "one@example.com", 10)
	l.StripeCustomerID = "cus_1"
	_, err := s.PutLead(ctx, l)
	must(t, err)
	_, _, err = s.ApplySpend(ctx, ledger.SpendEntry{LeadID: 1, Key: "in_1#paid", Kind: ledger.SpendPayment, Currency: "usd", AmountMinor: 10, InvoiceID: "in_1"})
	must(t, err)
	q, err := s.Qualify(ctx, qual(1, 100, at(3, 1)))
	must(t, err)
	_, err = s.SeeDueReward(ctx, ledger.DueReward{ID: 5, RewardID: 1, RecipientID: 100, Metric: "amount"})
	must(t, err)
	must(t, s.MatchDueReward(ctx, 5, q.Ref(), ledger.RewardSlot{RecipientID: 100, RewardID: 1}))
	_, err = s.MarkRewardSettled(ctx, ledger.Settlement{ID: 5, RecipientID: 100, State: ledger.RewardIssued, By: ledger.SettledBySweep})
	must(t, err)
	_, err = s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: "5"})
	must(t, err)
	_, err = s.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentCancel, Target: "6"})
	must(t, err)
	_, err = s.FinishIntent(ctx, ledger.IntentCancel, "6", ledger.IntentDone, "")
	must(t, err)
	_, err = s.RecordUnmatched(ctx, unmatched("in_2", "cus_2", "two@example.com", clk.Now()))
	must(t, err)
	_, err = s.RecordUnmatched(ctx, unmatched("in_3", "cus_3", "", clk.Now()))
	must(t, err)
	_, err = s.ResolveUnmatched(ctx, "in_3", ledger.UnmatchedExpired, "window over")
	must(t, err)
	_, err = s.MapCharge(ctx, "ch_1", 1, "usd")
	must(t, err)
	_, _, err = s.ApplyChargeRefunded(ctx, ledger.ChargeRefund{LeadID: 1, ChargeID: "ch_1", Currency: "usd", CumulativeMinor: 5})
	must(t, err)
	_, err = s.HoldChargeReversal(ctx, ledger.ChargeHold{ChargeID: "ch_2", InvoiceID: "in_9", CustomerID: "cus_9", Currency: "usd", RefundedMinor: 5})
	must(t, err)
	must(t, s.SaveCheckpoint(ctx, "sweep", []byte("{}")))
	must(t, s.LogDecision(ctx, ledger.Decision{Subject: "due#5", Outcome: "wait"}))

	type rule struct {
		idPrefix, sk, typ string
		gsi1pk            string // "" = must have none
		ttl               bool
	}
	rules := []rule{
		{"lead#", "lead", "lead", "", false},
		{"code#", "lead", "lead_code", "", false},
		{"email#", "campaign#", "lead_email", "", false},
		{"customer#", "mapping", "customer_mapping", "", false},
		{"charge#", "mapping", "charge_mapping", "", false},
		{"charge#", "refunded", "charge_refunded", "", false},
		{"charge#", "held", "charge_held", "", true},
		{"lead#", "spend", "spend", "", false},
		{"spend#", "entry", "spend_entry", "", false},
		{"invoice#", "counted", "invoice_counted", "", false},
		{"qual#", "q#", "qualification", "", false},
		{"recipient#", "q#", "qualification_index", "", false},
		{"recipient#", "issued#", "issued_count", "", true},
		{"due#", "due", "due_reward", "", false},
		{"intent#issue#", "intent", "intent", "intent#pending#issue", false},
		{"intent#cancel#", "intent", "intent", "", false}, // done: out of the pending index
		{"unmatched#in_2", "unmatched", "unmatched", "unmatched", false},
		{"unmatched#in_3", "unmatched", "unmatched", "", false}, // resolved: out of the retry index
		{"checkpoint#", "checkpoint", "checkpoint", "", false},
		{"decision#", "d#", "decision", "", true},
	}
	out, err := db.Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	must(t, err)
	seen := map[int]int{}
	for _, av := range out.Items {
		var it struct {
			ID         string `dynamodbav:"id"`
			SK         string `dynamodbav:"sk"`
			Type       string `dynamodbav:"type"`
			GSI1PK     string `dynamodbav:"gsi1pk"`
			Expiration int64  `dynamodbav:"expiration"`
			EmailHash  string `dynamodbav:"email_hash"`
		}
		must(t, attributevalue.UnmarshalMap(av, &it))
		if strings.HasPrefix(it.ID, "idem#") || strings.HasPrefix(it.ID, "ratelimit#") {
			t.Errorf("item %s/%s uses another package's prefix", it.ID, it.SK)
		}
		if it.EmailHash != "" && strings.Contains(it.EmailHash, "@") {
			t.Errorf("item %s/%s stores a raw email", it.ID, it.SK)
		}
		matched := -1
		for i, r := range rules {
			if strings.HasPrefix(it.ID, r.idPrefix) && strings.HasPrefix(it.SK, r.sk) && it.Type == r.typ {
				matched = i
				break
			}
		}
		if matched < 0 {
			t.Errorf("item %s/%s (type %q) is not in the documented layout", it.ID, it.SK, it.Type)
			continue
		}
		seen[matched]++
		r := rules[matched]
		if it.GSI1PK != r.gsi1pk {
			t.Errorf("item %s/%s: gsi1pk %q, want %q", it.ID, it.SK, it.GSI1PK, r.gsi1pk)
		}
		if (it.Expiration != 0) != r.ttl {
			t.Errorf("item %s/%s: expiration %d", it.ID, it.SK, it.Expiration)
		}
		if r.ttl && time.Unix(it.Expiration, 0).Before(clk.Now().Add(399*24*time.Hour)) {
			t.Errorf("item %s/%s expires at %v, before the default retention", it.ID, it.SK, time.Unix(it.Expiration, 0))
		}
	}
	for i, r := range rules {
		if seen[i] == 0 {
			t.Errorf("no item of type %s (%s…/%s…) was written", r.typ, r.idPrefix, r.sk)
		}
	}
	if t.Failed() {
		for _, av := range out.Items {
			t.Logf("%v / %v", av["id"], av["sk"])
		}
	}
}

// lossyHTTP delivers every request but loses the response of the first `drop` TransactWriteItems
// after DynamoDB applied them, as a connection reset would: the SDK then retries the request.
type lossyHTTP struct {
	next    dynamodb.HTTPClient
	drop    atomic.Int32
	dropped atomic.Int32
}

func (c *lossyHTTP) Do(r *http.Request) (*http.Response, error) {
	resp, err := c.next.Do(r)
	if err != nil || !strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".TransactWriteItems") || c.drop.Add(-1) < 0 {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.dropped.Add(1)
	return nil, errors.New("read tcp: connection reset by peer")
}

// A transaction whose response is lost is retried by the SDK with the same request token, and
// DynamoDB answers the retry as the committed original: the write does not come back as a
// conflict with itself (a spend "already counted", a qualification "already qualified").
func TestDynamoLostResponseIsNotAConflict(t *testing.T) {
	db, table := ddbtest.Table(t)
	lossy := &lossyHTTP{next: http.DefaultClient}
	client := dynamodb.New(db.Options(), func(o *dynamodb.Options) { o.HTTPClient = lossy })
	s := ledger.NewDynamo(client, table)
	ctx := ctxT(t)

	lossy.drop.Store(1)
	sp, applied, err := s.ApplySpend(ctx, ledger.SpendEntry{LeadID: 3, Key: "in_3#paid", Kind: ledger.SpendPayment,
		Currency: "usd", AmountMinor: 500, InvoiceID: "in_3"})
	must(t, err)
	if !applied || sp.Net["usd"] != 500 {
		t.Errorf("ApplySpend after a lost response: applied=%v, net %v; want applied once, 500", applied, sp.Net)
	}
	lossy.drop.Store(1)
	q, err := s.Qualify(ctx, qual(3, 100, at(3, 1)))
	must(t, err)
	if q.Seq != 1 {
		t.Errorf("Qualify after a lost response = %+v", q)
	}
	lossy.drop.Store(1)
	l, err := s.PutLead(ctx, lead(3, "C3", "three@example.com", 10))
	must(t, err)
	if l.Code != "C3" {
		t.Errorf("PutLead after a lost response = %+v", l)
	}
	// The settlement is not refused by itself, and the resend does not count it twice.
	lossy.drop.Store(1)
	r, err := s.MarkRewardSettled(ctx, ledger.Settlement{ID: 3, RecipientID: 100, State: ledger.RewardIssued,
		At: at(10, 1), By: ledger.SettledBySweep})
	must(t, err)
	if r.State != ledger.RewardIssued || r.RecipientID != 100 {
		t.Errorf("MarkRewardSettled after a lost response = %+v", r)
	}
	if n, err := s.IssuedInMonth(ctx, 100, at(10, 1)); err != nil || n != 1 {
		t.Errorf("IssuedInMonth after a lost response = %d, %v; want 1", n, err)
	}
	if lossy.dropped.Load() != 4 {
		t.Fatalf("%d responses lost, want 4: the test did not exercise the retry", lossy.dropped.Load())
	}
	all, err := s.QualificationsFor(ctx, 100)
	must(t, err)
	if len(all) != 1 {
		t.Errorf("QualificationsFor = %+v", all)
	}
}

// The slots as docs/state.md describes them: on the recipient's index copy a top-level number
// slot_<rewardID> holding the due reward's id; on the qualification item the number set
// matched_due_reward_ids; no single matched_due_reward_id anywhere. A rematch deletes from the
// set and removes the slot, and a reversal keeps both.
func TestDynamoSlotAttributes(t *testing.T) {
	db, table := ddbtest.Table(t)
	s := ledger.NewDynamo(db, table)
	ctx := ctxT(t)
	q1, err := s.Qualify(ctx, qual(7, 100, at(3, 1)))
	must(t, err)
	see(t, s, 70, 1, 100) // the referrer's $25
	see(t, s, 71, 2, 7)   // the lead's coupon
	must(t, s.MatchDueReward(ctx, 70, q1.Ref(), slotOf(100, 1)))
	must(t, s.MatchDueReward(ctx, 71, q1.Ref(), slotOf(7, 2)))
	_, err = s.Reverse(ctx, q1.Ref(), at(4, 1), "refund")
	must(t, err)
	q2, err := s.Qualify(ctx, qual(7, 100, at(5, 1)))
	must(t, err)
	must(t, s.RematchDueReward(ctx, 70, q1.Ref(), q2.Ref(), slotOf(100, 1)))

	raw := func(id, sk string) map[string]any {
		t.Helper()
		out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}, "sk": &types.AttributeValueMemberS{Value: sk}}})
		must(t, err)
		if len(out.Item) == 0 {
			t.Fatalf("no item %s/%s", id, sk)
		}
		if _, ok := out.Item["matched_due_reward_id"]; ok {
			t.Errorf("%s/%s still has matched_due_reward_id", id, sk)
		}
		got := map[string]any{}
		for name, v := range out.Item {
			switch v := v.(type) {
			case *types.AttributeValueMemberN:
				got[name] = "N:" + v.Value
			case *types.AttributeValueMemberNS:
				ns := slices.Clone(v.Value)
				slices.Sort(ns)
				got[name] = "NS:" + strings.Join(ns, ",")
			}
		}
		return got
	}
	copyKey := func(u int64, q ledger.Qualification) (string, string) {
		return fmt.Sprintf("recipient#%d", u), fmt.Sprintf("q#%s#%019d#%010d", q.At.UTC().Format("2006-01-02T15:04:05.000000000Z"), q.LeadID, q.Seq)
	}
	for _, c := range []struct {
		what   string
		id, sk string
		attr   string
		want   string // "" = absent
	}{
		{"q1 item: the coupon only", "qual#7", "q#0000000001", "matched_due_reward_ids", "NS:71"},
		{"q2 item: the $25", "qual#7", "q#0000000002", "matched_due_reward_ids", "NS:70"},
	} {
		if got := raw(c.id, c.sk)[c.attr]; (c.want == "" && got != nil) || (c.want != "" && got != c.want) {
			t.Errorf("%s: %s = %v, want %q", c.what, c.attr, got, c.want)
		}
	}
	for _, c := range []struct {
		what  string
		u     int64
		q     ledger.Qualification
		attrs map[string]string
	}{
		{"the referrer's copy of q1: slot freed", 100, q1, map[string]string{"slot_1": "", "slot_2": ""}},
		{"the lead's copy of q1: the coupon's slot kept through the reversal", 7, q1, map[string]string{"slot_2": "N:71", "slot_1": ""}},
		{"the referrer's copy of q2", 100, q2, map[string]string{"slot_1": "N:70"}},
		{"the lead's copy of q2", 7, q2, map[string]string{"slot_1": "", "slot_2": ""}},
	} {
		id, sk := copyKey(c.u, c.q)
		item := raw(id, sk)
		for attr, want := range c.attrs {
			if got := item[attr]; (want == "" && got != nil) || (want != "" && got != want) {
				t.Errorf("%s: %s = %v, want %q", c.what, attr, got, want)
			}
		}
		if _, ok := item["matched_due_reward_ids"]; ok {
			t.Errorf("%s: an index copy carries matched_due_reward_ids", c.what)
		}
	}
}
