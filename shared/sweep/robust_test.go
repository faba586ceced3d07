package sweep

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/ratelimit"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

// writeCalls lists the calls that change RF's state.
func writeCalls(sim interface{ Calls() []rfsim.Call }) []string {
	var out []string
	for _, c := range sim.Calls() {
		if c.Method == "GET" || strings.HasSuffix(c.Path, "/search") {
			continue
		}
		out = append(out, c.Method+" "+c.Path)
	}
	return out
}

// A dry run asked for by the request (DRY_RUN=false) changes nothing in RF — not even through
// the unmatched-invoice retrier, which was built for real runs — and never moves the real
// run's checkpoint.
func TestDryRunByRequestWritesNothingToRF(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		qualifyErin(t, e, 30)
		// Frank paid before refbridge knew him; now the lead-created webhook has recorded him, so
		// a real run's retry would qualify him in RF.
		frank := e.sim.Lead(t, 1, "aLiCeRef", "frank@example.com")
		th, _ := config.ParseThreshold("100")
		dec := referrals.New(e.ledger, e.s.RF.(*rf.Client), referrals.Settings{Threshold: th, UnmatchedRetry: 72 * time.Hour}, e.clock.Now, nil)
		inv := stripeevents.Invoice{ID: "in_wait", CustomerID: "cus_frank", CustomerEmail: "frank@example.com", Currency: "usd", AmountPaid: 4900}
		if res, err := dec.InvoicePaid(ctx, inv, e.clock.Now()); err != nil || res.Outcome != referrals.Unmatched {
			t.Fatalf("%+v %v", res, err)
		}
		l := ledger.Lead{ID: int64(frank.ID), Code: frank.Code, ReferrerID: 1, CampaignID: 1, Source: ledger.SourceRFWebhook}
		l.SetEmail("frank@example.com")
		if _, err := e.ledger.PutLead(ctx, l); err != nil {
			t.Fatal(err)
		}
		e.sim.Server.ClearCalls()
		e.s.Retrier, e.s.Rules.Hold = dec, 0
		h := &Handler{Sweeper: e.s}
		sum, err := h.Handle(ctx, Request{DryRun: true})
		if err != nil || sum.WouldIssue != 4 || sum.Issued != 0 { // Alice's, Bob's, and Erin's and Frank's coupons
			t.Fatalf("%+v %v", sum, err)
		}
		if w := writeCalls(e.sim.Server); len(w) != 0 {
			t.Fatalf("a dry run changed RF: %v", w)
		}
		if u, _ := e.ledger.UnmatchedInvoice(ctx, "in_wait"); u.Status != ledger.UnmatchedWaiting || u.Retries != 0 {
			t.Fatalf("the dry run retried the waiting invoice: %+v", u)
		}
		// A rehearsal cut short keeps its position apart from the real one.
		short, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		e.s.Reserve = 2 * time.Minute
		if sum, err := h.Handle(short, Request{DryRun: true}); err != nil || sum.Complete {
			t.Fatalf("short dry run: %+v %v", sum, err)
		}
		if _, err := e.ledger.LoadCheckpoint(ctx, Name); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("the dry run wrote the real checkpoint: %v", err)
		}
		if _, err := e.ledger.LoadCheckpoint(ctx, Name+"-dry-run"); err != nil {
			t.Fatalf("no dry-run checkpoint: %v", err)
		}
		// Nor the real listing times (the first, complete, rehearsal wrote its own).
		if _, err := e.ledger.LoadCheckpoint(ctx, Name+"-listings"); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("the dry run wrote the real listing times: %v", err)
		}
		if _, err := e.ledger.LoadCheckpoint(ctx, Name+"-listings-dry-run"); err != nil {
			t.Fatalf("no dry-run listing times: %v", err)
		}
	})
}

// A metric RF refuses to list (every time) does not keep the others from being swept; the
// failure is counted, so the invocation reports it.
func TestAMetricRFWillNotListDoesNotBlockTheOthers(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		id := qualifyErin(t, e, 30)
		if _, err := e.sim.Server.AddFault(rfsim.Fault{Match: "GET /api/v2/rewards/due/commission", Status: 400}); err != nil {
			t.Fatal(err)
		}
		for run := range 2 {
			sum, err := e.s.Run(ctx)
			if err != nil || sum.Failed != 1 || !sum.Complete {
				t.Fatalf("run %d: %+v %v", run, sum, err)
			}
		}
		if issueCalls(e.sim, id) != 1 || rfStatus(t, e, id) != rf.StatusIssued {
			t.Fatalf("Bob's reward was not issued past the failing metric")
		}
	})
}

// failingSettle fails the first n settlements, as a DynamoDB error after RF's success would.
type failingSettle struct {
	ledger.Store
	mu sync.Mutex
	n  int
}

func (f *failingSettle) MarkRewardSettled(ctx context.Context, s ledger.Settlement) (ledger.DueReward, error) {
	f.mu.Lock()
	fail := f.n > 0
	f.n--
	f.mu.Unlock()
	if fail {
		return ledger.DueReward{}, errors.New("injected: DynamoDB unavailable")
	}
	return f.Store.MarkRewardSettled(ctx, s)
}

// RF issued the reward but recording it failed: the intent stays pending, and the next run
// reconciles it from RF's issued list — recorded issued and counted, never issued again.
func TestRecordingFailsAfterRFIssued(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		id := qualifyErin(t, e, 30)
		e.s.Rules.AllowMetrics = []string{"amount"}
		real := e.s.Ledger
		e.s.Ledger = &failingSettle{Store: e.ledger, n: 1}
		sum, err := e.s.Run(ctx)
		if err != nil || sum.Failed != 1 || issueCalls(e.sim, id) != 1 {
			t.Fatalf("first run: %+v %v", sum, err)
		}
		if in, _ := e.ledger.IntentOf(ctx, ledger.IntentIssue, ledger.DueRewardTarget(id)); in.Status != ledger.IntentPending {
			t.Fatalf("intent %+v: want pending, for the next run to reconcile", in)
		}
		e.s.Ledger = real
		sum, err = e.s.Run(ctx)
		if err != nil || sum.Reconciled != 1 || issueCalls(e.sim, id) != 1 {
			t.Fatalf("next run: %+v %v, %d issue calls", sum, err, issueCalls(e.sim, id))
		}
		if rec, _ := e.ledger.DueRewardRecord(ctx, id); rec.State != ledger.RewardIssued {
			t.Fatalf("not recorded: %+v", rec)
		}
		issuedToBob(t, e, e.clock.Now(), 1)
	})
}

// When the shared bucket has no token before the deadline, the run stops for time — it saves
// its checkpoint and reports no failure — and the next run carries on.
func TestNoTokenBeforeTheDeadlineStopsTheRunCleanly(t *testing.T) {
	e := setup(t, "dynamodb")
	ids := seedDue(t, e.sim, 4, 4, 0)
	// Burst 2, then one token every 30 s: the listing takes the burst (and waits for a token).
	bucket, err := ratelimit.New(e.db, e.table, "rf-slow", ratelimit.Limit{Events: 4, Per: time.Minute, Burst: 2})
	if err != nil {
		t.Fatal(err)
	}
	client, err := rf.New(e.sim.URL, e.sim.Token, rf.WithLimiter(bucket))
	if err != nil {
		t.Fatal(err)
	}
	e.s.RF, e.s.Rules.Hold, e.s.Reserve = client, 0, time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sum, err := e.s.Run(ctx)
	if err != nil || sum.Failed != 0 || sum.Complete || sum.Checkpoint == "" || sum.Issued >= len(ids) {
		t.Fatalf("%+v %v", sum, err)
	}
	if deadline, _ := ctx.Deadline(); time.Now().After(deadline) {
		t.Fatalf("the run outlived its deadline")
	}
}

// cutOffIssue is RF whose issue calls are cut off by the end of the run before anything is sent:
// the invocation ends while the call waits for a rate-limit token, and the limiter gives up with
// the context's error.
type cutOffIssue struct {
	RF
	end context.CancelFunc
}

func (c cutOffIssue) IssueReward(ctx context.Context, id int64) (rf.IssuedReward, error) {
	c.end()
	<-ctx.Done()
	return rf.IssuedReward{}, fmt.Errorf("POST /rewards/issue/%d: wait for rate limiter: %w", id, ctx.Err())
}

// An issue cut off by the end of the run before it was sent is recorded failed although the
// run's context has ended: left pending, it would look like a call that may still land in RF, and
// no run would try the reward again before StaleAfter (16 minutes) had passed. The next run, on
// the same clock, issues it.
func TestIssueCutOffBeforeItWasSentIsIssuedByTheNextRun(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		ids := seedDue(t, e.sim, 1, 1, 0)
		id := ids[0]
		e.s.Rules.Hold = 0
		real := e.s.RF
		run, end := context.WithCancel(ctx)
		defer end()
		e.s.RF = cutOffIssue{RF: real, end: end}
		sum, err := e.s.Run(run)
		if err != nil || sum.Complete || sum.Issued != 0 || sum.Failed != 0 || issueCalls(e.sim, id) != 0 {
			t.Fatalf("cut-off run: %+v %v", sum, err)
		}
		if in, err := e.ledger.IntentOf(ctx, ledger.IntentIssue, ledger.DueRewardTarget(id)); err != nil || in.Status != ledger.IntentFailed {
			t.Fatalf("intent %+v %v: want failed, for the next run to begin again", in, err)
		}
		e.s.RF = real
		sum, err = e.s.Run(ctx)
		if err != nil || !sum.Complete || sum.Issued != 1 || sum.Waiting[ruleInProgress] != 0 || issueCalls(e.sim, id) != 1 {
			t.Fatalf("next run: %+v %v, %d issue calls", sum, err, issueCalls(e.sim, id))
		}
		if rec, _ := e.ledger.DueRewardRecord(ctx, id); rec.State != ledger.RewardIssued {
			t.Fatalf("not recorded: %+v", rec)
		}
	})
}
