package sweep

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/lease"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	"github.com/refbridge/refbridge/shared/ratelimit"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	s      *Sweeper
	ledger ledger.Store
	sim    *rfsimtest.Sim
	clock  *clock
	// db and table are the DynamoDB Local table of the "dynamodb" variant (nil in "memory").
	db    *dynamodb.Client
	table string
}

// setup builds a sweeper on the named ledger ("memory" or "dynamodb") against the simulator
// seeded with the demo campaign, where Erin (lead 5, referred by Bob, user 2) is pending.
func setup(t *testing.T, name string) env {
	t.Helper()
	e := env{sim: rfsimtest.New(t), clock: &clock{t: time.Now().UTC()}}
	// The ledger keeps the decisions' clock, as wiring.WithClock sets it: intent times (which
	// date refbridge's qualifications) and first sightings are then on one calendar.
	e.ledger = ledger.NewMemory(ledger.WithClock(e.clock.Now))
	var ls lease.Store = lease.NewMemory()
	if name == "dynamodb" {
		e.db, e.table = ddbtest.Table(t)
		e.ledger, ls = ledger.NewDynamo(e.db, e.table, ledger.WithClock(e.clock.Now)), lease.NewDynamo(e.db, e.table)
	}
	e.sim.SeedDemo(t)
	log := logtest.Logger(t, "reward-sweep")
	client, err := rf.New(e.sim.URL, e.sim.Token, rf.WithLimiter(nil), rf.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	e.s = &Sweeper{Ledger: e.ledger, RF: client, Lease: ls, Rules: Rules{Hold: 14 * 24 * time.Hour}, Now: e.clock.Now, Log: log}
	return e
}

// both runs a test on both ledgers.
func both(t *testing.T, test func(t *testing.T, e env)) {
	for _, name := range []string{"memory", "dynamodb"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, setup(t, name))
		})
	}
}

// bucket is a shared DynamoDB token bucket of events per window, burst 2.
func (e env) bucket(t *testing.T, name string, events int, per time.Duration) *ratelimit.Bucket {
	t.Helper()
	b, err := ratelimit.New(e.db, e.table, name, ratelimit.Limit{Events: events, Per: per, Burst: 2})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "events", "sweep", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// qualifyErin records refbridge's qualification of Erin, daysAgo old, and qualifies her in RF,
// which makes Bob's $25 reward due. It returns that due reward's id.
func qualifyErin(t *testing.T, e env, daysAgo int) int64 {
	t.Helper()
	_, err := e.ledger.Qualify(context.Background(), ledger.Qualification{LeadID: 5, ReferrerID: 2,
		At: e.clock.Now().Add(-time.Duration(daysAgo) * 24 * time.Hour), Origin: ledger.OriginRefbridge})
	if err != nil {
		t.Fatal(err)
	}
	e.sim.Qualify(t, 5)
	for _, d := range e.sim.Server.DueRewards("amount") {
		if d.RecipientID == 2 {
			return int64(d.ID)
		}
	}
	t.Fatal("no due reward for Bob")
	return 0
}

// issueCalls counts POST /rewards/issue/{id} calls, for one reward id or (id 0) for all.
func issueCalls(sim *rfsimtest.Sim, id int64) int {
	n := 0
	for _, c := range sim.Server.Calls() {
		rest, ok := strings.CutPrefix(c.Path, "/api/v2/rewards/issue/")
		if c.Method == "POST" && ok && (id == 0 || rest == strconv.FormatInt(id, 10)) {
			n++
		}
	}
	return n
}

func rfStatus(t *testing.T, e env, id int64) string {
	t.Helper()
	for _, r := range e.sim.Server.IssuedRewards("amount") {
		if int64(r.ID) == id {
			return r.Status
		}
	}
	return ""
}

// issuedToBob checks how many rewards the ledger counted as issued to Bob (user 2) in a month.
func issuedToBob(t *testing.T, e env, month time.Time, want int) {
	t.Helper()
	if n, err := e.ledger.IssuedInMonth(context.Background(), 2, month); err != nil || n != want {
		t.Fatalf("rewards issued to Bob in %s: %d %v, want %d", month.Format("2006-01"), n, err, want)
	}
}

func TestHoldThenIssueOnce(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		id := qualifyErin(t, e, 3)
		sum, err := e.s.Run(ctx)
		if err != nil || sum.Issued != 0 || sum.Waiting["hold"] != 3 {
			t.Fatalf("inside the hold: %+v %v", sum, err)
		}
		e.clock.Advance(12 * 24 * time.Hour)
		sum, err = e.s.Run(ctx)
		// Bob's $25 and Erin's coupon stand on her qualification (one slot each), whose hold is
		// over; Alice's reward for Dave has nothing behind it and waits 14 days from first sight.
		if err != nil || sum.Issued != 2 || sum.Waiting["hold"] != 1 || rfStatus(t, e, id) != rf.StatusIssued {
			t.Fatalf("after the hold: %+v %v (RF status %q)", sum, err, rfStatus(t, e, id))
		}
		rec, err := e.ledger.DueRewardRecord(ctx, id)
		if err != nil || rec.State != ledger.RewardIssued {
			t.Fatalf("ledger %+v %v", rec, err)
		}
		issuedToBob(t, e, rec.SettledAt, 1)
		// Runs after that issue nothing new.
		if sum, err := e.s.Run(ctx); err != nil || sum.Issued != 0 || issueCalls(e.sim, id) != 1 {
			t.Fatalf("again: %+v %v, %d issue calls", sum, err, issueCalls(e.sim, id))
		}
		issuedToBob(t, e, rec.SettledAt, 1)
	})
}

func TestReversedQualificationCancels(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		id := qualifyErin(t, e, 3)
		if _, err := e.ledger.Reverse(ctx, ledger.QualificationRef{LeadID: 5, Seq: 1}, e.clock.Now(), "refund"); err != nil {
			t.Fatal(err)
		}
		sum, err := e.s.Run(ctx)
		// Bob's $25 and Erin's coupon (seeded due) both stand on the reversed qualification.
		if err != nil || sum.Canceled != 2 || rfStatus(t, e, id) != rf.StatusCanceled || issueCalls(e.sim, 0) != 0 {
			t.Fatalf("%+v %v (RF status %q)", sum, err, rfStatus(t, e, id))
		}
	})
}

func TestRecordedAsIssuedIsNeverIssuedAgain(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		id := qualifyErin(t, e, 30)
		// RF's reward-issued webhook said it was issued (by hand), though RF still lists it due.
		if _, err := e.ledger.MarkRewardSettled(ctx, ledger.Settlement{ID: id, RecipientID: 2, State: ledger.RewardIssued,
			At: e.clock.Now(), By: ledger.SettledByRFWebhook}); err != nil {
			t.Fatal(err)
		}
		sum, err := e.s.Run(ctx)
		if err != nil || issueCalls(e.sim, id) != 0 {
			t.Fatalf("%+v %v", sum, err)
		}
		issuedToBob(t, e, e.clock.Now(), 1)
		// Settled before the sweep saw it: skipped before matching, so it takes no slot.
		matchedTo(t, e, id, ledger.QualificationRef{})
	})
}

// Issued by hand in RF's dashboard, with no webhook to tell refbridge: RF no longer lists it
// as due, so the sweep never touches it.
func TestIssuedByHandInRFIsNotIssuedAgain(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		id := qualifyErin(t, e, 30)
		if _, err := e.sim.Server.IssueReward(int(id)); err != nil {
			t.Fatal(err)
		}
		e.sim.Server.ClearCalls()
		sum, err := e.s.Run(context.Background())
		// Listed: Alice's reward (held) and Erin's coupon (issued, her qualification is old).
		if err != nil || issueCalls(e.sim, id) != 0 || sum.Listed != 2 || sum.Issued != 1 {
			t.Fatalf("%+v %v, %d issue calls for the one issued by hand", sum, err, issueCalls(e.sim, id))
		}
	})
}

func TestCrashes(t *testing.T) {
	// RF applied the issue but its answer never arrived (a timeout, a reset): the client says
	// the outcome is unknown, the intent stays pending, and the next run finds the reward in
	// RF's issued list and confirms it without calling again.
	t.Run("answer lost", func(t *testing.T) {
		both(t, func(t *testing.T, e env) {
			ctx := context.Background()
			id := qualifyErin(t, e, 30)
			e.s.Rules.AllowMetrics = []string{"amount"}
			if _, err := e.sim.Server.AddFault(rfsim.Fault{Match: "POST /api/v2/rewards/issue/{id}", Status: 502, When: rfsim.WhenAfter, Count: 1}); err != nil {
				t.Fatal(err)
			}
			sum, err := e.s.Run(ctx)
			if err != nil || sum.Failed != 1 || rfStatus(t, e, id) != rf.StatusIssued {
				t.Fatalf("lost answer: %+v %v", sum, err)
			}
			calls := issueCalls(e.sim, 0)
			sum, err = e.s.Run(ctx)
			if err != nil || sum.Reconciled != 1 || issueCalls(e.sim, 0) != calls {
				t.Fatalf("next run: %+v %v, %d issue calls after %d", sum, err, issueCalls(e.sim, 0), calls)
			}
			if n := issueCalls(e.sim, id); n != 1 || rfStatus(t, e, id) != rf.StatusIssued {
				t.Fatalf("%d issue calls, status %q", n, rfStatus(t, e, id))
			}
			if rec, _ := e.ledger.DueRewardRecord(ctx, id); rec.State != ledger.RewardIssued {
				t.Fatalf("not recorded issued: %+v", rec)
			}
			issuedToBob(t, e, e.clock.Now(), 1)
		})
	})
	t.Run("after the call, before the confirm", func(t *testing.T) {
		both(t, func(t *testing.T, e env) {
			ctx := context.Background()
			id := qualifyErin(t, e, 30)
			if _, err := e.ledger.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: ledger.DueRewardTarget(id), Ref: "crashed run"}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.sim.Server.IssueReward(int(id)); err != nil { // the crashed run's call reached RF
				t.Fatal(err)
			}
			sum, err := e.s.Run(ctx)
			if err != nil || sum.Reconciled != 1 || issueCalls(e.sim, id) != 0 {
				t.Fatalf("%+v %v, %d issue calls", sum, err, issueCalls(e.sim, id))
			}
			rec, _ := e.ledger.DueRewardRecord(ctx, id)
			if rec.State != ledger.RewardIssued {
				t.Fatalf("not confirmed: %+v", rec)
			}
			issuedToBob(t, e, rec.SettledAt, 1) // the recipient RF's issued list names
		})
	})
	t.Run("after the intent, before the call", func(t *testing.T) {
		both(t, func(t *testing.T, e env) {
			ctx := context.Background()
			id := qualifyErin(t, e, 30)
			if _, err := e.ledger.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: ledger.DueRewardTarget(id), Ref: "crashed run"}); err != nil {
				t.Fatal(err)
			}
			// A recent attempt might still be running: not touched.
			if sum, err := e.s.Run(ctx); err != nil || sum.Waiting["in_progress"] != 1 || issueCalls(e.sim, id) != 0 {
				t.Fatalf("recent attempt: %+v %v", sum, err)
			}
			e.clock.Advance(time.Hour) // now stale; RF still lists the reward as due
			sum, err := e.s.Run(ctx)
			if err != nil || issueCalls(e.sim, id) != 1 || rfStatus(t, e, id) != rf.StatusIssued {
				t.Fatalf("taken over: %+v %v, %d issue calls", sum, err, issueCalls(e.sim, id))
			}
		})
	})
}

func TestDryRunIssuesNothing(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		qualifyErin(t, e, 30)
		e.s.DryRun = true
		if sum, err := e.s.Run(context.Background()); err != nil || issueCalls(e.sim, 0) != 0 || sum.Listed != 3 {
			t.Fatalf("%+v %v", sum, err)
		}
	})
}

// gatedLedger holds the first run that reads its checkpoint (it holds the lease by then) until
// the test lets it go.
type gatedLedger struct {
	ledger.Store
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *gatedLedger) LoadCheckpoint(ctx context.Context, name string) ([]byte, error) {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		<-g.release
	}
	return g.Store.LoadCheckpoint(ctx, name)
}

// Two overlapping runs: while one holds the lease, the other stops at once, having called
// nothing; the first then does the work alone.
func TestOverlappingRunsOneActs(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		id := qualifyErin(t, e, 30)
		g := &gatedLedger{Store: e.ledger, entered: make(chan struct{}), release: make(chan struct{})}
		e.s.Ledger = g
		first := make(chan error, 1)
		go func() {
			_, err := e.s.Run(context.Background())
			first <- err
		}()
		<-g.entered // the first run holds the lease
		callsBefore := len(e.sim.Server.Calls())
		sum, err := e.s.Run(context.Background())
		if !errors.Is(err, lease.ErrHeld) || sum.Listed != 0 || len(e.sim.Server.Calls()) != callsBefore {
			t.Fatalf("second run: %+v %v, %d RF calls", sum, err, len(e.sim.Server.Calls())-callsBefore)
		}
		close(g.release)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if n := issueCalls(e.sim, id); n != 1 {
			t.Fatalf("%d issue calls", n)
		}
		// The lease was released: the next run runs.
		if _, err := e.s.Run(context.Background()); err != nil {
			t.Fatalf("after the first run: %v", err)
		}
	})
}

// A paid invoice no lead matched is retried by the sweep: it matches once the lead is known,
// and one whose retry window runs out expires, with the reason.
func TestUnmatchedRetryThenExpiry(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		th, _ := config.ParseThreshold("2000")
		dec := referrals.New(e.ledger, e.s.RF.(*rf.Client), referrals.Settings{Threshold: th, UnmatchedRetry: 72 * time.Hour}, e.clock.Now, nil)
		e.s.Retrier = dec
		for _, id := range []string{"in_erin", "in_ghost"} {
			email := "erin@example.com"
			if id == "in_ghost" {
				email = "ghost@example.com"
			}
			inv := stripeevents.Invoice{ID: id, CustomerID: "cus_" + id, CustomerEmail: email, Currency: "usd", AmountPaid: 4900}
			if res, err := dec.InvoicePaid(ctx, inv, e.clock.Now()); err != nil || res.Outcome != referrals.Unmatched {
				t.Fatalf("%s: %+v %v", id, res, err)
			}
		}
		sum, err := e.s.Run(ctx)
		if err != nil || sum.UnmatchedWaiting != 2 {
			t.Fatalf("nothing known yet: %+v %v", sum, err)
		}
		l := ledger.Lead{ID: 5, Code: "eRiNlEad", ReferrerID: 2, CampaignID: 1, Source: ledger.SourceRFWebhook}
		l.SetEmail("erin@example.com")
		if _, err := e.ledger.PutLead(ctx, l); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(2 * time.Hour)
		sum, err = e.s.Run(ctx)
		if err != nil || sum.UnmatchedMatched != 1 || sum.UnmatchedWaiting != 1 {
			t.Fatalf("after the lead appeared: %+v %v", sum, err)
		}
		e.clock.Advance(4 * 24 * time.Hour)
		sum, err = e.s.Run(ctx)
		if err != nil || sum.UnmatchedExpired != 1 {
			t.Fatalf("after the window: %+v %v", sum, err)
		}
		if u, _ := e.ledger.UnmatchedInvoice(ctx, "in_ghost"); u.Status != ledger.UnmatchedExpired || u.ResolutionReason == "" {
			t.Fatalf("ghost invoice %+v", u)
		}
	})
}

// A delivery that ran out of time between RF's answer and its confirm leaves its qualify intent
// pending; RF's lead-qualified webhook recorded the qualification meanwhile, so the redelivery
// never returns to the intent. The sweep confirms it, and leaves alone a pending qualify whose
// qualification is not recorded (its event's redelivery reads RF first).
func TestPendingQualifyOfARecordedQualificationIsConfirmed(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		recorded := ledger.QualificationTarget(5, 1)
		unrecorded := ledger.QualificationTarget(5, 2)
		for _, target := range []string{recorded, unrecorded} {
			if _, err := e.ledger.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentQualify, Target: target, Ref: "invoice#in_timed_out"}); err != nil {
				t.Fatal(err)
			}
		}
		qualifyErin(t, e, 30) // recorded by RF's webhook: generation 1
		e.sim.Server.ClearCalls()
		sum, err := e.s.Run(ctx)
		if err != nil {
			t.Fatalf("%+v %v", sum, err)
		}
		if in, err := e.ledger.IntentOf(ctx, ledger.IntentQualify, recorded); err != nil || in.Status != ledger.IntentDone {
			t.Fatalf("recorded qualification's intent: %+v %v, want done", in, err)
		}
		if in, err := e.ledger.IntentOf(ctx, ledger.IntentQualify, unrecorded); err != nil || in.Status != ledger.IntentPending {
			t.Fatalf("unrecorded qualification's intent: %+v %v, want pending", in, err)
		}
		if sum.Reconciled != 1 {
			t.Fatalf("reconciled %d, want 1", sum.Reconciled)
		}
		for _, c := range e.sim.Server.Calls() {
			if c.Method == "PUT" {
				t.Fatalf("the sweep called %s %s", c.Method, c.Path)
			}
		}
	})
}
