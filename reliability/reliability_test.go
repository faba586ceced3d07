package reliability

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/sweep"
)

// soak reports whether the long variants run (make soak sets REFBRIDGE_SOAK=1).
func soak() bool { return os.Getenv("REFBRIDGE_SOAK") == "1" }

// parallel runs the default variants side by side (most of a fault run's time is spent
// waiting); the soak's, which each hold tens of thousands of items in DynamoDB Local's heap, one
// after the other.
func parallel(t *testing.T) {
	if !soak() {
		t.Parallel()
	}
}

// rounds runs r once, or in the soak once per seed for REFBRIDGE_SOAK_ROUNDS seeds (one when
// REFBRIDGE_RELIABILITY_SEED names the seed to replay).
func (r run) rounds(t *testing.T, salt uint64) {
	t.Helper()
	n := 1
	if v := os.Getenv("REFBRIDGE_SOAK_ROUNDS"); soak() && v != "" && os.Getenv("REFBRIDGE_RELIABILITY_SEED") == "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("REFBRIDGE_SOAK_ROUNDS=%q: want a number of seeds", v)
		}
	}
	if n == 1 {
		r.exec(t, seedFor(t, salt))
		return
	}
	for i := range n {
		t.Run(fmt.Sprintf("round-%d", i+1), func(t *testing.T) { r.exec(t, seedFor(t, salt+uint64(1000*i))) })
	}
}

// faults are the failures a run injects.
type faults struct {
	rf  float64 // share of RF API calls failed, spread evenly over rfFaultKinds
	ddb float64 // share of DynamoDB requests failed, spread evenly over the proxy's kinds
}

// run is one reliability run: a workload delivered to the system, settled and checked.
type run struct {
	name   string
	size   size
	opts   options
	faults faults
}

// TestExactlyOnceUnderConcurrency: 1,000+ events (10,000 in the soak), 10% delivered twice, by
// 32 concurrent senders, every non-2xx redelivered; every qualification, unqualification,
// issue and cancel happens exactly once, and the end state is the oracle's.
func TestExactlyOnceUnderConcurrency(t *testing.T) {
	parallel(t)
	// The webhooks' Lambda timeout (template.yaml) is each delivery's deadline.
	r := run{name: "concurrency", size: size{Events: 1000, DupRate: 0.10},
		opts: options{senders: 32, reqTimeout: 30 * time.Second}}
	if soak() {
		r.size.Events = 10000
	}
	if v := os.Getenv("REFBRIDGE_RELIABILITY_SWEEP_EVERY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		r.opts.sweepEvery = d
	}
	r.rounds(t, 1)
}

func (r run) exec(t *testing.T, seed uint64) {
	t.Helper()
	if v := os.Getenv("REFBRIDGE_RELIABILITY_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("REFBRIDGE_RELIABILITY_EVENTS=%q: want a number of events", v)
		}
		r.size.Events = n
	}
	t.Logf("%s: seed %d (REFBRIDGE_RELIABILITY_SEED=%d replays this workload)", r.name, seed, seed)
	start := time.Now()
	w := newWorkload(t, seed, r.size)
	exp := oracle(w)
	s := newSystem(t, w, r.opts)

	// refbridge is installed: its first sweep records what is already due (the rewards of
	// friends who qualified before it), and the traffic starts two days later. (The same day,
	// a qualification learned from RF's webhook, which RF dates to the day only, could have
	// been made before that first sweep, and one of those rewards could take its slot: the
	// inference the README's Limits describe, not what this suite is about.)
	if _, err := s.deps.Sweep().Handle(contextFor(t, time.Minute), sweep.Request{}); err != nil {
		t.Fatalf("first sweep: %v", err)
	}
	s.clock.advance(48 * time.Hour)

	s.injectRF(r.faults.rf)
	s.ddb.setRate(r.faults.ddb)
	ds := s.deliver(w)
	ss := s.settle()
	rfFired := s.rfFaultsFired()
	out := s.check(w, exp, r.opts.sweepEvery > 0)
	t.Log(report(r, seed, w, exp, ds, ss, out, rfFired, s, time.Since(start)))
	if n := len(out.Mismatches); n > 0 {
		shown := out.Mismatches[:min(n, 60)]
		t.Errorf("%d mismatch(es) with the oracle (seed %d):\n  %s", n, seed, strings.Join(shown, "\n  "))
		t.Logf("what the ledger and RF hold for them:\n%s", s.explain(w, exp, out))
	}
}

func contextFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// rfFaultKinds are the RF failures injected, each on an equal share of the calls: refusals
// before processing (429 with Retry-After, 500, 503, a reset connection), answers lost after
// processing (500, reset), and answers slower than the handler's deadline.
func (s *system) rfFaultKinds() []rfsim.Fault {
	return []rfsim.Fault{
		{Status: http.StatusTooManyRequests},
		{Status: http.StatusInternalServerError},
		{Status: http.StatusServiceUnavailable},
		{Reset: true},
		{Status: http.StatusInternalServerError, When: rfsim.WhenAfter},
		{Reset: true, When: rfsim.WhenAfter},
		{Latency: s.opts.reqTimeout + 2*time.Second},
	}
}

// injectRF adds the RF faults so that each kind strikes rate/kinds of all calls: the simulator
// tries faults in order, so the i-th fault's probability is raised by what the earlier ones
// took.
func (s *system) injectRF(rate float64) {
	if rate <= 0 {
		return
	}
	kinds := s.rfFaultKinds()
	q := rate / float64(len(kinds))
	for i, f := range kinds {
		f.Match = "/api/v2/*"
		f.Probability = q / (1 - float64(i)*q)
		s.addFault(f)
	}
}

// rfFaultsFired is how often each RF fault struck, by kind (after liftFaults).
func (s *system) rfFaultsFired() map[string]int {
	out := map[string]int{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		out[faultName(f)] += f.Fired
	}
	return out
}

func faultName(f rfsim.Fault) string {
	switch {
	case f.Latency > 0 && f.Status == 0 && !f.Reset:
		return fmt.Sprintf("slower than the deadline (%s)", f.Latency)
	case f.Reset && f.When == rfsim.WhenAfter:
		return "reset after processing"
	case f.Reset:
		return "reset"
	case f.When == rfsim.WhenAfter:
		return fmt.Sprintf("%d after processing", f.Status)
	}
	return fmt.Sprintf("%d", f.Status)
}

// report renders a run's figures.
func report(r run, seed uint64, w *Workload, exp *expected, ds deliveryStats, ss settleStats, out outcome,
	rfFired map[string]int, s *system, took time.Duration) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("")
	p("run %s, seed %d, %d senders, webhook deadline %s, sweep during the stream: %v", r.name, seed, r.opts.senders, r.opts.reqTimeout, r.opts.sweepEvery > 0)
	kinds := map[string]int{}
	for _, c := range w.Customers {
		kinds[c.Kind]++
	}
	p("  workload: %d referrers, %d leads; %d customers (%d referred, %d strangers, %d referrers paying)",
		len(w.Referrers), len(w.Leads), len(w.Customers), kinds["referred"], kinds["stranger"], kinds["referrer"])
	var types []string
	for _, k := range sortedKeys(ds.ByType) {
		types = append(types, fmt.Sprintf("%s %d", k, ds.ByType[k]))
	}
	p("  events: %d (%s)", ds.Events, strings.Join(types, ", "))
	var statuses []string
	for _, k := range sortedKeys(ds.ByStatus) {
		statuses = append(statuses, fmt.Sprintf("%d×%d", k, ds.ByStatus[k]))
	}
	p("  deliveries: %d (%d duplicates), attempts %d (%d while faults were injected), redeliveries after a non-2xx %d (max %d attempts for one delivery); answers %s; %s",
		ds.Deliveries, ds.Duplicates, ds.Attempts, ds.UnderFaults, ds.Retries, ds.MaxAttempts, strings.Join(statuses, " "), ds.Duration.Round(time.Millisecond))
	p("  sweeps: %d during the stream; %d to settle (%d with faults, %d stopped for time at a checkpoint, %d ended in an error), issued %d, canceled %d, reconciled %d; %s",
		ds.Sweeps, ss.Runs, ss.FaultyRuns, ss.Incomplete, ss.RunErrors, ss.Issued, ss.Canceled, ss.Reconciled, ss.Duration.Round(time.Millisecond))
	var answers []string
	for _, k := range sortedKeys(out.RFWebhookAnswers) {
		answers = append(answers, fmt.Sprintf("%s ×%d", k, out.RFWebhookAnswers[k]))
	}
	p("  RF's own webhooks (sent by the simulator): %d attempts, %d not answered 2xx (%s)", out.RFWebhookAttempts, out.RFWebhookFailures, strings.Join(answers, ", "))
	var fired []string
	total := 0
	for _, k := range sortedKeys(rfFired) {
		fired = append(fired, fmt.Sprintf("%s ×%d", k, rfFired[k]))
		total += rfFired[k]
	}
	if total > 0 {
		p("  RF faults injected: %d (%s)", total, strings.Join(fired, ", "))
	}
	var ddb []string
	dtotal := int64(0)
	for k := range ddbKinds {
		n := s.ddb.injected[k].Load()
		dtotal += n
		if n > 0 {
			ddb = append(ddb, fmt.Sprintf("%s ×%d", ddbKindNames[k], n))
		}
	}
	p("  DynamoDB requests: %d; faults injected: %d %s", s.ddb.requests.Load(), dtotal, strings.Join(ddb, ", "))
	p("  RF calls: %d, 429s seen by the simulator: %d, calls struck by a fault: %d", out.RFCalls, out.RF429s, out.RFFaulted)
	p("  oracle: %d qualifications, %d unqualifications, %d rewards to issue, %d to cancel; %d leads end qualified",
		exp.Qualifications, exp.Unqualifications, out.ExpectedIssued, out.ExpectedCxl, out.LeadsQualified)
	p("  RF: %d qualifications, %d unqualifications (%d repeated PUTs setting what RF had), %d rewards issued, %d canceled; issue calls %d, cancel calls %d",
		out.PutQualify, out.PutUnqualify, out.PutRepeats, out.Issued, out.Canceled, out.IssueCalls, out.CancelCalls)
	if len(out.OrphanIntents) > 0 {
		p("  qualify intents left pending, their qualification recorded by RF's webhook: %d %v", len(out.OrphanIntents), out.OrphanIntents[:min(5, len(out.OrphanIntents))])
	}
	p("  mismatches: %d; the run took %s", len(out.Mismatches), took.Round(time.Millisecond))
	return b.String()
}

// TestRecoversFromFaults: the same kind of stream while RF fails 10% and 50% of its calls (429
// with Retry-After, 500, 503, resets, answers lost after processing, answers slower than the
// webhooks' deadline) and DynamoDB 10% and 50% of its requests (500, throttling, answers lost
// after the write). The senders redeliver until 2xx while the faults continue (at 50%,
// DynamoDB's stop after a while: nothing gets through them); the first settling sweep runs with
// the faults too, with a short timeout; then they are lifted, the sweep finishes, and the end
// state must be the oracle's: nothing lost, nothing doubled. The soak runs each kind of fault
// on its own too, on bigger streams.
func TestRecoversFromFaults(t *testing.T) {
	parallel(t)
	events, sweeps, window := 120, 1, 6*time.Second
	if soak() {
		events, sweeps, window = 3000, 3, 30*time.Second
	}
	base := options{senders: 32, reqTimeout: 3 * time.Second, faultySweeps: sweeps, faultySweepTimeout: 6 * time.Second}
	runs := []run{
		{name: "rf+dynamodb-10%", faults: faults{rf: 0.10, ddb: 0.10}},
		{name: "rf+dynamodb-50%", faults: faults{rf: 0.50, ddb: 0.50}, opts: options{ddbFaultsFor: window}},
	}
	if soak() {
		runs = append(runs,
			run{name: "rf-10%", faults: faults{rf: 0.10}},
			run{name: "rf-50%", faults: faults{rf: 0.50}},
			run{name: "dynamodb-10%", faults: faults{ddb: 0.10}},
			run{name: "dynamodb-50%", faults: faults{ddb: 0.50}, opts: options{ddbFaultsFor: window}},
		)
	}
	for i, r := range runs {
		window := r.opts.ddbFaultsFor
		r.size, r.opts = size{Events: events, DupRate: 0.10}, base
		r.opts.ddbFaultsFor = window
		t.Run(r.name, func(t *testing.T) {
			parallel(t)
			r.rounds(t, uint64(10+i))
		})
	}
}
