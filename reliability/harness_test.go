package reliability

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/stripe/stripe-go/v79/webhook"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/idempotency"
	"github.com/refbridge/refbridge/shared/lease"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/sweep"
	"github.com/refbridge/refbridge/shared/wiring"
)

// The test secrets are logtest's, so the suite's log scan would catch one in a log line.
const (
	stripeSecret = "whsec_refbridge_test"
	rfSecret     = "rf-shared-secret"
	holdDays     = 14
)

// clock is the decisions' and the simulator's calendar: real time, moved forward by advance.
// Signatures, deadlines, idempotency and leases keep the real clock, as in production.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// options are a run's settings.
type options struct {
	senders    int           // concurrent senders (Stripe's and RF's deliveries)
	reqTimeout time.Duration // each webhook invocation's deadline, as Lambda's timeout gives one
	// sweepEvery runs the sweep on a schedule while the stream is delivered (0: only after it).
	// The hold keeps it from issuing then: it records, matches and cancels.
	sweepEvery time.Duration
	// faultySweeps is how many of the settling sweeps run before the faults are lifted; each
	// has faultySweepTimeout (a short Lambda timeout: the run stops for time and resumes from
	// its checkpoint in the next).
	faultySweeps       int
	faultySweepTimeout time.Duration
	// ddbFaultsFor lifts the DynamoDB faults this long after the stream starts (0: they last as
	// long as RF's): at 50%, nearly every event needs more than a dozen requests in a row to
	// succeed, and nothing gets through until the failures stop.
	ddbFaultsFor time.Duration
}

// system is refbridge under test: the real handlers, built by shared/wiring on a fresh DynamoDB
// Local table (through a fault-injecting proxy) and the RF simulator, served over HTTP.
type system struct {
	t      *testing.T
	opts   options
	clock  *clock
	sim    *rfsimtest.Sim
	deps   wiring.Deps
	ddb    *ddbFaults
	server *httptest.Server
	table  string
	calls  *callLog

	mu     sync.Mutex
	faults map[int]rfsim.Fault // every RF fault added, by id (the call log names them)
}

func newSystem(t *testing.T, w *Workload, opts options) *system {
	t.Helper()
	ctx := t.Context()
	s := &system{t: t, opts: opts, clock: &clock{}, faults: map[int]rfsim.Fault{}}
	s.sim = rfsimtest.New(t, rfsim.WithSeed(int64(w.Seed)), rfsim.WithClock(s.clock.Now))
	s.sim.MustSeed(t, w.SeedData)
	w.fillCodes(t, s.sim.Server.Users())

	var err error
	_, s.table = ddbtest.Table(t)
	s.ddb = newDDBFaults(w.Seed)
	db := s.dynamoClient(os.Getenv(ddbtest.EndpointEnv))

	env := map[string]string{
		"RF_API_URL": s.sim.URL, "RF_API_TOKEN": s.sim.Token, "RF_CAMPAIGN_IDS": "1",
		"STRIPE_WEBHOOK_SECRETS": stripeSecret, "RF_WEBHOOK_SECRET": rfSecret, "RF_WEBHOOK_FIELDS": "code=referral_code",
		"QUALIFY_MIN_AMOUNT": strconv.Itoa(threshold), "REWARD_HOLD_DAYS": strconv.Itoa(holdDays), "UNMATCHED_RETRY_DAYS": "3",
	}
	d, err := wiring.Local(ctx, func(k string) string { return env[k] }, logtest.Writer(t), config.Need{RFAPIToken: true},
		wiring.WithClock(s.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	// What wiring builds with STATE_TABLE set, on a DynamoDB client whose HTTP transport can
	// fail requests (the SDK's own endpoint variable would have to be set process-wide, which
	// keeps tests from running in parallel): the ledger on the decisions' clock, idempotency
	// and the lease on the table.
	d.Ledger = ledger.NewDynamo(db, s.table, ledger.WithClock(s.clock.Now))
	d.Idempotency = idempotency.NewDynamo(db, s.table)
	d.Lease = lease.NewDynamo(db, s.table)
	// And the RF client: RF_RATE_PER_MINUTE tops out at RF's 600/min, which would make a
	// thousand events take minutes. The client keeps its production retry policy (and the
	// Retry-After of 429s), with an in-process limit the simulator is told to allow instead of
	// the shared DynamoDB bucket (whose limit is the rate-limit suite's subject).
	if d.RF, err = rf.New(d.Config.RFAPIURL, d.Config.RFAPIToken, rf.WithLogger(d.Log), rf.WithRatePerMinute(600_000)); err != nil {
		t.Fatal(err)
	}
	c := d.Config
	d.Decisions = referrals.New(d.Ledger, d.RF, referrals.Settings{CampaignIDs: c.RFCampaignIDs, Threshold: c.QualifyMin,
		Window: c.QualifyWindow, UnmatchedRetry: c.UnmatchedRetry, DryRun: c.DryRun, SignupCampaignID: c.SignupCampaignID,
		ReferralMetadataKey: c.ReferralMetadataKey, SignupNotify: c.SignupNotify}, s.clock.Now, d.Log)
	s.deps = d

	// The local server's routes, each invocation with a deadline as Lambda gives one (the
	// local server's requests have none).
	mux := http.NewServeMux()
	mux.Handle("POST /stripe/webhook", s.withDeadline(httpx.HTTP(d.StripeWebhook())))
	mux.Handle("POST /rf/webhook/{kind}", s.withDeadline(httpx.HTTP(d.RFWebhook())))
	s.server = httptest.NewServer(mux)
	t.Cleanup(s.server.Close)

	// RF's own webhooks, as the README has the admin configure them: RF sends them when
	// refbridge qualifies a lead or issues a reward, twice each (RF may), retried after a
	// non-2xx as the simulator does.
	retries := 3
	for _, h := range []struct {
		event, kind string
		duplicates  int
	}{{rfsim.EventLeadQualified, "lead-qualified", 1}, {rfsim.EventRewardIssued, "reward-issued", 0}} {
		if err := s.sim.Server.AddWebhook(rfsim.Webhook{Event: h.event, URL: s.server.URL + "/rf/webhook/" + h.kind,
			Fields: map[string]string{"code": "referral_code"}, Headers: map[string]string{"X-Webhook-Secret": rfSecret},
			Duplicates: h.duplicates, Retries: &retries}); err != nil {
			t.Fatal(err)
		}
	}
	s.calls = newCallLog(s.sim.Server)
	t.Cleanup(s.calls.stop)
	return s
}

func (s *system) withDeadline(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.opts.reqTimeout)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// addFault injects an RF fault and remembers it, so the call log's fault ids can be read.
func (s *system) addFault(f rfsim.Fault) {
	s.t.Helper()
	got, err := s.sim.Server.AddFault(f)
	if err != nil {
		s.t.Fatalf("fault %+v: %v", f, err)
	}
	s.mu.Lock()
	s.faults[got.ID] = got
	s.mu.Unlock()
}

// liftFaults stops every injected failure, RF's and DynamoDB's.
func (s *system) liftFaults() {
	s.liftRF()
	s.ddb.setRate(0)
}

func (s *system) liftRF() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.sim.Server.Faults() {
		s.faults[f.ID] = f // with its final Fired count
	}
	s.sim.Server.ClearFaults()
}

// faulty reports whether a failure is being injected now.
func (s *system) faulty() bool { return len(s.sim.Server.Faults()) > 0 || s.ddb.getRate() > 0 }

// ---- delivery ----

// delivery is one event's delivery (the original, or the duplicate), attempted until answered
// 2xx.
type delivery struct {
	ev        *Event
	dup       bool
	attempts  int
	status    int // the last answer
	notBefore time.Time
	taken     bool
}

// scheduler hands deliveries to the senders in the stream's shuffled order, holding back a
// customer's next phase until every event of the current one was answered 2xx, and putting
// failed deliveries back after a backoff.
type scheduler struct {
	mu          sync.Mutex
	queue       []*delivery
	head        int
	retry       []*delivery
	acked       map[*Event]bool
	left        map[*Customer][]int // events of each phase not yet answered 2xx
	released    map[*Customer]int   // phases up to this one may be delivered
	outstanding int
}

func newScheduler(w *Workload, rng *rand.Rand) *scheduler {
	s := &scheduler{acked: map[*Event]bool{}, left: map[*Customer][]int{}, released: map[*Customer]int{}}
	for _, c := range w.Customers {
		s.left[c] = make([]int, c.Phases)
	}
	for _, e := range w.Events {
		s.queue = append(s.queue, &delivery{ev: e})
		if w.Dups[e] {
			s.queue = append(s.queue, &delivery{ev: e, dup: true})
		}
		if e.Phase >= 0 {
			s.left[e.Customer][e.Phase]++
		}
	}
	rng.Shuffle(len(s.queue), func(i, j int) { s.queue[i], s.queue[j] = s.queue[j], s.queue[i] })
	s.outstanding = len(s.queue)
	return s
}

func (s *scheduler) ready(e *Event) bool {
	return e.Phase < 0 || s.released[e.Customer] >= e.Phase
}

// next returns the next delivery to attempt, waiting while none is ready; nil when all are done.
func (s *scheduler) next(ctx context.Context) *delivery {
	for {
		s.mu.Lock()
		if s.outstanding == 0 {
			s.mu.Unlock()
			return nil
		}
		now := time.Now()
		for i, d := range s.retry {
			if !now.Before(d.notBefore) && s.ready(d.ev) {
				s.retry = append(s.retry[:i], s.retry[i+1:]...)
				s.mu.Unlock()
				return d
			}
		}
		for s.head < len(s.queue) && s.queue[s.head].taken {
			s.head++
		}
		for i := s.head; i < len(s.queue); i++ {
			if d := s.queue[i]; !d.taken && s.ready(d.ev) {
				d.taken = true
				s.mu.Unlock()
				return d
			}
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(3 * time.Millisecond):
		}
	}
}

// done records an answer: 2xx finishes the delivery (and may release the customer's next
// phase); anything else puts it back, like Stripe's retries, after a short backoff.
func (s *scheduler) done(d *delivery, ok bool, rng *rand.Rand) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok {
		backoff := min(time.Duration(1<<min(d.attempts, 8))*5*time.Millisecond, time.Second)
		d.notBefore = time.Now().Add(backoff/2 + time.Duration(rng.Int64N(int64(backoff/2)+1)))
		s.retry = append(s.retry, d)
		return
	}
	s.outstanding--
	e := d.ev
	if s.acked[e] {
		return
	}
	s.acked[e] = true
	if e.Phase < 0 {
		return
	}
	c := e.Customer
	s.left[c][e.Phase]--
	for s.released[c] < len(s.left[c]) && s.left[c][s.released[c]] == 0 {
		s.released[c]++
	}
}

// pending describes up to n deliveries not answered 2xx yet.
func (s *scheduler) pending(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, d := range append(append([]*delivery{}, s.retry...), s.queue...) {
		if len(out) == n {
			break
		}
		if d.status >= 200 && d.status < 300 {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s (customer %s, phase %d, released %d): %d attempt(s), last answer %d",
			d.ev.Type, d.ev.ID, custID(d.ev), d.ev.Phase, s.released[d.ev.Customer], d.attempts, d.status))
	}
	return out
}

// deliveryStats are the senders' figures.
type deliveryStats struct {
	Events, Duplicates, Deliveries, Attempts int
	Retries, MaxAttempts                     int
	UnderFaults                              int // attempts made while faults were injected
	ByStatus                                 map[int]int
	ByType                                   map[string]int
	Sweeps                                   int // sweeps run during the stream
	Duration                                 time.Duration
}

// deliver sends the whole stream with opts.senders concurrent senders, every delivery retried
// until 2xx. With opts.sweepEvery, the sweep runs meanwhile.
func (s *system) deliver(w *Workload) deliveryStats {
	t := s.t
	t.Helper()
	limit := 8 * time.Minute
	if soak() {
		limit = 45 * time.Minute
	}
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	rng := rand.New(rand.NewPCG(w.Seed, 7))
	sch := newScheduler(w, rng)
	st := deliveryStats{Events: len(w.Events), Duplicates: len(w.Dups), Deliveries: len(sch.queue),
		ByStatus: map[int]int{}, ByType: map[string]int{}}
	for _, e := range w.Events {
		st.ByType[e.Type]++
	}
	hc := &http.Client{Timeout: s.opts.reqTimeout + 30*time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 2 * s.opts.senders, MaxConnsPerHost: 4 * s.opts.senders}}
	defer hc.CloseIdleConnections()
	var mu sync.Mutex
	var stuck []string
	start := time.Now()
	if s.opts.ddbFaultsFor > 0 {
		lift := time.AfterFunc(s.opts.ddbFaultsFor, func() { s.ddb.setRate(0) })
		defer lift.Stop()
	}
	sweepCtx, stopSweeps := context.WithCancel(ctx)
	sweepsDone := make(chan int)
	go func() { sweepsDone <- s.sweepOnSchedule(sweepCtx) }()
	var wg sync.WaitGroup
	for i := range s.opts.senders {
		srng := rand.New(rand.NewPCG(w.Seed, uint64(100+i)))
		wg.Go(func() {
			for {
				d := sch.next(ctx)
				if d == nil {
					return
				}
				d.attempts++
				faulty := s.faulty()
				status := s.send(ctx, hc, d.ev)
				d.status = status
				mu.Lock()
				st.Attempts++
				if faulty {
					st.UnderFaults++
				}
				st.ByStatus[status]++
				if d.attempts > 1 {
					st.Retries++
				}
				st.MaxAttempts = max(st.MaxAttempts, d.attempts)
				if d.attempts == 200 {
					stuck = append(stuck, fmt.Sprintf("%s %s (customer %s): %d attempts, last status %d", d.ev.Type, d.ev.ID, custID(d.ev), d.attempts, status))
				}
				mu.Unlock()
				sch.done(d, status >= 200 && status < 300, srng)
			}
		})
	}
	wg.Wait()
	stopSweeps()
	st.Sweeps = <-sweepsDone
	st.Duration = time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("the stream was not delivered in %s: %d deliveries outstanding, e.g. %s", limit, sch.outstanding, strings.Join(sch.pending(10), "; "))
	}
	if len(stuck) > 0 {
		t.Errorf("deliveries that needed 200+ attempts: %v", stuck)
	}
	return st
}

func custID(e *Event) string {
	if e.Customer == nil {
		return "-"
	}
	return e.Customer.ID
}

// send makes one delivery attempt, as its sender would: Stripe signs every attempt afresh.
func (s *system) send(ctx context.Context, hc *http.Client, e *Event) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.server.URL+e.Path, bytes.NewReader(e.Body))
	if err != nil {
		s.t.Errorf("request: %v", err)
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	if strings.HasPrefix(e.Path, "/stripe/") {
		sig := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: e.Body, Secret: stripeSecret, Timestamp: time.Now()})
		req.Header.Set("Stripe-Signature", sig.Header)
	} else {
		req.Header.Set("X-Webhook-Secret", rfSecret)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// sweepOnSchedule runs the sweep every opts.sweepEvery until ctx ends, and says how many ran.
func (s *system) sweepOnSchedule(ctx context.Context) int {
	if s.opts.sweepEvery <= 0 {
		return 0
	}
	h := s.deps.Sweep()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n
		case <-time.After(s.opts.sweepEvery):
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		_, _ = h.Handle(rctx, sweep.Request{}) // failures are the next run's: as on the schedule
		cancel()
		n++
	}
}

// ---- settling: the holds pass, the sweep runs until everything due is settled ----

type settleStats struct {
	Runs, FaultyRuns   int
	Issued, Canceled   int
	Reconciled, Failed int
	RunErrors          int
	Incomplete         int // runs that stopped for time (or repeated failures) at a checkpoint
	Converged          bool
	Duration           time.Duration
}

// settle lets the holds pass (both clocks move past REWARD_HOLD_DAYS), then runs the sweep
// until a run completes with nothing left due in RF and no issue or cancel unconfirmed, moving
// the clock 20 minutes between runs (an unconfirmed attempt is taken over once stale). The
// first opts.faultySweeps runs keep the injected faults; then they are lifted.
func (s *system) settle() settleStats {
	t := s.t
	t.Helper()
	start := time.Now()
	var st settleStats
	s.waitWebhooks()
	s.clock.advance((holdDays + 1) * 24 * time.Hour)
	h := s.deps.Sweep()
	for st.Runs < 60 {
		if st.Runs == s.opts.faultySweeps {
			s.liftFaults()
		}
		faulty := s.faulty()
		timeout := 2 * time.Minute
		if st.Runs < s.opts.faultySweeps && s.opts.faultySweepTimeout > 0 {
			timeout = s.opts.faultySweepTimeout
		}
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		sum, err := h.Handle(ctx, sweep.Request{})
		cancel()
		st.Runs++
		if faulty {
			st.FaultyRuns++
		}
		if !sum.Complete {
			st.Incomplete++
		}
		st.Issued += sum.Issued
		st.Canceled += sum.Canceled
		st.Reconciled += sum.Reconciled
		st.Failed += sum.Failed
		if err != nil {
			st.RunErrors++
		}
		if err == nil && sum.Complete && st.Runs > s.opts.faultySweeps && s.settled() {
			st.Converged = true
			break
		}
		s.clock.advance(20 * time.Minute)
	}
	s.liftFaults()
	s.waitWebhooks()
	st.Duration = time.Since(start)
	if !st.Converged {
		t.Errorf("the sweep did not settle every due reward in %d runs", st.Runs)
	}
	return st
}

// settled: RF lists nothing due, and no issue or cancel is unconfirmed.
func (s *system) settled() bool {
	for _, m := range []string{"amount", "commission", "coupon", "custom"} {
		if len(s.sim.Server.DueRewards(m)) > 0 {
			return false
		}
	}
	for _, k := range []ledger.IntentKind{ledger.IntentIssue, ledger.IntentCancel} {
		p, err := s.deps.Ledger.PendingIntents(s.t.Context(), k)
		if err != nil || len(p) > 0 {
			return false
		}
	}
	return true
}

func (s *system) waitWebhooks() {
	ctx, cancel := context.WithTimeout(s.t.Context(), 2*time.Minute)
	defer cancel()
	if err := s.sim.Server.WaitIdle(ctx); err != nil {
		s.t.Errorf("RF's webhook deliveries did not finish: %v", err)
	}
}

// ---- RF's call log ----

// callLog collects the simulator's call log as it grows (the simulator keeps the last 10,000).
type callLog struct {
	sim   *rfsim.Server
	mu    sync.Mutex
	calls []rfsim.Call
	last  int64
	gap   bool
	quit  chan struct{}
	ended chan struct{}
	once  sync.Once
}

func newCallLog(sim *rfsim.Server) *callLog {
	l := &callLog{sim: sim, quit: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(l.ended)
		for {
			select {
			case <-l.quit:
				l.poll()
				return
			case <-time.After(100 * time.Millisecond):
				l.poll()
			}
		}
	}()
	return l
}

func (l *callLog) poll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := l.sim.CallsSince(l.last)
	if len(cs) == 0 {
		return
	}
	if cs[0].Seq != l.last+1 {
		l.gap = true
	}
	l.calls = append(l.calls, cs...)
	l.last = cs[len(cs)-1].Seq
}

func (l *callLog) stop() {
	l.once.Do(func() { close(l.quit) })
	<-l.ended
}

// all stops the collection and returns every call; ok is false if some were lost.
func (l *callLog) all() ([]rfsim.Call, bool) {
	l.stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls, !l.gap
}

// ---- DynamoDB faults ----

// DynamoDB fault kinds the transport injects.
const (
	ddbInternal    = iota // 500 InternalServerError before the request reaches the table
	ddbThrottling         // 400 ThrottlingException
	ddbProvisioned        // 400 ProvisionedThroughputExceededException
	ddbLost               // the request is applied, then answered 500: the answer was lost
	ddbKinds
)

var ddbKindNames = [ddbKinds]string{"500 InternalServerError", "400 ThrottlingException", "400 ProvisionedThroughputExceededException", "applied, answer lost (500)"}

// dynamoClient is a DynamoDB client for DynamoDB Local built as wiring builds the Lambda's
// (the SDK's default configuration: its standard retryer, with its retry quota), with static
// credentials and the fault-injecting transport.
func (s *system) dynamoClient(endpoint string) *dynamodb.Client {
	s.t.Helper()
	cfg, err := awsconfig.LoadDefaultConfig(s.t.Context(), awsconfig.WithRegion("us-east-1"),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("local", "local", "")))
	if err != nil {
		s.t.Fatal(err)
	}
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.HTTPClient = &http.Client{Transport: s.ddb}
		o.BaseEndpoint = aws.String(endpoint)
		// aws/aws-sdk-go-v2#3545: DynamoDB Local's error answers fail the checksum check.
		o.DisableValidateResponseChecksum = true
	})
}

// ddbFaults is the HTTP transport between the handlers' DynamoDB client and DynamoDB Local,
// where a network would be: it fails a share of the requests the way DynamoDB does (server
// errors, throttling), or loses the answer to one it applied.
type ddbFaults struct {
	base     http.RoundTripper
	rate     atomic.Uint64 // float64 bits: the share of requests failed
	mu       sync.Mutex
	rng      *rand.Rand
	requests atomic.Int64
	injected [ddbKinds]atomic.Int64
}

func newDDBFaults(seed uint64) *ddbFaults {
	return &ddbFaults{base: &http.Transport{MaxIdleConnsPerHost: 128}, rng: rand.New(rand.NewPCG(seed, 11))}
}

func (f *ddbFaults) setRate(r float64) { f.rate.Store(math.Float64bits(r)) }
func (f *ddbFaults) getRate() float64  { return math.Float64frombits(f.rate.Load()) }

func (f *ddbFaults) pick() int {
	r := f.getRate()
	if r <= 0 {
		return -1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rng.Float64() >= r {
		return -1
	}
	return f.rng.IntN(ddbKinds)
}

// RoundTrip implements http.RoundTripper.
func (f *ddbFaults) RoundTrip(req *http.Request) (*http.Response, error) {
	f.requests.Add(1)
	kind := f.pick()
	if kind >= 0 {
		f.injected[kind].Add(1)
	}
	switch kind {
	case ddbInternal:
		return ddbError(req, http.StatusInternalServerError, "InternalServerError", "Internal server error (injected)"), nil
	case ddbThrottling:
		return ddbError(req, http.StatusBadRequest, "ThrottlingException", "Rate of requests exceeds the allowed throughput (injected)"), nil
	case ddbProvisioned:
		return ddbError(req, http.StatusBadRequest, "ProvisionedThroughputExceededException",
			"The level of configured provisioned throughput for the table was exceeded (injected)"), nil
	}
	resp, err := f.base.RoundTrip(req)
	if err != nil || kind != ddbLost {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return ddbError(req, http.StatusInternalServerError, "InternalServerError", "Internal server error (injected after the request was applied)"), nil
}

func ddbError(req *http.Request, status int, code, msg string) *http.Response {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	body := fmt.Sprintf(`{"__type":"com.amazonaws.dynamodb.v20120810#%s","message":%q}`, code, msg)
	return &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: req, ContentLength: int64(len(body)),
		Header: http.Header{"Content-Type": {"application/x-amz-json-1.0"}, "X-Amzn-Errortype": {code}},
		Body:   io.NopCloser(strings.NewReader(body))}
}

// ---- helpers ----

// seedFor is the run's seed: REFBRIDGE_RELIABILITY_SEED replays one, otherwise a fresh one.
func seedFor(t *testing.T, salt uint64) uint64 {
	t.Helper()
	if v := os.Getenv("REFBRIDGE_RELIABILITY_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("REFBRIDGE_RELIABILITY_SEED=%q: %v", v, err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())&0xffffffffffff ^ salt
}

func sortedKeys[K int | string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}
