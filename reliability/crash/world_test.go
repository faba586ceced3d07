package crash

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/stripe/stripe-go/v79/webhook"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/idempotency"
	"github.com/refbridge/refbridge/shared/lambdaruntime"
	"github.com/refbridge/refbridge/shared/lease"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/stripewebhook"
	"github.com/refbridge/refbridge/shared/sweep"

	refevents "github.com/refbridge/refbridge/events"
)

// stripeSecret signs the test deliveries; it is one of logtest.Secrets, so the suite's log scan
// fails if it ever reaches a log line.
const stripeSecret = "whsec_refbridge_test"

// The demo seed's people (shared/rfsim/demoseed.json).
const (
	aliceID = 1 // referrer, code aLiCeRef
	bobID   = 2 // referrer, Erin's
	erinID  = 5 // Bob's lead, pending
	// The due rewards the demo seeds: Alice's $25 for Dave (nothing behind it in the ledger) and
	// Erin's join coupon.
	aliceDueID     = 1
	erinCouponDue  = 3
	fayEmail       = "fay@example.com"
	fayCustomerID  = "cus_RbFayDemo00001"
	signupCampaign = 1
)

func TestMain(m *testing.M) {
	code := m.Run()
	lambdaruntime.RemoveBuilds()
	os.Exit(code)
}

// errKilled is what every DynamoDB request and RF call of a killed process returns: nothing it
// does after its death reaches the world.
var errKilled = errors.New("crash test: the process was killed")

// clock is the decisions', the ledger's and the idempotency runners' clock: the real time,
// moved forward by Advance, so a redelivery can come "an hour later" (Stripe's retry schedule)
// without the test waiting an hour. Deadlines, leases of the sweep and the simulator's rate
// windows keep the real clock.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// world is one test's state: a fresh DynamoDB Local table and an RF simulator seeded with the
// demo campaign.
type world struct {
	db     *dynamodb.Client
	table  string
	sim    *rfsimtest.Sim
	clock  *clock
	ledger ledger.Store // the test's own view of the table, for setup and assertions
	// afterFaults are the ids of the simulator faults added "after": the calls they struck were
	// applied by RF, their answers replaced.
	afterFaults map[int]bool
}

func newWorld(t *testing.T, opts ...rfsim.Option) *world {
	t.Helper()
	db, table := ddbtest.Table(t)
	w := &world{db: db, table: table, sim: rfsimtest.New(t, opts...), clock: &clock{}, afterFaults: map[int]bool{}}
	w.sim.SeedDemo(t)
	w.ledger = ledger.NewDynamo(db, table, ledger.WithClock(w.clock.Now))
	return w
}

// hook names a step boundary: the operation (op), before or after it, and for intents the kind.
// A process dies the first time it reaches its hook.
type hook struct {
	op     string // lock, complete, lease, begin, finish, qualify, reverse, putlead, settle, rf
	before bool
	kind   ledger.IntentKind // begin and finish: only this kind
	call   string            // rf: "METHOD /path-prefix" of the call whose answer is lost
}

// proc is one Lambda execution environment of refbridge: its own DynamoDB client, ledger,
// idempotency and lease stores and RF client, as a cold start builds them. Killed at its hook, it
// stops dead: its invocation's context is cancelled and every later DynamoDB request and RF call
// fails without reaching anything, so no write of the dead process lands after the boundary —
// not even the idempotency release or the sweep's checkpoint and lease release, which the code
// makes on a context that outlives the invocation's.
type proc struct {
	w      *world
	hook   *hook
	dead   atomic.Bool
	hit    chan struct{} // closed when the hook fires
	once   sync.Once
	mu     sync.Mutex
	cancel context.CancelFunc // the running invocation's

	ledger *hookLedger
	idem   *hookIdem
	lease  *hookLease
	rf     *rf.Client
}

func (w *world) proc(t *testing.T, h *hook) *proc {
	t.Helper()
	p := &proc{w: w, hook: h, hit: make(chan struct{})}
	db := &killDB{p: p, db: w.db}
	p.ledger = &hookLedger{Store: ledger.NewDynamo(db, w.table, ledger.WithClock(w.clock.Now)), p: p}
	p.idem = &hookIdem{Store: idempotency.NewDynamo(db, w.table), p: p}
	p.lease = &hookLease{Store: lease.NewDynamo(db, w.table), p: p}
	client, err := rf.New(w.sim.URL, w.sim.Token, rf.WithLimiter(nil), rf.WithAttemptTimeout(5*time.Second),
		rf.WithHTTPClient(&http.Client{Transport: &killTransport{p: p, next: &http.Transport{}}}),
		rf.WithLogger(logtest.Logger(t, "crash")),
		rf.WithRetryPolicy(rf.RetryPolicy{MaxAttempts: 3, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond, MaxRetryAfter: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	p.rf = client
	return p
}

// invocation is the context Lambda gives one invocation: a deadline timeout from now, cancelled
// when the process is killed.
func (p *proc) invocation(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	p.mu.Lock()
	p.cancel = cancel
	p.mu.Unlock()
	if p.dead.Load() {
		cancel()
	}
	return ctx, cancel
}

// at kills the process if (op, before, kind) is its hook, and reports whether it did.
func (p *proc) at(op string, before bool, kind ledger.IntentKind) bool {
	h := p.hook
	if h == nil || h.op != op || h.before != before || (h.kind != "" && h.kind != kind) {
		return false
	}
	p.kill()
	return true
}

func (p *proc) kill() {
	p.once.Do(func() {
		p.dead.Store(true)
		p.mu.Lock()
		if p.cancel != nil {
			p.cancel()
		}
		p.mu.Unlock()
		close(p.hit)
	})
}

func (p *proc) killed() bool {
	select {
	case <-p.hit:
		return true
	default:
		return false
	}
}

// killDB is the process's DynamoDB client: after the kill, nothing reaches the table.
type killDB struct {
	p  *proc
	db *dynamodb.Client
}

func (k *killDB) GetItem(ctx context.Context, in *dynamodb.GetItemInput, o ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if k.p.dead.Load() {
		return nil, errKilled
	}
	return k.db.GetItem(ctx, in, o...)
}

func (k *killDB) PutItem(ctx context.Context, in *dynamodb.PutItemInput, o ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if k.p.dead.Load() {
		return nil, errKilled
	}
	return k.db.PutItem(ctx, in, o...)
}

func (k *killDB) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if k.p.dead.Load() {
		return nil, errKilled
	}
	return k.db.UpdateItem(ctx, in, o...)
}

func (k *killDB) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, o ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	if k.p.dead.Load() {
		return nil, errKilled
	}
	return k.db.DeleteItem(ctx, in, o...)
}

func (k *killDB) Query(ctx context.Context, in *dynamodb.QueryInput, o ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	if k.p.dead.Load() {
		return nil, errKilled
	}
	return k.db.Query(ctx, in, o...)
}

func (k *killDB) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, o ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	if k.p.dead.Load() {
		return nil, errKilled
	}
	return k.db.TransactWriteItems(ctx, in, o...)
}

// killTransport is the process's connection to RF. At an rf hook, the matching call is sent and
// RF applies it, then the process dies before reading the answer: "applied, answer lost".
type killTransport struct {
	p    *proc
	next http.RoundTripper
}

func (k *killTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if k.p.dead.Load() {
		return nil, errKilled
	}
	h := k.p.hook
	method, prefix, _ := strings.Cut(h.callOrEmpty(), " ")
	if h == nil || h.op != "rf" || r.Method != method || !strings.Contains(r.URL.Path, "/api/v2"+prefix) {
		return k.next.RoundTrip(r)
	}
	resp, err := k.next.RoundTrip(r)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	k.p.kill()
	return nil, errKilled
}

func (h *hook) callOrEmpty() string {
	if h == nil {
		return ""
	}
	return h.call
}

// hookLedger is the process's ledger, dying at the ledger boundaries of its hook.
type hookLedger struct {
	ledger.Store
	p *proc
}

func (l *hookLedger) BeginIntent(ctx context.Context, in ledger.Intent) (ledger.Intent, error) {
	out, err := l.Store.BeginIntent(ctx, in)
	if err == nil && l.p.at("begin", false, in.Kind) {
		return out, errKilled
	}
	return out, err
}

func (l *hookLedger) BeginIntentIfStanding(ctx context.Context, in ledger.Intent, q ledger.QualificationRef) (ledger.Intent, error) {
	out, err := l.Store.BeginIntentIfStanding(ctx, in, q)
	if err == nil && l.p.at("begin", false, in.Kind) {
		return out, errKilled
	}
	return out, err
}

func (l *hookLedger) FinishIntent(ctx context.Context, kind ledger.IntentKind, target string, st ledger.IntentStatus, lastErr string) (ledger.Intent, error) {
	if st == ledger.IntentDone && l.p.at("finish", true, kind) {
		return ledger.Intent{}, errKilled
	}
	out, err := l.Store.FinishIntent(ctx, kind, target, st, lastErr)
	if err == nil && st == ledger.IntentDone && l.p.at("finish", false, kind) {
		return out, errKilled
	}
	return out, err
}

func (l *hookLedger) Qualify(ctx context.Context, q ledger.Qualification) (ledger.Qualification, error) {
	if l.p.at("qualify", true, "") {
		return ledger.Qualification{}, errKilled
	}
	return l.Store.Qualify(ctx, q)
}

func (l *hookLedger) Reverse(ctx context.Context, ref ledger.QualificationRef, at time.Time, reason string) (ledger.Qualification, error) {
	out, err := l.Store.Reverse(ctx, ref, at, reason)
	if err == nil && l.p.at("reverse", false, "") {
		return out, errKilled
	}
	return out, err
}

func (l *hookLedger) PutLead(ctx context.Context, lead ledger.Lead) (ledger.Lead, error) {
	if l.p.at("putlead", true, "") {
		return ledger.Lead{}, errKilled
	}
	out, err := l.Store.PutLead(ctx, lead)
	if err == nil && l.p.at("putlead", false, "") {
		return out, errKilled
	}
	return out, err
}

func (l *hookLedger) MarkRewardSettled(ctx context.Context, s ledger.Settlement) (ledger.DueReward, error) {
	if l.p.at("settle", true, "") {
		return ledger.DueReward{}, errKilled
	}
	out, err := l.Store.MarkRewardSettled(ctx, s)
	if err == nil && l.p.at("settle", false, "") {
		return out, errKilled
	}
	return out, err
}

// hookIdem is the process's idempotency store: it dies right after taking the lock, or right
// before saving the completed result.
type hookIdem struct {
	idempotency.Store
	p *proc
}

func (s *hookIdem) PutInProgress(ctx context.Context, rec idempotency.Record, now time.Time) (*idempotency.Record, error) {
	out, err := s.Store.PutInProgress(ctx, rec, now)
	if err == nil && s.p.at("lock", false, "") {
		return out, errKilled
	}
	return out, err
}

func (s *hookIdem) Complete(ctx context.Context, rec idempotency.Record) error {
	if s.p.at("complete", true, "") {
		return errKilled
	}
	return s.Store.Complete(ctx, rec)
}

// hookLease is the process's lease store: the sweep dies right after taking its lease.
type hookLease struct {
	lease.Store
	p *proc
}

func (s *hookLease) Acquire(ctx context.Context, name, owner string, now, expires time.Time) error {
	err := s.Store.Acquire(ctx, name, owner, now, expires)
	if err == nil && s.p.at("lease", false, "") {
		return errKilled
	}
	return err
}

// stripeHandler is the stripe-webhook function as wiring builds it, on the process's parts.
func (p *proc) stripeHandler(t *testing.T) func(context.Context, events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
	t.Helper()
	th, err := config.ParseThreshold("2000")
	if err != nil {
		t.Fatal(err)
	}
	log := logtest.Logger(t, "stripe-webhook")
	dec := referrals.New(p.ledger, p.rf, referrals.Settings{CampaignIDs: []int64{1}, SignupCampaignID: signupCampaign,
		Threshold: th, UnmatchedRetry: 72 * time.Hour}, p.w.clock.Now, log)
	h := &stripewebhook.Handler{Secrets: []string{stripeSecret}, Decisions: dec, Log: log,
		Once: idempotency.New(p.idem, idempotency.Config{Expiration: 96 * time.Hour, Now: p.w.clock.Now})}
	return httpx.FunctionURL(h)
}

// sweeper is the reward-sweep function as wiring builds it, on the process's parts.
func (p *proc) sweeper(t *testing.T, rules sweep.Rules) *sweep.Sweeper {
	return &sweep.Sweeper{Ledger: p.ledger, RF: p.rf, Lease: p.lease, Rules: rules, Now: p.w.clock.Now,
		Log: logtest.Logger(t, "reward-sweep")}
}

// reply is a Function URL answer.
type reply struct {
	Code   int
	Status string `json:"status"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

func (r reply) String() string {
	if r.Error != "" {
		return http.StatusText(r.Code) + " (" + itoa(r.Code) + "): " + r.Error
	}
	return itoa(r.Code) + " " + r.Status + ": " + r.Reason
}

// deliver sends a signed Stripe event to the process's stripe-webhook handler, within a
// Lambda-like 30-second invocation.
func (p *proc) deliver(t *testing.T, payload []byte) reply {
	t.Helper()
	ctx, cancel := p.invocation(30 * time.Second)
	defer cancel()
	resp, err := p.stripeHandler(t)(ctx, signed(payload))
	if err != nil {
		t.Fatal(err)
	}
	r := reply{Code: resp.StatusCode}
	if err := json.Unmarshal([]byte(resp.Body), &r); err != nil {
		t.Fatalf("answer %q: %v", resp.Body, err)
	}
	return r
}

// signed is a Function URL event carrying payload signed now, as Stripe sends it.
func signed(payload []byte) events.LambdaFunctionURLRequest {
	sig := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: stripeSecret, Timestamp: time.Now()})
	ev := events.LambdaFunctionURLRequest{Body: string(payload), RawPath: "/",
		Headers: map[string]string{"stripe-signature": sig.Header, "content-type": "application/json"}}
	ev.RequestContext.HTTP.Method = "POST"
	return ev
}

// fixture is a sample Stripe event (events/stripe).
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := refevents.FS.ReadFile("stripe/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The Stripe events of the flows: Erin's first invoice (qualifies her, by RF's email search),
// its full refund, a dispute on it opened and won, and Fay's checkout with Alice's code.
const (
	evInvoicePaid     = "invoice.paid.2024-06-20.json"
	evRefund          = "charge.refunded.2024-06-20.json"
	evDisputeCreated  = "charge.dispute.created.2024-06-20.json"
	evDisputeWon      = "charge.dispute.closed.won.2024-06-20.json"
	evCheckoutSignup  = "checkout.session.completed.2024-06-20.json"
	routeQualify      = "/api/v2/users/qualification"
	routeCreateUser   = "/api/v2/users"
	routeIssuePrefix  = "/api/v2/rewards/issue/"
	routeCancelPrefix = "/api/v2/rewards/cancel/"
)

// applied counts the calls RF applied on a route (method and path, or path prefix when prefix
// ends in "/"), from the simulator's call log at index since on: answered 2xx, or struck by an
// "after" fault (applied, answer replaced). Calls a client gave up on during an injected latency
// (logged 499) and calls failed "before" were never processed. match, if not nil, filters on
// the call's body.
func applied(w *world, since int, method, route string, match func(body string) bool) map[string]int {
	after := w.afterFaults
	out := map[string]int{}
	calls := w.sim.Server.Calls()
	for _, c := range calls[min(since, len(calls)):] {
		if c.Method != method {
			continue
		}
		if strings.HasSuffix(route, "/") {
			if !strings.HasPrefix(c.Path, route) {
				continue
			}
		} else if c.Path != route {
			continue
		}
		ok := c.Status/100 == 2 || (c.Fault != 0 && after[c.Fault])
		if ok && (match == nil || match(c.Body)) {
			out[strings.TrimPrefix(c.Path, route)]++
		}
	}
	return out
}

// addFault adds a fault to the simulator and remembers it if it strikes "after".
func (w *world) addFault(t *testing.T, f rfsim.Fault) rfsim.Fault {
	t.Helper()
	added, err := w.sim.Server.AddFault(f)
	if err != nil {
		t.Fatal(err)
	}
	if added.When == rfsim.WhenAfter {
		w.afterFaults[added.ID] = true
	}
	return added
}

// fired is how often the fault with id struck (0 once removed).
func (w *world) fired(id int) int {
	for _, f := range w.sim.Server.Faults() {
		if f.ID == id {
			return f.Fired
		}
	}
	return 0
}

// qualifiedBody reports whether a PUT /users/qualification body sets qualified to want.
func qualifiedBody(want bool) func(string) bool {
	return func(body string) bool {
		var b struct {
			Qualified *bool `json:"qualified"`
		}
		return json.Unmarshal([]byte(body), &b) == nil && b.Qualified != nil && *b.Qualified == want
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
