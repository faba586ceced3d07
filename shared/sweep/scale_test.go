package sweep

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

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
func TestTwoThousandRewardsOverSeveralRuns(t *testing.T) {
	t.Parallel()
	const n, recipients = 2000, 400
	e := setup(t, "dynamodb")
	sim := rfsimtest.New(t, rfsim.WithRatePerMinute(15000))
	ids := seedDue(t, sim, n, recipients, 0)
	bucket, err := ratelimit.New(e.db, e.table, "rf-scale", ratelimit.PerMinute(12000))
	if err != nil {
		t.Fatal(err)
	}
	client, err := rf.New(sim.URL, sim.Token, rf.WithLimiter(bucket))
	if err != nil {
		t.Fatal(err)
	}
	e.s.RF, e.s.Rules.Hold, e.s.Reserve = client, 0, 500*time.Millisecond

	var runs, issued, listedFirst int
	for runs < 60 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		sum, err := e.s.Run(ctx)
		cancel()
		runs++
		if err != nil {
			t.Fatalf("run %d: %v (%+v)", runs, err, sum)
		}
		if sum.Failed != 0 || sum.RateLimited != 0 {
			t.Fatalf("run %d: %+v", runs, sum)
		}
		if runs == 1 {
			listedFirst = sum.Listed
		} else if !sum.Resumed && !sum.Complete {
			t.Fatalf("run %d started over instead of resuming: %+v", runs, sum)
		}
		issued += sum.Issued
		if sum.Complete {
			break
		}
		if sum.Checkpoint == "" {
			t.Fatalf("run %d stopped without a checkpoint: %+v", runs, sum)
		}
	}
	t.Logf("%d rewards issued in %d runs", issued, runs)
	if runs < 2 || listedFirst != n {
		t.Fatalf("%d runs (first listed %d): the test did not exercise the checkpoint", runs, listedFirst)
	}
	if issued != n {
		t.Fatalf("issued %d of %d", issued, n)
	}
	perID := map[string]int{}
	for _, c := range sim.Server.Calls() {
		if rest, ok := strings.CutPrefix(c.Path, "/api/v2/rewards/issue/"); ok && c.Method == "POST" {
			perID[rest]++
		}
	}
	for _, id := range ids {
		if got := perID[strconv.FormatInt(id, 10)]; got != 1 {
			t.Fatalf("reward %d: %d issue calls", id, got)
		}
	}
	if len(perID) != n || len(sim.Server.DueRewards("amount")) != 0 {
		t.Fatalf("%d rewards got issue calls, %d still due", len(perID), len(sim.Server.DueRewards("amount")))
	}
	if c := sim.Server.Counters(); totalRateLimited(c) != 0 {
		t.Fatalf("RF answered 429 %d times", totalRateLimited(c))
	}
	// The monthly counts add up: five rewards per recipient.
	for r := int64(100); r < 100+recipients; r += 97 {
		if got, err := e.ledger.IssuedInMonth(context.Background(), r, e.clock.Now()); err != nil || got != n/recipients {
			t.Fatalf("recipient %d: %d issued (%v)", r, got, err)
		}
	}
}
