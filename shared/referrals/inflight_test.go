package referrals

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

// stepHook is the ledger with a hook at one step boundary of the payment flow: before runs
// once, just before the first Qualify (after RF's PUT, when the payment qualifies), and
// afterQualify may replace the answer of a Qualify that was written (a lost answer).
type stepHook struct {
	ledger.Store
	once         sync.Once
	before       func()
	afterQualify func(q ledger.Qualification, err error) (ledger.Qualification, error)
}

func (h *stepHook) Qualify(ctx context.Context, q ledger.Qualification) (ledger.Qualification, error) {
	if h.before != nil {
		h.once.Do(h.before)
	}
	q, err := h.Store.Qualify(ctx, q)
	if h.afterQualify != nil {
		return h.afterQualify(q, err)
	}
	return q, err
}

// serviceOn is a Service of the fixture's simulator and settings over l.
func serviceOn(t *testing.T, f fixture, l Ledger, set Settings) *Service {
	t.Helper()
	client, err := rf.New(f.sim.URL, f.sim.Token, rf.WithLimiter(nil),
		rf.WithRetryPolicy(rf.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, MaxRetryAfter: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	return New(l, client, set, f.clock.Now, logtest.Logger(t, "referrals"))
}

// A refund or dispute processed while the payment's qualification is in flight — between RF's
// PUT and the ledger's Qualify — found no qualification to reverse. The payment, once it has
// recorded the qualification, reads the net again and reverses it itself: the lead ends
// unqualified in RF and in the ledger, with one reversal and one unqualify call.
func TestReversalDuringTheQualificationInFlight(t *testing.T) {
	const charge = "ch_inflight"
	refund := func(cumulative int64) func(ctx context.Context, s *Service) (Result, error) {
		return func(ctx context.Context, s *Service) (Result, error) {
			return s.ChargeRefunded(ctx, stripeevents.Charge{ID: charge, CustomerID: erinCus, InvoiceID: "in_inflight",
				Currency: "usd", Amount: 4900, AmountRefunded: cumulative}, paidAt)
		}
	}
	tests := []struct {
		name      string
		reversal  func(ctx context.Context, s *Service) (Result, error)
		want      Outcome // the payment's
		qualified bool
	}{
		{"full refund", refund(4900), Unqualified, false},
		{"dispute", func(ctx context.Context, s *Service) (Result, error) {
			return s.DisputeCreated(ctx, stripeevents.Dispute{ID: "dp_inflight", ChargeID: charge, Currency: "usd", Amount: 4900, Status: "needs_response"}, paidAt)
		}, Unqualified, false},
		{"lost dispute, its opening missed", func(ctx context.Context, s *Service) (Result, error) {
			return s.DisputeClosed(ctx, stripeevents.Dispute{ID: "dp_inflight", ChargeID: charge, Currency: "usd", Amount: 4900, Status: "lost"}, paidAt)
		}, Unqualified, false},
		{"partial refund above the threshold", refund(1000), Qualified, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stores(t, settings(), func(t *testing.T, f fixture) {
				ctx := context.Background()
				hook := &stepHook{Store: f.ledger}
				hook.before = func() {
					res, err := tt.reversal(ctx, f.svc)
					if err != nil || res.Outcome != Counted {
						t.Errorf("reversal in the gap: %+v %v, want counted (nothing to reverse yet)", res, err)
					}
				}
				inv := invoice("in_inflight", 4900)
				inv.ChargeID = charge
				res, err := serviceOn(t, f, hook, settings()).InvoicePaid(ctx, inv, paidAt)
				if err != nil || res.Outcome != tt.want {
					t.Fatalf("payment: %+v %v, want %s", res, err, tt.want)
				}
				if got := erinQualifiedInRF(t, f); got != tt.qualified {
					t.Errorf("qualified in RF: %v, want %v", got, tt.qualified)
				}
				q, err := f.ledger.LatestQualification(ctx, erinID)
				if err != nil || q.Seq != 1 || q.Standing() != tt.qualified {
					t.Fatalf("ledger: %+v %v, want generation 1 standing=%v", q, err, tt.qualified)
				}
				up, down := qualificationPuts(f.sim, erinID)
				wantDown := 1
				if tt.qualified {
					wantDown = 0
				}
				if up != 1 || down != wantDown {
					t.Errorf("RF PUTs: %d qualify, %d unqualify; want 1, %d", up, down, wantDown)
				}
				if !tt.qualified {
					in, err := f.ledger.IntentOf(ctx, ledger.IntentUnqualify, ledger.QualificationTarget(erinID, 1))
					if err != nil || in.Status != ledger.IntentDone || in.Attempts != 1 {
						t.Errorf("unqualify intent: %+v %v", in, err)
					}
					// The redeliveries of both events change nothing.
					mustPay(t, f, inv, Duplicate)
					if res, err := tt.reversal(ctx, f.svc); err != nil || res.Outcome == Unqualified {
						t.Errorf("reversal redelivered: %+v %v", res, err)
					}
					if up, down := qualificationPuts(f.sim, erinID); up != 1 || down != 1 {
						t.Errorf("RF PUTs after the redeliveries: %d qualify, %d unqualify", up, down)
					}
				}
			})
		})
	}
}

// The payment's attempt records the qualification and dies before it reads the net again (its
// answer lost): the refund processed in the gap is reversed by the redelivery, which finds the
// qualification its own subject made standing below the threshold.
func TestRedeliveryChecksTheNetItsAttemptDidNot(t *testing.T) {
	stores(t, settings(), func(t *testing.T, f fixture) {
		ctx := context.Background()
		hook := &stepHook{Store: f.ledger}
		hook.before = func() {
			if _, err := f.svc.ChargeRefunded(ctx, stripeevents.Charge{ID: "ch_lost", CustomerID: erinCus, InvoiceID: "in_lost",
				Currency: "usd", Amount: 4900, AmountRefunded: 4900}, paidAt); err != nil {
				t.Error(err)
			}
		}
		hook.afterQualify = func(q ledger.Qualification, err error) (ledger.Qualification, error) {
			if err != nil {
				return q, err
			}
			return ledger.Qualification{}, errors.New("injected: the answer of the written Qualify is lost")
		}
		inv := invoice("in_lost", 4900)
		inv.ChargeID = "ch_lost"
		if _, err := serviceOn(t, f, hook, settings()).InvoicePaid(ctx, inv, paidAt); err == nil {
			t.Fatal("the attempt whose Qualify answer was lost succeeded")
		}
		if q, err := f.ledger.LatestQualification(ctx, erinID); err != nil || !q.Standing() {
			t.Fatalf("after the lost answer: %+v %v, want the qualification recorded", q, err)
		}
		mustPay(t, f, inv, Unqualified)
		if erinQualifiedInRF(t, f) {
			t.Error("still qualified in RF")
		}
		if up, down := qualificationPuts(f.sim, erinID); up != 1 || down != 1 {
			t.Errorf("RF PUTs: %d qualify, %d unqualify; want 1, 1", up, down)
		}
		mustPay(t, f, inv, Duplicate)
	})
}

// placeHook signals, per charge, that the payment's count mapped the charge.
type placeHook struct {
	ledger.Store
	placed func(chargeID string)
}

func (h *placeHook) PlaceCharge(ctx context.Context, p ledger.ChargePlacement) (ledger.Placement, error) {
	pl, err := h.Store.PlaceCharge(ctx, p)
	if err == nil && p.Payment != nil {
		h.placed(p.ChargeID)
	}
	return pl, err
}

// Many leads, each paid once and refunded (two partial refunds, or a dispute) while the payment
// qualifies, all at once on DynamoDB Local: at most one qualify and one unqualify PUT per lead,
// and every lead ends as its net says, in RF and in the ledger alike.
func TestRefundsRacingTheirPaymentsQualification(t *testing.T) {
	const leads = 24
	clock := &testClock{}
	db, table := ddbtest.Table(t)
	store := ledger.NewDynamo(db, table, ledger.WithClock(clock.Now))
	sim := rfsimtest.New(t)
	sim.SeedDemo(t)
	f := fixture{ledger: store, sim: sim, clock: clock}
	ctx := context.Background()

	type lead struct {
		id             int64
		charge, cus    string
		kind           int // 0: refunded in two halves; 1: disputed; 2: refunded 1000 (stays above)
		mapped         chan struct{}
		closeOnce      sync.Once
		wantQualified  bool
		answers        []string
		answersMu      sync.Mutex
		paymentOutcome Outcome
	}
	byCharge := map[string]*lead{}
	var all []*lead
	for i := range leads {
		u, err := sim.Server.CreateUser(rfsim.NewUser{CampaignID: 1, FirstName: "Racer", Email: fmt.Sprintf("racer%d@example.com", i),
			Referrer: &rfsim.ReferrerRef{Field: "id", Value: "2"}})
		if err != nil {
			t.Fatal(err)
		}
		l := &lead{id: int64(u.ID), charge: fmt.Sprintf("ch_race%d", i), cus: fmt.Sprintf("cus_race%d", i), kind: i % 3, mapped: make(chan struct{})}
		l.wantQualified = l.kind == 2
		if _, err := store.PutLead(ctx, ledger.Lead{ID: l.id, Code: u.Code, ReferrerID: 2, CampaignID: 1, Source: ledger.SourceRFWebhook}); err != nil {
			t.Fatal(err)
		}
		if _, err := store.MapCustomer(ctx, l.cus, l.id, "signup"); err != nil {
			t.Fatal(err)
		}
		byCharge[l.charge] = l
		all = append(all, l)
	}
	hook := &placeHook{Store: store, placed: func(ch string) {
		if l := byCharge[ch]; l != nil {
			l.closeOnce.Do(func() { close(l.mapped) })
		}
	}}
	svc := serviceOn(t, f, hook, settings())

	// deliver retries a delivery as Stripe does, until it succeeds.
	deliver := func(l *lead, name string, fn func() (Result, error)) Result {
		for attempt := 0; ; attempt++ {
			res, err := fn()
			if err == nil {
				l.answersMu.Lock()
				l.answers = append(l.answers, fmt.Sprintf("%s: %s (%s)", name, res.Outcome, res.Reason))
				l.answersMu.Unlock()
				return res
			}
			if attempt > 200 {
				t.Errorf("lead %d: %s: still failing: %v", l.id, name, err)
				return Result{}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	for _, l := range all {
		inv := stripeevents.Invoice{ID: "in_" + l.charge, CustomerID: l.cus, Currency: "usd", AmountPaid: 4900, ChargeID: l.charge, Status: "paid"}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.paymentOutcome = deliver(l, "payment", func() (Result, error) { return svc.InvoicePaid(ctx, inv, paidAt) }).Outcome
		}()
		reversal := func(name string, fn func() (Result, error)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-l.mapped // the payment counted: the reversal races its qualification
				deliver(l, name, fn)
			}()
		}
		switch l.kind {
		case 0:
			for _, cum := range []int64{2450, 4900} {
				reversal(fmt.Sprintf("refund to %d", cum), func() (Result, error) {
					return svc.ChargeRefunded(ctx, stripeevents.Charge{ID: l.charge, CustomerID: l.cus, InvoiceID: inv.ID, Currency: "usd", Amount: 4900, AmountRefunded: cum}, paidAt)
				})
			}
		case 1:
			reversal("dispute", func() (Result, error) {
				return svc.DisputeCreated(ctx, stripeevents.Dispute{ID: "dp_" + l.charge, ChargeID: l.charge, Currency: "usd", Amount: 4900, Status: "needs_response"}, paidAt)
			})
		case 2:
			reversal("partial refund", func() (Result, error) {
				return svc.ChargeRefunded(ctx, stripeevents.Charge{ID: l.charge, CustomerID: l.cus, InvoiceID: inv.ID, Currency: "usd", Amount: 4900, AmountRefunded: 1000}, paidAt)
			})
		}
	}
	wg.Wait()

	reversedInFlight := 0
	for _, l := range all {
		up, down := qualificationPuts(sim, l.id)
		u, _ := sim.Server.User(int(l.id))
		inRF := u.QualifiedAt != nil
		q, err := store.LatestQualification(ctx, l.id)
		standing := err == nil && q.Standing()
		if err != nil && !errors.Is(err, ledger.ErrNotFound) {
			t.Fatal(err)
		}
		bad := up != 1 || down > 1 || inRF != l.wantQualified || standing != l.wantQualified || (err == nil && q.Seq != 1)
		if !l.wantQualified && down != 1 {
			bad = true
		}
		if err == nil && !q.Standing() {
			if in, ierr := store.IntentOf(ctx, ledger.IntentUnqualify, ledger.QualificationTarget(l.id, q.Seq)); ierr != nil || in.Status != ledger.IntentDone {
				t.Errorf("lead %d: unqualify intent %+v %v", l.id, in, ierr)
			}
		}
		if l.paymentOutcome == Unqualified {
			reversedInFlight++
		}
		if bad {
			t.Errorf("lead %d (kind %d): %d qualify and %d unqualify PUTs, qualified in RF %v, ledger %+v (%v); answers %q",
				l.id, l.kind, up, down, inRF, q, err, l.answers)
		}
	}
	t.Logf("%d leads; %d payments reversed their own qualification after a refund or dispute in flight", leads, reversedInFlight)
}
