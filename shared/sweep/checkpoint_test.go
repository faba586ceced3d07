package sweep

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

// seedDue replaces the simulator's state with the demo campaign and n due amount rewards, ids
// firstDueID, firstDueID+1, …, going round recipients 100, 101, … (recipients of them). rate
// is the simulator's limit per window (0: the one it was started with).
func seedDue(t testing.TB, sim *rfsimtest.Sim, n, recipients, rate int) []int64 {
	t.Helper()
	d := rfsimtest.DemoSeed(t)
	d.RatePerMinute = rate
	d.DueRewards = nil
	ids := make([]int64, n)
	for i := range n {
		ids[i] = int64(firstDueID + i)
		d.DueRewards = append(d.DueRewards, rfsim.SeedDue{ID: firstDueID + i, RewardID: 1, RecipientID: 100 + i%recipients})
	}
	sim.MustSeed(t, d)
	return ids
}

const firstDueID = 1001

func issuedIDs(sim *rfsimtest.Sim) map[int64]bool {
	got := map[int64]bool{}
	for _, r := range sim.Server.IssuedRewards("amount") {
		if r.Status == rf.StatusIssued {
			got[int64(r.ID)] = true
		}
	}
	return got
}

func loadCheckpoint(t *testing.T, l ledger.Store) checkpoint {
	t.Helper()
	var cp checkpoint
	data, err := l.LoadCheckpoint(context.Background(), Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cp); err != nil {
		t.Fatal(err)
	}
	return cp
}

// A run continues a pass where the checkpoint says: rewards before it are not handled again,
// and a finished pass starts the next run from the beginning.
func TestResumesFromTheCheckpoint(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		ids := seedDue(t, e.sim, 6, 6, 0)
		e.s.Rules.Hold = 0
		cp, _ := json.Marshal(checkpoint{Metric: rf.MetricAmount, AfterID: ids[3]})
		if err := e.ledger.SaveCheckpoint(ctx, Name, cp); err != nil {
			t.Fatal(err)
		}
		sum, err := e.s.Run(ctx)
		if err != nil || !sum.Resumed || !sum.Complete || sum.Issued != 2 {
			t.Fatalf("resumed run: %+v %v", sum, err)
		}
		got := issuedIDs(e.sim)
		if len(got) != 2 || !got[ids[4]] || !got[ids[5]] {
			t.Fatalf("issued %v, want only the two after the checkpoint", got)
		}
		if cp := loadCheckpoint(t, e.ledger); cp.Metric != "" {
			t.Fatalf("checkpoint after a finished pass: %+v", cp)
		}
		sum, err = e.s.Run(ctx)
		if err != nil || sum.Resumed || sum.Issued != 4 || len(issuedIDs(e.sim)) != 6 || issueCalls(e.sim, 0) != 6 {
			t.Fatalf("next pass: %+v %v, %d issue calls", sum, err, issueCalls(e.sim, 0))
		}
	})
}

// With too little time left the run starts nothing, keeps its position and says so; an
// unreadable or unknown checkpoint costs a re-read, never a reward.
func TestStopsWhenTimeIsShort(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		ids := seedDue(t, e.sim, 3, 3, 0)
		e.s.Rules.Hold = 0
		cp, _ := json.Marshal(checkpoint{Metric: rf.MetricAmount, AfterID: ids[0]})
		if err := e.ledger.SaveCheckpoint(ctx, Name, cp); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		e.s.Reserve = time.Minute
		sum, err := e.s.Run(short)
		if err != nil || sum.Complete || sum.Checkpoint == "" || sum.Listed != 0 || issueCalls(e.sim, 0) != 0 {
			t.Fatalf("short run: %+v %v", sum, err)
		}
		if got := loadCheckpoint(t, e.ledger); got.Metric != rf.MetricAmount || got.AfterID != ids[0] {
			t.Fatalf("checkpoint moved: %+v", got)
		}

		e.s.Reserve = 0
		if err := e.ledger.SaveCheckpoint(ctx, Name, []byte(`{"metric":"points","after_id":7}`)); err != nil {
			t.Fatal(err)
		}
		sum, err = e.s.Run(ctx)
		if err != nil || !sum.Complete || sum.Issued != 3 {
			t.Fatalf("after an unknown checkpoint: %+v %v", sum, err)
		}
		if err := e.ledger.SaveCheckpoint(ctx, Name, []byte(`not json`)); err != nil {
			t.Fatal(err)
		}
		if sum, err = e.s.Run(ctx); err != nil || !sum.Complete || issueCalls(e.sim, 0) != 3 {
			t.Fatalf("after an unreadable checkpoint: %+v %v", sum, err)
		}
	})
}

// REWARD_MAX_PER_RECIPIENT_PER_MONTH counts every reward recorded as issued to the recipient
// this month (by the sweep or reported by RF's webhook); the rest wait for the next month.
func TestMonthlyCap(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		ids := seedDue(t, e.sim, 5, 2, 0) // recipient 100: ids[0], ids[2], ids[4]; 101: ids[1], ids[3]
		e.s.Rules = Rules{Hold: 0, MaxPerRecipient: 2}
		// Recipient 101 already got one this month, issued by hand and reported by RF.
		if _, err := e.ledger.MarkRewardSettled(ctx, ledger.Settlement{ID: 77, RecipientID: 101, State: ledger.RewardIssued,
			At: e.clock.Now(), By: ledger.SettledByRFWebhook}); err != nil {
			t.Fatal(err)
		}
		sum, err := e.s.Run(ctx)
		if err != nil || sum.Issued != 3 || sum.Waiting["cap"] != 2 {
			t.Fatalf("this month: %+v %v", sum, err)
		}
		got := issuedIDs(e.sim)
		if !got[ids[0]] || !got[ids[2]] || got[ids[4]] || !got[ids[1]] || got[ids[3]] {
			t.Fatalf("issued %v: want the two oldest of 100 and the oldest of 101", got)
		}
		for _, d := range []struct {
			recipient int64
			want      int
		}{{100, 2}, {101, 2}} {
			if n, err := e.ledger.IssuedInMonth(ctx, d.recipient, e.clock.Now()); err != nil || n != d.want {
				t.Fatalf("recipient %d: %d issued this month (%v), want %d", d.recipient, n, err, d.want)
			}
		}
		e.clock.Advance(32 * 24 * time.Hour)
		if sum, err := e.s.Run(ctx); err != nil || sum.Issued != 2 || len(issuedIDs(e.sim)) != 5 {
			t.Fatalf("next month: %+v %v", sum, err)
		}
	})
}

// Another client using up RF's window makes RF answer the sweep 429: the sweep tells the shared
// bucket, waits as long as RF asks, and finishes; it does not hammer RF meanwhile.
// The bucket lives in DynamoDB: this runs on the DynamoDB variant only.
func TestBacksOffWhenOtherTrafficCauses429(t *testing.T) {
	e := setup(t, "dynamodb")
	{
		ctx := context.Background()
		const window, perWindow = 2 * time.Second, 10
		sim := rfsimtest.New(t, rfsim.WithRateWindow(window), rfsim.WithRatePerMinute(perWindow))
		ids := seedDue(t, sim, 3, 3, 0)
		bucket := e.bucket(t, "rf-backoff", 8, window)
		client, err := rf.New(sim.URL, sim.Token, rf.WithLimiter(bucket))
		if err != nil {
			t.Fatal(err)
		}
		e.s.RF, e.s.Rules.Hold = client, 0

		other, _ := rf.New(sim.URL, sim.Token, rf.WithLimiter(nil), rf.WithRetryPolicy(rf.RetryPolicy{MaxAttempts: 1}))
		for range perWindow { // another integration spends the whole window
			if _, err := other.Campaigns(rf.ListOptions{}).Collect(ctx); err != nil {
				t.Fatal(err)
			}
		}
		sum, err := e.s.Run(ctx)
		if err != nil || sum.Issued != len(ids) {
			t.Fatalf("%+v %v", sum, err)
		}
		if sum.RateLimited < 1 || sum.RateLimited > 2 {
			t.Fatalf("the sweep saw %d 429s: want the one that told it to wait (at most one more)", sum.RateLimited)
		}
		if total := sim.Server.Counters(); totalRateLimited(total) != sum.RateLimited {
			t.Fatalf("RF refused %d calls, the sweep counted %d", totalRateLimited(total), sum.RateLimited)
		}
	}
}

func totalRateLimited(c rfsim.Counters) int64 {
	var n int64
	for _, v := range c.RateLimited {
		n += int64(v)
	}
	return n
}

func TestHandler(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		seedDue(t, e.sim, 2, 2, 0)
		e.s.Rules.Hold = 0
		var emf syncBuffer
		h := &Handler{Sweeper: e.s, Metrics: observe.New(&emf, "reward-sweep")}

		// The scheduler's payload carries fields the sweep does not read.
		var req Request
		if err := json.Unmarshal(readFixture(t, "schedule.json"), &req); err != nil || req.DryRun {
			t.Fatalf("schedule payload: %+v %v", req, err)
		}
		if err := json.Unmarshal(readFixture(t, "dry-run.json"), &req); err != nil || !req.DryRun {
			t.Fatalf("dry-run payload: %+v %v", req, err)
		}
		sum, err := h.Handle(ctx, req)
		if err != nil || sum.WouldIssue != 2 || !sum.DryRun || issueCalls(e.sim, 0) != 0 || e.s.DryRun {
			t.Fatalf("dry run by request: %+v %v", sum, err)
		}

		// Another run holds the lease: nothing done, and not a failure.
		if err := e.s.Lease.Acquire(ctx, Name, "someone else", time.Now(), time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		sum, err = h.Handle(ctx, Request{})
		if err != nil || sum.NotRun == "" || issueCalls(e.sim, 0) != 0 {
			t.Fatalf("lease held: %+v %v", sum, err)
		}
		if err := e.s.Lease.Release(ctx, Name, "someone else"); err != nil {
			t.Fatal(err)
		}

		// A reward RF refuses to issue fails the invocation (after the others are done).
		if _, err := e.sim.Server.AddFault(rfsim.Fault{Match: "POST /api/v2/rewards/issue/{id}", Status: 422, Count: 1}); err != nil {
			t.Fatal(err)
		}
		sum, err = h.Handle(ctx, Request{})
		if !errors.Is(err, ErrFailures) || sum.Failed != 1 || sum.Issued != 1 {
			t.Fatalf("one refused: %+v %v", sum, err)
		}
		if last := lastLine(emf.String()); !strings.Contains(last, `"RewardsFailed":1`) || !strings.Contains(last, `"RewardsIssued":1`) ||
			!strings.Contains(last, `"SweepIncomplete":0`) || !strings.Contains(last, `"Function":"reward-sweep"`) {
			t.Fatalf("metrics %s", last)
		}
		// The next run issues it.
		if sum, err = h.Handle(ctx, Request{}); err != nil || sum.Issued != 1 {
			t.Fatalf("next run: %+v %v", sum, err)
		}
	})
}
