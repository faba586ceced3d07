package bench

import (
	"context"
	"io"
	"net/http"
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
// each costs one RF call) against the simulator enforcing RF's limit L, with refbridge's share
// taken from the shared token bucket in DynamoDB Local exactly as wiring builds it for the
// default RF_RATE_PER_MINUTE (500 a minute: a token every 122 ms, a burst of 8). The simulator
// enforces RF's 600 a minute as 100 calls per 10-second window, six times stricter than a
// minute's window (the bucket's burst and flow must fit in any 10 s), so a one-minute run
// crosses several of its windows. The ledger is in memory and the simulator answers on
// loopback: the figure is the pacing, not DynamoDB Local's speed. It needs DynamoDB Local.
func BenchmarkSweepPacing(b *testing.B) {
	benchPacing(b, "pacing", size(480, 20), 0)
}

// BenchmarkSweepPacingRFLatency is BenchmarkSweepPacing with every RF call answered
// AssumedRFLatency later, as RF's own answers take: the sweep issues one reward at a time, so
// its pacing falls when a call's latency outlasts the bucket's interval.
func BenchmarkSweepPacingRFLatency(b *testing.B) {
	benchPacing(b, "pacing-rf-latency", size(120, 10), AssumedRFLatency)
}

func benchPacing(b *testing.B, name string, n int, latency time.Duration) {
	for range b.N {
		res := runPacing(b, n, 10*time.Second, 100, latency)
		b.ReportMetric(res.RunOfShare, "of-share")
		b.ReportMetric(float64(res.RateLimited), "429s")
		b.ReportMetric(res.IssuesPerSecond, "issues/s")
		writeResult(b, name, res)
		if res.Issued != n || !res.Complete {
			b.Fatalf("issued %d of %d (complete %v)", res.Issued, n, res.Complete)
		}
	}
}

// slowRoundTripper answers every request latency later.
type slowRoundTripper struct {
	latency time.Duration
	next    http.RoundTripper
}

func (s slowRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	select {
	case <-time.After(s.latency):
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	return s.next.RoundTrip(r)
}

func runPacing(b *testing.B, n int, window time.Duration, limit int, latency time.Duration) PacingResult {
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

	const perMinute = 500               // RF_RATE_PER_MINUTE's default
	l := ratelimit.PerMinute(perMinute) // as wiring builds the bucket
	bucket, err := ratelimit.New(dynamodb.New(ddbtest.Client(b).Options(), countDynamoDB), table, "rf", l)
	if err != nil {
		b.Fatal(err)
	}
	rfOpts := []rf.Option{rf.WithLimiter(bucket)}
	if latency > 0 {
		rfOpts = append(rfOpts, rf.WithHTTPClient(&http.Client{Transport: slowRoundTripper{latency, http.DefaultTransport}}))
	}
	env := map[string]string{"RF_API_URL": sim.URL, "RF_API_TOKEN": sim.Token, "RF_CAMPAIGN_IDS": "1", "REWARD_HOLD_DAYS": "0"}
	deps, err := wiring.Local(context.Background(), func(k string) string { return env[k] }, io.Discard,
		config.Need{RFAPIToken: true}, wiring.WithRFOptions(rfOpts...))
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

	share := float64(perMinute) / 60 // calls a second
	res := PacingResult{DueRewards: n, Window: window.Seconds(), Limit: limit, SharePerMinute: perMinute, Burst: l.Burst,
		RFLatencyMS: float64(latency.Milliseconds()),
		Issued:      sum.Issued, Complete: sum.Complete, RunSeconds: float64(sum.DurationMS) / 1000}
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
		res.OfShare = res.IssuesPerSecond / share
		res.OfLimit = res.IssuesPerSecond / (float64(limit) / window.Seconds())
	}
	if res.RunSeconds > 0 {
		res.CallsPerSecond = float64(res.RFCalls) / res.RunSeconds
		res.RunOfShare = res.CallsPerSecond / share
	}
	res.IntervalMS = float64(l.Per.Milliseconds()) / float64(l.Events-l.Burst)
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
