package referrals

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// flaky is a ledger whose Qualify, or whose BeginIntent of the given kind, fails while its
// counter is positive: DynamoDB down, or a Lambda timeout, at that step.
type flaky struct {
	ledger.Store
	qualify atomic.Int32
	begin   atomic.Int32
	kind    ledger.IntentKind
}

var errDown = errors.New("DynamoDB: request timed out")

func (f *flaky) Qualify(ctx context.Context, q ledger.Qualification) (ledger.Qualification, error) {
	if f.qualify.Add(-1) >= 0 {
		return ledger.Qualification{}, errDown
	}
	return f.Store.Qualify(ctx, q)
}

func (f *flaky) BeginIntent(ctx context.Context, in ledger.Intent) (ledger.Intent, error) {
	if in.Kind == f.kind && f.begin.Add(-1) >= 0 {
		return ledger.Intent{}, errDown
	}
	return f.Store.BeginIntent(ctx, in)
}

type clockFixture struct {
	fixture
	clock *stepClock
	flaky *flaky
}

// withClock is stores with one test clock for the decisions and the ledger (as
// wiring.WithClock sets them), and the ledger behind a flaky wrapper.
func withClock(t *testing.T, test func(t *testing.T, f clockFixture)) {
	for _, name := range []string{"memory", "dynamodb"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clk := &stepClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
			var l ledger.Store = ledger.NewMemory(ledger.WithClock(clk.Now))
			if name == "dynamodb" {
				db, table := ddbtest.Table(t)
				l = ledger.NewDynamo(db, table, ledger.WithClock(clk.Now))
			}
			fl := &flaky{Store: l}
			sim := rfsimtest.New(t)
			sim.SeedDemo(t)
			client, err := rf.New(sim.URL, sim.Token, rf.WithLimiter(nil),
				rf.WithRetryPolicy(rf.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, MaxRetryAfter: time.Second}))
			if err != nil {
				t.Fatal(err)
			}
			svc := New(fl, client, settings(), clk.Now, logtest.Logger(t, "referrals"))
			test(t, clockFixture{fixture: fixture{svc: svc, ledger: l, sim: sim}, clock: clk, flaky: fl})
		})
	}
}

var erinsRefund = stripeevents.Charge{ID: "ch_erin", CustomerID: erinCus, Currency: "usd", Amount: 4900, AmountRefunded: 4900}

func paidWithCharge(id string) stripeevents.Invoice {
	inv := invoice(id, 4900)
	inv.ChargeID = "ch_erin"
	return inv
}

// RF qualified Erin, but recording it failed; Stripe redelivers ten minutes later. The
// qualification is recorded with the time of the call that made it, from its intent: the sweep
// ties RF's rewards to qualifications by time, and RF made Erin's reward ten minutes ago.
func TestLateRecordedQualificationKeepsTheCallsTime(t *testing.T) {
	withClock(t, func(t *testing.T, f clockFixture) {
		ctx := context.Background()
		called := f.clock.Now()
		f.flaky.qualify.Store(1)
		if res, err := f.svc.InvoicePaid(ctx, paidWithCharge("in_late"), paidAt); !errors.Is(err, errDown) {
			t.Fatalf("with the ledger failing: %+v %v", res, err)
		}
		if !erinQualifiedInRF(t, f.fixture) {
			t.Fatal("RF was not qualified")
		}
		f.clock.Advance(10 * time.Minute)
		mustPay(t, f.fixture, paidWithCharge("in_late"), Qualified)
		q, err := f.ledger.StandingQualification(ctx, erinID)
		if err != nil {
			t.Fatal(err)
		}
		if !q.EarliestAt.Equal(called) || !q.At.Equal(called) {
			t.Fatalf("qualification at [%v, %v], want the call's %v", q.EarliestAt, q.At, called)
		}
		if n := qualificationCalls(f.sim); n != 1 {
			t.Fatalf("%d qualification calls, want 1", n)
		}
	})
}

// The confirmation of the call failed too: the redelivery finds the intent pending, reads RF
// (qualified) and confirms it then. RF made the qualification between the attempt and that
// confirmation, and the qualification says so: [attempt, confirmation].
func TestQualificationConfirmedLateSpansTheAttempt(t *testing.T) {
	withClock(t, func(t *testing.T, f clockFixture) {
		ctx := context.Background()
		attempt := f.clock.Now()
		if _, err := f.ledger.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentQualify, Target: ledger.QualificationTarget(erinID, 1), Ref: "crashed"}); err != nil {
			t.Fatal(err)
		}
		f.sim.Qualify(t, erinID) // the crashed attempt's call reached RF
		f.clock.Advance(10 * time.Minute)
		mustPay(t, f.fixture, paidWithCharge("in_after_crash"), Qualified)
		q, err := f.ledger.StandingQualification(ctx, erinID)
		if err != nil {
			t.Fatal(err)
		}
		if !q.EarliestAt.Equal(attempt) || !q.At.Equal(f.clock.Now()) {
			t.Fatalf("qualification at [%v, %v], want [%v, %v]", q.EarliestAt, q.At, attempt, f.clock.Now())
		}
	})
}

// The ledger reversal is recorded first; a crash before the unqualify intent leaves the lead
// qualified in RF. The redelivery finds the qualification reversed with no unqualify done, and
// finishes the reversal in RF.
func TestRefundRedeliveryFinishesAReversalCutShort(t *testing.T) {
	withClock(t, func(t *testing.T, f clockFixture) {
		ctx := context.Background()
		mustPay(t, f.fixture, paidWithCharge("in_1"), Qualified)
		f.flaky.kind = ledger.IntentUnqualify
		f.flaky.begin.Store(1)
		if res, err := f.svc.ChargeRefunded(ctx, erinsRefund, f.clock.Now()); !errors.Is(err, errDown) {
			t.Fatalf("cut short: %+v %v", res, err)
		}
		if q, err := f.ledger.LatestQualification(ctx, erinID); err != nil || q.Standing() {
			t.Fatalf("the ledger's qualification: %+v %v, want reversed", q, err)
		}
		if !erinQualifiedInRF(t, f.fixture) {
			t.Fatal("unqualified in RF although the intent was never begun")
		}
		res, err := f.svc.ChargeRefunded(ctx, erinsRefund, f.clock.Now())
		if err != nil || res.Outcome != Unqualified {
			t.Fatalf("redelivery: %+v %v", res, err)
		}
		if erinQualifiedInRF(t, f.fixture) {
			t.Fatal("the redelivery left the lead qualified in RF")
		}
		// Done: one more delivery finds nothing to do.
		res, err = f.svc.ChargeRefunded(ctx, erinsRefund, f.clock.Now())
		if err != nil || res.Outcome != Duplicate {
			t.Fatalf("after the reversal: %+v %v", res, err)
		}
		if n := qualificationCalls(f.sim); n != 2 {
			t.Fatalf("%d qualification calls, want qualify + unqualify", n)
		}
	})
}

// A reward whose issue the sweep has begun (its intent pending: the call may be under way) counts
// as issued before the reversal: the reversal is recorded after issue and RF is left as it is.
// Once that attempt turns out not to have been applied (RF refused it: the intent failed), the
// reward is due again, and the next refund-type delivery finishes the reversal in RF.
func TestIssueUnderWayCountsAsIssuedBeforeTheReversal(t *testing.T) {
	withClock(t, func(t *testing.T, f clockFixture) {
		ctx := context.Background()
		mustPay(t, f.fixture, paidWithCharge("in_1"), Qualified)
		q, err := f.ledger.StandingQualification(ctx, erinID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ledger.SeeDueReward(ctx, ledger.DueReward{ID: 77, RewardID: 1, RecipientID: 2, Metric: "amount"}); err != nil {
			t.Fatal(err)
		}
		if err := f.ledger.MatchDueReward(ctx, 77, q.Ref(), ledger.RewardSlot{RecipientID: 2, RewardID: 1}); err != nil {
			t.Fatal(err)
		}
		target := ledger.DueRewardTarget(77)
		if _, err := f.ledger.BeginIntentIfStanding(ctx, ledger.Intent{Kind: ledger.IntentIssue, Target: target, Ref: "sweep"}, q.Ref()); err != nil {
			t.Fatal(err)
		}
		res, err := f.svc.ChargeRefunded(ctx, erinsRefund, f.clock.Now())
		if err != nil || res.Outcome != ReversedAfterIssue || !erinQualifiedInRF(t, f.fixture) {
			t.Fatalf("refund during the issue: %+v %v, qualified in RF %v", res, err, erinQualifiedInRF(t, f.fixture))
		}
		if _, err := f.ledger.FinishIntent(ctx, ledger.IntentIssue, target, ledger.IntentFailed, "RF said 422"); err != nil {
			t.Fatal(err)
		}
		dispute := stripeevents.Dispute{ID: "dp_1", ChargeID: "ch_erin", Currency: "usd", Amount: 100, Status: "needs_response"}
		res, err = f.svc.DisputeCreated(ctx, dispute, f.clock.Now())
		if err != nil || res.Outcome != Unqualified || erinQualifiedInRF(t, f.fixture) {
			t.Fatalf("the next delivery: %+v %v, qualified in RF %v", res, err, erinQualifiedInRF(t, f.fixture))
		}
	})
}
