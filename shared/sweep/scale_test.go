package sweep

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/ratelimit"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

// 2,000 due rewards, more than one run can issue in its time: each run stops before its deadline
// and saves its checkpoint, the next continues, and in the end every reward was issued exactly
// once, through the shared bucket, without a single 429.
//
// The simulator's limit is scaled up (15,000/min) and the bucket kept below it (12,000/min, as
// refbridge's 500 is below RF's 600). The bucket alone needs 10 s for 2,000 issues, so runs of
// 3 s cannot finish in one whatever the machine's speed.
//
// What was done is read at the end from RF and the ledger, not added up from the runs'
// summaries: a run cut off at its deadline leaves an issue whose answer it did not get pending,
// and the next run confirms it from RF's issued list (Summary.Reconciled), or takes it over
// once it is stale if it never reached RF. The runs go on until one finds nothing left to do.
func TestTwoThousandRewardsOverSeveralRuns(t *testing.T) {
	t.Parallel()
	const n, recipients = 2000, 400
	ctx := context.Background()
	e := setup(t, "dynamodb")
	sim := rfsimtest.New(t, rfsim.WithRatePerMinute(15000))
	ids := seedDue(t, sim, n, recipients, 0)
	bucket, err := ratelimit.New(e.db, e.table, "rf-scale", ratelimit.PerMinute(12000))
	if err != nil {
		t.Fatal(err)
	}
	e.s.Rules.Hold, e.s.Reserve = 0, 500*time.Millisecond
	began := e.clock.Now()

	// On a loaded machine (the race detector, every package's tests at once) a run of 3 s may
	// issue a few dozen rewards, or none when the listing alone outlasts it. A run that issued
	// fewer than slowRun gets twice the time next, up to 6 s: even then no two runs can issue
	// 2,000, which take the bucket 10 s. The runs are bounded by their number, not by time.
	const maxRuns, slowRun, firstBudget, maxBudget = 100, 100, 3 * time.Second, 6 * time.Second
	budget := firstBudget
	var runs, issuing, resumedIssuing, listedFirst, issued, reconciled, takeovers int
	var checkpoint string
	for done := false; !done; {
		if runs == maxRuns {
			t.Fatalf("%d runs, and the last still found work: %d issued, %d reconciled", runs, issued, reconciled)
		}
		runs++
		sum := e.runAgainst(t, sim, bucket, budget)
		if sum.Failed != 0 || sum.RateLimited != 0 {
			t.Fatalf("run %d: %+v", runs, sum)
		}
		if checkpoint != "" && !sum.Resumed {
			t.Fatalf("run %d started over instead of resuming at %q: %+v", runs, checkpoint, sum)
		}
		if listedFirst == 0 {
			listedFirst = sum.Listed // nothing was issued before the first listing: it lists all
		}
		if !sum.Complete && sum.Checkpoint == "" && sum.Issued != 0 {
			t.Fatalf("run %d issued rewards but saved no checkpoint: %+v", runs, sum)
		}
		if !sum.Complete && sum.Issued < slowRun {
			budget = min(2*budget, maxBudget)
		}
		if sum.Issued != 0 {
			issuing++
			if sum.Resumed {
				resumedIssuing++
			}
		}
		issued, reconciled, checkpoint = issued+sum.Issued, reconciled+sum.Reconciled, sum.Checkpoint
		if sum.Waiting[ruleInProgress] != 0 {
			// An attempt left pending that RF does not show (an issue cut off after it may
			// have gone out, or an intent whose write landed after the run stopped waiting for
			// it): the next runs leave it alone until it is stale, as they must for a call
			// that may still be on its way. This run's connections are closed (runAgainst), so
			// nothing it sent can land later: the clock moves on to the first scheduled run
			// after the attempt went stale, which reads RF and takes it over.
			e.clock.Advance(e.s.staleAfter() + time.Minute)
			takeovers += sum.Waiting[ruleInProgress]
		}
		done = sum.Complete && sum.Listed+sum.Issued+sum.Reconciled == 0 && len(sum.Waiting) == 0
	}
	t.Logf("%d runs (%d issued something, the last budget %s): %d issued, %d reconciled, %d left pending and taken over",
		runs, issuing, budget, issued, reconciled, takeovers)
	if listedFirst != n || issuing < 2 || resumedIssuing < 1 || runs < 3 {
		t.Fatalf("%d runs, %d of them issuing, %d after resuming (first listed %d): the test did not exercise the checkpoint",
			runs, issuing, resumedIssuing, listedFirst)
	}

	// RF: every reward issued, by exactly one call, and no call refused.
	perID := map[string]int{}
	for _, c := range sim.Server.Calls() {
		if rest, ok := strings.CutPrefix(c.Path, "/api/v2/rewards/issue/"); ok && c.Method == "POST" {
			if c.Status != 200 {
				t.Fatalf("reward %s: an issue call answered %d", rest, c.Status)
			}
			perID[rest]++
		}
	}
	inRF := map[int64]string{}
	for _, r := range sim.Server.IssuedRewards("amount") {
		inRF[int64(r.ID)] = r.Status
	}
	for _, id := range ids {
		if got := perID[strconv.FormatInt(id, 10)]; got != 1 || inRF[id] != rf.StatusIssued {
			t.Fatalf("reward %d: %d issue calls, %q in RF", id, got, inRF[id])
		}
	}
	if len(perID) != n || len(sim.Server.DueRewards("amount")) != 0 {
		t.Fatalf("%d rewards got issue calls, %d still due", len(perID), len(sim.Server.DueRewards("amount")))
	}
	if c := sim.Server.Counters(); totalRateLimited(c) != 0 {
		t.Fatalf("RF answered 429 %d times", totalRateLimited(c))
	}

	// The ledger: every reward recorded issued, no attempt left open.
	for _, id := range ids {
		if rec, err := e.ledger.DueRewardRecord(ctx, id); err != nil || rec.State != ledger.RewardIssued {
			t.Fatalf("reward %d in the ledger: %+v %v", id, rec, err)
		}
	}
	if pending, err := e.ledger.PendingIntents(ctx, ledger.IntentIssue); err != nil || len(pending) != 0 {
		t.Fatalf("%d issue intents still pending (%v): %+v", len(pending), err, pending)
	}
	// The monthly counts add up: five rewards per recipient (in two months when the clock, moved
	// on past stale attempts, crossed into the next).
	for r := int64(100); r < 100+recipients; r += 97 {
		got, err := e.ledger.IssuedInMonth(ctx, r, began)
		if end := e.clock.Now(); err == nil && monthOf(end) != monthOf(began) {
			var more int
			more, err = e.ledger.IssuedInMonth(ctx, r, end)
			got += more
		}
		if err != nil || got != n/recipients {
			t.Fatalf("recipient %d: %d issued (%v)", r, got, err)
		}
	}
}

// runAgainst runs the sweep with the given time against its own front of the simulator, as a
// Lambda invocation's connections end with it. Closing the front waits for every request that
// reached it: whatever a cut-off run sent has landed in RF when it returns, or never will.
func (e env) runAgainst(t *testing.T, sim *rfsimtest.Sim, bucket *ratelimit.Bucket, budget time.Duration) Summary {
	t.Helper()
	front := httptest.NewServer(sim.Server)
	defer front.Close()
	client, err := rf.New(front.URL+"/api/v2", sim.Token, rf.WithLimiter(bucket))
	if err != nil {
		t.Fatal(err)
	}
	e.s.RF = client
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	sum, err := e.s.Run(ctx)
	if err != nil {
		t.Fatalf("run: %v (%+v)", err, sum)
	}
	return sum
}

func monthOf(t time.Time) string { return t.UTC().Format("2006-01") }
