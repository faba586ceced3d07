package bench

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/ratelimit"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/sweep"
	"github.com/refbridge/refbridge/shared/wiring"
)

// BenchmarkSweepPacing lets one sweep issue N due rewards (no hold, nothing behind them, so
// each costs one RF call) against the simulator enforcing RF's limit L per window, with
// refbridge's share (RF_RATE_PER_MINUTE's default 500 of RF's 600, i.e. 5/6 of L) taken from
// the shared token bucket in DynamoDB Local, as in Lambda. The window is scaled down from a
// minute to a few seconds at RF's rate (100 per 10 s is 600 a minute), so a one-minute run
// crosses several of the simulator's windows. The ledger is in memory: the figure is the
// pacing, not DynamoDB Local's speed. It needs DynamoDB Local.
func BenchmarkSweepPacing(b *testing.B) {
	window, limit, n := 10*time.Second, 100, size(480, 20)
	if testing.Short() {
		window = 2 * time.Second
		limit = 20
	}
	for range b.N {
		res := runPacing(b, n, window, limit)
		b.ReportMetric(res.RunOfShare, "of-share")
		b.ReportMetric(float64(res.RateLimited), "429s")
		b.ReportMetric(res.IssuesPerSecond, "issues/s")
		writeResult(b, "pacing", res)
		if res.Issued != n || !res.Complete {
			b.Fatalf("issued %d of %d (complete %v)", res.Issued, n, res.Complete)
		}
	}
}

func runPacing(b *testing.B, n int, window time.Duration, limit int) PacingResult {
	b.StopTimer()
	_, table := ddbtest.Table(b)
	sim := rfsimtest.New(b, rfsim.WithRatePerMinute(limit), rfsim.WithRateWindow(window))
	seed := rfsimtest.DemoSeed(b)
	seed.RatePerMinute = 0 // the configured limit, per window
	seed.IssuedRewards = nil
	seed.DueRewards = nil
	for i := range n {
		seed.DueRewards = append(seed.DueRewards, rfsim.SeedDue{RewardID: 1, RecipientID: 1 + i%3, LeadID: 4})
	}
	sim.MustSeed(b, seed)

	share := limit * 500 / 600
	l := ratelimit.PerMinute(share) // the burst wiring gives RF_RATE_PER_MINUTE = share…
	l.Per = window                  // …over the scaled window
	bucket, err := ratelimit.New(dynamodb.New(ddbtest.Client(b).Options(), countDynamoDB), table, "rf", l)
	if err != nil {
		b.Fatal(err)
	}
	env := map[string]string{"RF_API_URL": sim.URL, "RF_API_TOKEN": sim.Token, "RF_CAMPAIGN_IDS": "1", "REWARD_HOLD_DAYS": "0"}
	deps, err := wiring.Local(context.Background(), func(k string) string { return env[k] }, io.Discard,
		config.Need{RFAPIToken: true}, wiring.WithRFOptions(rf.WithLimiter(bucket)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sim.Server.ClearCalls()
	b.StartTimer()
	sum, err := deps.Sweep().Handle(ctx, sweep.Request{})
	b.StopTimer()
	if err != nil {
		b.Fatalf("sweep: %v (%+v)", err, sum)
	}

	res := PacingResult{DueRewards: n, Window: window.Seconds(), Limit: limit, Share: share, Burst: l.Burst,
		Issued: sum.Issued, Complete: sum.Complete, RunSeconds: float64(sum.DurationMS) / 1000}
	var issues, all []time.Time
	for _, c := range sim.Server.Calls() {
		if !strings.HasPrefix(c.Path, "/api/v2/") {
			continue
		}
		all = append(all, c.Time)
		if c.Status == 429 {
			res.RateLimited++
		}
		if strings.HasPrefix(c.Path, "/api/v2/rewards/issue/") && c.Status < 300 {
			issues = append(issues, c.Time)
		}
	}
	res.RFCalls = len(all)
	if len(issues) > 1 {
		span := issues[len(issues)-1].Sub(issues[0])
		res.IssueSeconds = span.Seconds()
		res.IssuesPerSecond = float64(len(issues)-1) / span.Seconds()
		res.OfShare = res.IssuesPerSecond / (float64(share) / window.Seconds())
		res.OfLimit = res.IssuesPerSecond / (float64(limit) / window.Seconds())
	}
	if res.RunSeconds > 0 {
		res.CallsPerSecond = float64(res.RFCalls) / res.RunSeconds
		res.RunOfShare = res.CallsPerSecond / (float64(share) / window.Seconds())
	}
	res.IntervalMS = float64(window.Milliseconds()) / float64(share-l.Burst)
	for i := range all { // the calls are logged in order
		j := i
		for j < len(all) && all[j].Sub(all[i]) < window {
			j++
		}
		res.MaxCallsInAWindow = max(res.MaxCallsInAWindow, j-i)
	}
	res.RateLimited = max(res.RateLimited, int(sum.RateLimited))
	return res
}
