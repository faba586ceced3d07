package crash

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/idempotency"
	"github.com/refbridge/refbridge/shared/lease"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	"github.com/refbridge/refbridge/shared/ratelimit"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/stripewebhook"
	"github.com/refbridge/refbridge/shared/sweep"
)

// soak reports whether the long variants run (make soak-crash).
func soak() bool { return os.Getenv("REFBRIDGE_SOAK") == "1" }

// rateScenario is a burst of refbridge work against a rate-limited simulator.
type rateScenario struct {
	window    time.Duration // the simulator's fixed window
	simLimit  int           // calls per window per token in the simulator
	bucket    int           // the shared bucket's calls per window: 5/6 of simLimit, as 500 is of 600
	leads     int           // invoice.paid events, one per lead: 2 RF calls each, then 1 issue each
	instances int           // concurrent stripe-webhook instances (plus one reward sweep)
}

// The default scenario scales RF's limit down (40 calls per 2-second window, refbridge's share
// 33) so that five windows' worth of work runs in about fifteen seconds; the soak uses RF's real
// 600 a minute and refbridge's default 500.
var (
	scaledRate = rateScenario{window: 2 * time.Second, simLimit: 40, bucket: 33, leads: 70, instances: 6}
	realRate   = rateScenario{window: time.Minute, simLimit: 600, bucket: 500, leads: 1000, instances: 8}
)

// rateLimit is refbridge's bucket for a share of the window, with the burst PerMinute gives the
// same number per minute (a second's worth, at most 10): RF_RATE_PER_MINUTE's formula, the
// window scaled.
func (s rateScenario) rateLimit() ratelimit.Limit {
	return ratelimit.Limit{Events: s.bucket, Per: s.window, Burst: ratelimit.PerMinute(s.bucket).Burst}
}

// TestRateLimitAcrossInstances: a burst of real refbridge work worth more than five times the
// simulator's per-window limit — invoice.paid events qualifying distinct leads (RF GET /users/{id}
// and PUT /users/qualification each), spread over several concurrent stripe-webhook instances,
// while the reward sweep issues the rewards they earn — goes through instances that each hold
// their own ratelimit.Bucket on one DynamoDB table and bucket name, as separate Lambda instances
// do. RF must answer no 429 at all, and every piece of work must be done exactly once.
func TestRateLimitAcrossInstances(t *testing.T) {
	t.Parallel()
	sc := scaledRate
	if soak() {
		sc = realRate
	}
	_, table := ddbtest.Table(t)
	sim := rfsimtest.New(t, rfsim.WithRatePerMinute(sc.simLimit), rfsim.WithRateWindow(sc.window))
	leads := seedLeads(t, sim, sc.leads)

	th, err := config.ParseThreshold("2000")
	if err != nil {
		t.Fatal(err)
	}
	// instance builds one Lambda instance's parts: its own DynamoDB client, stores, bucket value
	// and RF client, as a cold start does.
	type instance struct {
		rf     *rf.Client
		ledger ledger.Store
		db     *dynamodb.Client
	}
	newInstance := func(fn string) instance {
		idb := ddbtest.Client(t)
		bucket, err := ratelimit.New(idb, table, "rf", sc.rateLimit())
		if err != nil {
			t.Fatal(err)
		}
		client, err := rf.New(sim.URL, sim.Token, rf.WithLimiter(bucket), rf.WithLogger(logtest.Logger(t, fn)))
		if err != nil {
			t.Fatal(err)
		}
		return instance{rf: client, ledger: ledger.NewDynamo(idb, table), db: idb}
	}

	// The events, each delivered once (a 503 goes back in the queue, as Stripe retries).
	queue := make(chan []byte, len(leads))
	var outstanding sync.WaitGroup
	for i, id := range leads {
		queue <- leadInvoice(t, i, id)
		outstanding.Add(1)
	}
	var answered, transient atomic.Int64
	var instances []instance
	var workers sync.WaitGroup
	// The handlers' log is kept too: it says why a delivery failed.
	handlerLogs := &lockedBuffer{}
	log := observe.NewLogger(io.MultiWriter(logtest.Writer(t), handlerLogs), observe.LogOptions{Function: "stripe-webhook", Level: slog.LevelInfo})
	var durMu sync.Mutex
	var durations []time.Duration
	began := time.Now()
	for range sc.instances {
		in := newInstance("stripe-webhook")
		instances = append(instances, in)
		dec := referrals.New(in.ledger, in.rf, referrals.Settings{CampaignIDs: []int64{1}, SignupCampaignID: 1,
			Threshold: th, UnmatchedRetry: 72 * time.Hour}, nil, log)
		invoke := httpx.FunctionURL(&stripewebhook.Handler{Secrets: []string{stripeSecret}, Decisions: dec, Log: log,
			Once: idempotency.New(idempotency.NewDynamo(ddbtest.Client(t), table), idempotency.Config{Expiration: 96 * time.Hour})})
		workers.Add(1)
		go func() {
			defer workers.Done()
			for payload := range queue {
				// stripe-webhook's timeout in template.yaml is 30 seconds.
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				invoked := time.Now()
				resp, err := invoke(ctx, signed(payload))
				cancel()
				durMu.Lock()
				durations = append(durations, time.Since(invoked))
				durMu.Unlock()
				if err != nil || resp.StatusCode != 200 {
					transient.Add(1)
					t.Logf("delivery answered %d %s (%v); delivered again", resp.StatusCode, resp.Body, err)
					queue <- payload
					continue
				}
				answered.Add(1)
				outstanding.Done()
			}
		}()
	}
	go func() {
		outstanding.Wait()
		close(queue)
	}()

	// The reward sweep (reserved concurrency 1: one instance) runs meanwhile, and once more after
	// the last delivery, until nothing is due.
	sw := newInstance("reward-sweep")
	instances = append(instances, sw)
	sweeper := &sweep.Sweeper{Ledger: sw.ledger, RF: sw.rf, Lease: lease.NewDynamo(sw.db, table),
		Rules: sweep.Rules{}, Log: logtest.Logger(t, "reward-sweep")}
	webhooksDone := make(chan struct{})
	go func() {
		workers.Wait()
		close(webhooksDone)
	}()
	// The runs are counted, not timed: after the last delivery they go on until a complete run
	// finds nothing to do (an issue whose answer was lost is confirmed by the next run's
	// reconciliation, not counted in its Issued), a generous number of runs at most.
	const maxRuns = 500
	var runs, issued, reconciled, sweepFailed int
	for finished := false; ; {
		select {
		case <-webhooksDone:
			finished = true
		default:
		}
		if runs == maxRuns {
			t.Fatalf("%d sweep runs, and the last still found work (%d issued, %d reconciled)", runs, issued, reconciled)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		sum, err := sweeper.Run(ctx)
		cancel()
		if err != nil {
			t.Fatalf("sweep run %d: %v (%+v)", runs+1, err, sum)
		}
		runs++
		issued, reconciled = issued+sum.Issued, reconciled+sum.Reconciled
		sweepFailed += sum.Failed
		if finished && sum.Complete && sum.Listed+sum.Issued+sum.Reconciled == 0 && len(sum.Waiting) == 0 {
			break
		}
		if !finished {
			select {
			case <-webhooksDone:
			case <-time.After(sc.window):
			}
		}
	}
	elapsed := time.Since(began)

	// Nothing refused by RF, by any instance.
	c := sim.Server.Counters()
	refused := 0
	for _, n := range c.RateLimited {
		refused += n
	}
	var clientRefused int64
	for _, in := range instances {
		clientRefused += in.rf.Stats().RateLimited
	}
	calls := sim.Server.Calls()
	if refused != 0 || clientRefused != 0 || c.IPBlocks != 0 {
		t.Errorf("RF answered 429 %d times (the clients saw %d), %d IP blocks", refused, clientRefused, c.IPBlocks)
	}
	// A delivery may fail only the designed way: its invocation would have had to wait for a
	// token past its deadline (ratelimit.ErrDeadline), answered 503, and Stripe delivers it
	// again. Anything else is a failure of the test.
	starved := 0
	for _, line := range strings.Split(handlerLogs.String(), "\n") {
		if !strings.Contains(line, `"msg":"stripe event failed`) {
			continue
		}
		if !strings.Contains(line, "no token before the deadline") {
			t.Errorf("a delivery failed: %s", line)
		}
		starved++
	}
	if int64(starved) != transient.Load() {
		t.Errorf("%d deliveries answered other than 200, %d of them for want of a token", transient.Load(), starved)
	}
	if len(calls) < 5*sc.simLimit {
		t.Errorf("%d RF calls: less than five windows' worth (%d)", len(calls), 5*sc.simLimit)
	}
	// All the work done, each effect once.
	puts := applied(&world{sim: sim}, 0, "PUT", routeQualify, nil)
	perLead := map[int]int{}
	for _, call := range calls {
		if call.Method == "PUT" && call.Path == routeQualify && call.Status == 200 {
			var b struct{ ID int }
			_ = json.Unmarshal([]byte(call.Body), &b)
			perLead[b.ID]++
		}
	}
	for _, id := range leads {
		u, ok := sim.Server.User(id)
		if !ok || u.QualifiedAt == nil || perLead[id] != 1 {
			t.Fatalf("lead %d: qualified in RF %v, %d qualification calls", id, ok && u.QualifiedAt != nil, perLead[id])
		}
		if q, err := sw.ledger.StandingQualification(context.Background(), int64(id)); err != nil || q.Seq != 1 {
			t.Fatalf("lead %d in the ledger: %+v %v", id, q, err)
		}
	}
	if due := sim.Server.DueRewards("amount"); len(due) != 0 {
		t.Fatalf("%d rewards still due", len(due))
	}
	// What RF and the ledger show, not the sum of the runs' Issued.
	issues := applied(&world{sim: sim}, 0, "POST", routeIssuePrefix, nil)
	if len(issues) != len(leads) || sweepFailed != 0 {
		t.Fatalf("%d rewards issued in RF (the sweep counted %d issued and %d reconciled, %d failed), want %d",
			len(issues), issued, reconciled, sweepFailed, len(leads))
	}
	for id, n := range issues {
		if n != 1 {
			t.Fatalf("reward %s issued %d times", id, n)
		}
		rid, err := strconv.ParseInt(id, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if rec, err := sw.ledger.DueRewardRecord(context.Background(), rid); err != nil || rec.State != ledger.RewardIssued {
			t.Fatalf("reward %s in the ledger: %+v %v", id, rec, err)
		}
	}
	if pending, err := sw.ledger.PendingIntents(context.Background(), ledger.IntentIssue); err != nil || len(pending) != 0 {
		t.Fatalf("%d issue intents still pending (%v)", len(pending), err)
	}

	// The figures.
	times := make([]time.Time, len(calls))
	for i, call := range calls {
		times[i] = call.Time
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	span := times[len(times)-1].Sub(times[0])
	peak := 0
	for i, j := 0, 0; j < len(times); j++ {
		for times[j].Sub(times[i]) >= sc.window {
			i++
		}
		peak = max(peak, j-i+1)
	}
	perWindow := float64(len(calls)) / span.Seconds() * sc.window.Seconds()
	slices.Sort(durations)
	shares := make([]int64, 0, sc.instances)
	for _, in := range instances[:sc.instances] {
		shares = append(shares, in.rf.Stats().Requests)
	}
	slices.Sort(shares)
	t.Logf("stripe-webhook invocations: %d, p50 %s, p99 %s, max %s; RF calls per stripe-webhook instance: %v (the sweep: %d)",
		len(durations), durations[len(durations)/2].Round(time.Millisecond), durations[len(durations)*99/100].Round(time.Millisecond),
		durations[len(durations)-1].Round(time.Millisecond), shares, sw.rf.Stats().Requests)
	t.Logf("%d instances (%d stripe-webhook, 1 reward-sweep) sharing one bucket of %d per %s against RF's %d per %s: "+
		"%d RF calls (%.1f× the per-window limit: %d qualifications, %d lead reads, %d issues, %d sweep reads) in %s; "+
		"%.1f calls per window = %.0f%% of RF's limit (%.0f%% of the bucket's); busiest sliding window %d calls (%.0f%% of the limit); "+
		"429s %d, IP blocks %d, redelivered for want of a token before the invocation's deadline %d; sweep runs %d",
		sc.instances+1, sc.instances, sc.bucket, sc.window, sc.simLimit, sc.window,
		len(calls), float64(len(calls))/float64(sc.simLimit), puts[""], countGets(calls), len(issues), len(calls)-2*len(leads)-len(issues), elapsed.Round(100*time.Millisecond),
		perWindow, 100*perWindow/float64(sc.simLimit), 100*perWindow/float64(sc.bucket), peak, 100*float64(peak)/float64(sc.simLimit),
		refused, c.IPBlocks, transient.Load(), runs)
}

// lockedBuffer collects log lines from concurrent instances.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func countGets(calls []rfsim.Call) int {
	n := 0
	for _, c := range calls {
		if c.Method == "GET" && len(c.Path) > len("/api/v2/users/") && c.Path[:len("/api/v2/users/")] == "/api/v2/users/" {
			n++
		}
	}
	return n
}

// seedLeads seeds the demo campaign with only its referrer reward ($25 on qualification) and n
// pending leads spread over ten referrers; it returns the leads' ids.
func seedLeads(t *testing.T, sim *rfsimtest.Sim, n int) []int {
	t.Helper()
	d := rfsimtest.DemoSeed(t)
	d.RatePerMinute = 0 // the simulator's configured limit
	d.Campaigns[0].Rewards = d.Campaigns[0].Rewards[:1]
	d.DueRewards, d.IssuedRewards, d.Users = nil, nil, nil
	for r := 1; r <= 10; r++ {
		d.Users = append(d.Users, rfsim.SeedUser{ID: r, CampaignID: 1, FirstName: "Referrer", Email: fmt.Sprintf("referrer%d@example.com", r)})
	}
	ids := make([]int, n)
	for i := range n {
		ids[i] = 1000 + i
		ref := 1 + i%10
		d.Users = append(d.Users, rfsim.SeedUser{ID: ids[i], CampaignID: 1, ReferrerID: &ref, FirstName: "Lead",
			Email: fmt.Sprintf("lead%d@example.com", i)})
	}
	sim.MustSeed(t, d)
	return ids
}

// leadInvoice is Erin's invoice.paid fixture made the first paid invoice of lead id, naming the
// lead by rf_user_id in its metadata (the first matching rule: the lead is read from RF).
func leadInvoice(t *testing.T, i, id int) []byte {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(fixture(t, evInvoicePaid), &ev); err != nil {
		t.Fatal(err)
	}
	n := strconv.Itoa(i)
	ev["id"] = "evt_rate_" + n
	obj := ev["data"].(map[string]any)["object"].(map[string]any)
	obj["id"], obj["customer"], obj["charge"] = "in_rate_"+n, "cus_rate_"+n, "ch_rate_"+n
	obj["customer_email"] = fmt.Sprintf("lead%d@example.com", i)
	obj["metadata"] = map[string]any{"rf_user_id": strconv.Itoa(id)}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
