package stripewebhook

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stripe/stripe-go/v79/webhook"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/idempotency"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

const secret = "whsec_refbridge_test"

type env struct {
	invoke func(ctx context.Context, ev events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error)
	ledger ledger.Store
	sim    *rfsimtest.Sim
	logs   *syncBuffer
	client *rf.Client // the decisions' RF client (the full loop builds a sweep on it)
	clock  *shiftedClock
}

// shiftedClock is the decisions' clock: the real time, moved forward by Advance.
type shiftedClock struct{ offset atomic.Int64 }

func (c *shiftedClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *shiftedClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// syncBuffer collects log lines from concurrent deliveries.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// both runs a test end to end through the Lambda handler, with the in-memory state and with
// DynamoDB Local, against the RF simulator seeded with the demo campaign.
func both(t *testing.T, live bool, test func(t *testing.T, e env)) {
	bothWith(t, live, nil, test)
}

// bothWith is both with the referral settings changed by mod.
func bothWith(t *testing.T, live bool, mod func(*referrals.Settings), test func(t *testing.T, e env)) {
	for _, name := range []string{"memory", "dynamodb"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var l ledger.Store = ledger.NewMemory()
			var idem idempotency.Store = idempotency.NewMemory()
			if name == "dynamodb" {
				db, table := ddbtest.Table(t)
				l, idem = ledger.NewDynamo(db, table), idempotency.NewDynamo(db, table)
			}
			sim := rfsimtest.New(t)
			sim.SeedDemo(t)
			client, err := rf.New(sim.URL, sim.Token, rf.WithLimiter(nil), rf.WithAttemptTimeout(time.Second),
				rf.WithRetryPolicy(rf.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, MaxRetryAfter: time.Second}))
			if err != nil {
				t.Fatal(err)
			}
			th, _ := config.ParseThreshold("2000")
			set := referrals.Settings{CampaignIDs: []int64{1}, SignupCampaignID: 1, Threshold: th, UnmatchedRetry: 72 * time.Hour}
			if mod != nil {
				mod(&set)
			}
			logs := &syncBuffer{}
			out := io.MultiWriter(logs, logtest.Writer(t)) // the suite's log scan reads these too
			log := observe.NewLogger(out, observe.LogOptions{Function: "stripe-webhook", Level: slog.LevelDebug})
			clock := &shiftedClock{}
			dec := referrals.New(l, client, set, clock.Now, log)
			h := &Handler{Secrets: []string{"whsec_rotated_new", secret}, Live: live, Decisions: dec,
				Once: idempotency.New(idem, idempotency.Config{}), Log: log, Metrics: observe.New(out, "stripe-webhook")}
			test(t, env{invoke: httpx.FunctionURL(h), ledger: l, sim: sim, logs: logs, client: client, clock: clock})
		})
	}
}

// metricLine reports whether one log line holds every part (an EMF line's values and dimensions).
func metricLine(logs string, parts ...string) bool {
	for _, line := range strings.Split(logs, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "events", "stripe", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signed is a Function URL event carrying payload signed now, as Stripe sends it.
func signed(payload []byte) events.LambdaFunctionURLRequest {
	sig := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: time.Now()})
	ev := events.LambdaFunctionURLRequest{Body: string(payload), Headers: map[string]string{"stripe-signature": sig.Header}, RawPath: "/"}
	ev.RequestContext.HTTP.Method = "POST"
	return ev
}

type answer struct {
	Status, Reason, Error string
}

func call(t *testing.T, e env, ev events.LambdaFunctionURLRequest) (int, answer) {
	t.Helper()
	resp, err := e.invoke(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	var a answer
	if err := json.Unmarshal([]byte(resp.Body), &a); err != nil {
		t.Fatalf("body %q: %v", resp.Body, err)
	}
	return resp.StatusCode, a
}

func rfCalls(sim *rfsimtest.Sim, method, path string) int {
	n := 0
	for _, c := range sim.Server.Calls() {
		if c.Method == method && c.Path == path {
			n++
		}
	}
	return n
}

func withEventID(t *testing.T, payload []byte, id string, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	m["id"] = id
	if edit != nil {
		edit(m)
	}
	b, _ := json.Marshal(m)
	return b
}

func TestPaidInvoiceQualifiesOnceThenRenewalsCostNothing(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		status, a := call(t, e, signed(fixture(t, "invoice.paid.2024-06-20.json")))
		if status != 200 || a.Status != "processed" || !strings.HasPrefix(a.Reason, "qualified") {
			t.Fatalf("first invoice: %d %+v", status, a)
		}
		if rfCalls(e.sim, "PUT", "/api/v2/users/qualification") != 1 {
			t.Fatal("expected one qualification call")
		}
		before := len(e.sim.Server.Calls())
		// The renewal arrives in the basil shape (subscription under parent), with rf_code.
		status, a = call(t, e, signed(fixture(t, "invoice.paid.2025-03-31.basil.json")))
		if status != 200 || !strings.HasPrefix(a.Reason, "counted") {
			t.Fatalf("renewal: %d %+v", status, a)
		}
		if got := len(e.sim.Server.Calls()) - before; got != 0 {
			t.Fatalf("renewal made %d RF calls", got)
		}
		// Stripe redelivers the first event: replayed, nothing runs again.
		status, a = call(t, e, signed(fixture(t, "invoice.paid.2024-06-20.json")))
		if status != 200 || a.Status != "duplicate" {
			t.Fatalf("redelivery: %d %+v", status, a)
		}
		// Another event about the same invoice (e.g. a resend with a new id): counted once.
		other := withEventID(t, fixture(t, "invoice.paid.2024-06-20.json"), "evt_other_same_invoice", nil)
		status, a = call(t, e, signed(other))
		if status != 200 || a.Status != "duplicate" {
			t.Fatalf("second event for one invoice: %d %+v", status, a)
		}
		sp, err := e.ledger.SpendOf(context.Background(), 5)
		if err != nil || sp.Net["usd"] != 9800 {
			t.Fatalf("net %v %v", sp.Net, err)
		}
		if logs := e.logs.String(); strings.Contains(logs, "erin@example.com") || strings.Contains(logs, secret) || logs == "" {
			t.Fatalf("logs are empty or hold an email or a secret:\n%s", logs)
		}
	})
}

func TestConcurrentDeliveriesQualifyOnce(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		payload := fixture(t, "invoice.paid.2024-06-20.json")
		var wg sync.WaitGroup
		statuses := make(chan int, 20)
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := e.invoke(context.Background(), signed(payload))
				if err != nil {
					t.Error(err)
				}
				statuses <- resp.StatusCode
			}()
		}
		wg.Wait()
		close(statuses)
		ok := 0
		for s := range statuses {
			switch s {
			case 200:
				ok++
			case 503: // "the same event is in progress": Stripe retries it later
			default:
				t.Errorf("status %d", s)
			}
		}
		if ok == 0 || rfCalls(e.sim, "PUT", "/api/v2/users/qualification") != 1 {
			t.Fatalf("%d ok answers, %d qualification calls", ok, rfCalls(e.sim, "PUT", "/api/v2/users/qualification"))
		}
	})
}

func TestBadInputChangesNothing(t *testing.T) {
	payload := fixture(t, "invoice.paid.2024-06-20.json")
	good := signed(payload)
	tests := []struct {
		name   string
		ev     func() events.LambdaFunctionURLRequest
		status int
	}{
		{"no signature", func() events.LambdaFunctionURLRequest { ev := signed(payload); ev.Headers = nil; return ev }, 400},
		{"wrong secret", func() events.LambdaFunctionURLRequest {
			ev := signed(payload)
			ev.Headers["stripe-signature"] = webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: "whsec_x", Timestamp: time.Now()}).Header
			return ev
		}, 400},
		{"expired timestamp", func() events.LambdaFunctionURLRequest {
			ev := signed(payload)
			ev.Headers["stripe-signature"] = webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: time.Now().Add(-time.Hour)}).Header
			return ev
		}, 400},
		{"tampered body", func() events.LambdaFunctionURLRequest {
			ev := good
			ev.Body = strings.Replace(ev.Body, "4900", "9900", 1)
			return ev
		}, 400},
		{"signed but not JSON", func() events.LambdaFunctionURLRequest { return signed([]byte("not json")) }, 400},
		{"signed event whose object is not an invoice", func() events.LambdaFunctionURLRequest {
			return signed(withEventID(t, payload, "evt_bad_obj", func(m map[string]any) {
				m["data"] = map[string]any{"object": map[string]any{"object": "charge", "id": "ch_1"}}
			}))
		}, 400},
		{"bad base64", func() events.LambdaFunctionURLRequest {
			ev := signed(payload)
			ev.IsBase64Encoded = true
			ev.Body = "%%"
			return ev
		}, 400},
		{"over 1 MiB", func() events.LambdaFunctionURLRequest {
			return signed(withEventID(t, payload, "evt_big", func(m map[string]any) { m["padding"] = strings.Repeat("x", httpx.MaxBody) }))
		}, 413},
	}
	both(t, false, func(t *testing.T, e env) {
		for _, tt := range tests {
			status, a := call(t, e, tt.ev())
			if status != tt.status || a.Error == "" {
				t.Errorf("%s: %d %+v", tt.name, status, a)
			}
		}
		if n := len(e.sim.Server.Calls()); n != 0 {
			t.Errorf("bad input made %d RF calls", n)
		}
		if counted, _ := e.ledger.InvoiceCounted(context.Background(), "in_1RbErinFirst0001"); counted {
			t.Error("bad input counted the invoice")
		}
		// The same payload, base64-encoded as Function URLs may send it, is accepted.
		ev := signed(payload)
		ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(payload), true
		if status, a := call(t, e, ev); status != 200 || a.Status != "processed" {
			t.Errorf("base64 delivery: %d %+v", status, a)
		}
	})
}

func TestIgnoredEvents(t *testing.T) {
	both(t, true, func(t *testing.T, e env) { // a live deployment
		status, a := call(t, e, signed(fixture(t, "invoice.paid.2024-06-20.json"))) // a test-mode event
		if status != 200 || a.Status != "ignored" || !strings.Contains(a.Reason, "mode") {
			t.Fatalf("other mode: %d %+v", status, a)
		}
		if !strings.Contains(e.logs.String(), `"IgnoredOtherMode":1`) {
			t.Fatalf("no IgnoredOtherMode metric in the logs:\n%s", e.logs.String())
		}
		other := withEventID(t, fixture(t, "invoice.paid.2024-06-20.json"), "evt_pi", func(m map[string]any) {
			m["type"], m["livemode"] = "payment_intent.succeeded", true
		})
		status, a = call(t, e, signed(other))
		if status != 200 || a.Status != "ignored" || !strings.Contains(a.Reason, "not handled") {
			t.Fatalf("other type: %d %+v", status, a)
		}
		if n := len(e.sim.Server.Calls()); n != 0 {
			t.Errorf("ignored events made %d RF calls", n)
		}
	})
}

func TestRFFailureAnswers503AndTheRetrySucceeds(t *testing.T) {
	for _, fault := range []rfsim.Fault{
		{Match: "PUT /api/v2/users/qualification", Status: 500, Count: 4},
		{Match: "PUT /api/v2/users/qualification", Status: 429, Count: 4},
		{Match: "POST /api/v2/users/search", Reset: true, Count: 4},
		{Match: "PUT /api/v2/users/qualification", Latency: 4 * time.Second, Count: 2}, // the client times out
	} {
		t.Run(fmt.Sprintf("%s status %d reset %v latency %s", fault.Match, fault.Status, fault.Reset, fault.Latency), func(t *testing.T) {
			both(t, false, func(t *testing.T, e env) {
				if _, err := e.sim.Server.AddFault(fault); err != nil {
					t.Fatal(err)
				}
				payload := fixture(t, "invoice.paid.2024-06-20.json")
				if status, a := call(t, e, signed(payload)); status != 503 || a.Error == "" {
					t.Fatalf("with RF failing: %d %+v", status, a)
				}
				if _, err := e.ledger.StandingQualification(context.Background(), 5); err == nil {
					t.Fatal("a qualification was recorded although RF failed")
				}
				e.sim.Server.ClearFaults()
				if status, a := call(t, e, signed(payload)); status != 200 || !strings.HasPrefix(a.Reason, "qualified") {
					t.Fatalf("redelivery: %d %+v", status, a)
				}
			})
		})
	}
}

func erinQualified(t *testing.T, sim *rfsimtest.Sim) bool {
	t.Helper()
	u, ok := sim.Server.User(5)
	if !ok {
		t.Fatal("Erin is gone")
	}
	return u.QualifiedAt != nil
}

func mustCall(t *testing.T, e env, file, wantStatus, wantReasonPrefix string) {
	t.Helper()
	status, a := call(t, e, signed(fixture(t, file)))
	if status != 200 || a.Status != wantStatus || !strings.HasPrefix(a.Reason, wantReasonPrefix) {
		t.Fatalf("%s: %d %+v, want %s %q…", file, status, a, wantStatus, wantReasonPrefix)
	}
}

func TestRefundsReverseOnlyBelowTheThreshold(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		mustCall(t, e, "invoice.paid.2024-06-20.json", "processed", "qualified")
		// A partial refund (cumulative 10.00 of 49.00) keeps Erin above the 20.00 threshold.
		mustCall(t, e, "charge.refunded.partial.2025-03-31.basil.json", "processed", "counted")
		if !erinQualified(t, e.sim) {
			t.Fatal("a partial refund above the threshold unqualified the lead")
		}
		// The full refund (cumulative 49.00) takes her to 0: unqualified in RF, reversed in the ledger.
		mustCall(t, e, "charge.refunded.2024-06-20.json", "processed", "unqualified")
		if erinQualified(t, e.sim) {
			t.Fatal("RF still has the lead qualified")
		}
		if _, err := e.ledger.StandingQualification(context.Background(), 5); err == nil {
			t.Fatal("the ledger still has a standing qualification")
		}
		sp, _ := e.ledger.SpendOf(context.Background(), 5)
		if sp.Net["usd"] != 0 {
			t.Fatalf("net after refunds %v", sp.Net)
		}
		// The partial refund delivered late (another event id) changes nothing.
		late := withEventID(t, fixture(t, "charge.refunded.partial.2025-03-31.basil.json"), "evt_late_partial", nil)
		if status, a := call(t, e, signed(late)); status != 200 || a.Status != "duplicate" {
			t.Fatalf("late partial refund: %d %+v", status, a)
		}
		if n := rfCalls(e.sim, "PUT", "/api/v2/users/qualification"); n != 2 {
			t.Fatalf("%d qualification calls, want qualify + unqualify", n)
		}
	})
}

func TestDisputeWithdrawsAndAWonDisputeRestores(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		mustCall(t, e, "invoice.paid.2024-06-20.json", "processed", "qualified")
		mustCall(t, e, "charge.dispute.created.2024-06-20.json", "processed", "unqualified")
		if erinQualified(t, e.sim) {
			t.Fatal("dispute did not unqualify")
		}
		mustCall(t, e, "charge.dispute.closed.won.2024-06-20.json", "processed", "restored")
		if !erinQualified(t, e.sim) {
			t.Fatal("won dispute did not restore the qualification in RF")
		}
		q, err := e.ledger.StandingQualification(context.Background(), 5)
		if err != nil || q.Seq != 2 {
			t.Fatalf("restored qualification %+v %v", q, err)
		}
		sp, _ := e.ledger.SpendOf(context.Background(), 5)
		if sp.Net["usd"] != 4900 {
			t.Fatalf("net after a won dispute %v", sp.Net)
		}
	})
}

func TestLostDisputeStaysReversed(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		mustCall(t, e, "invoice.paid.2024-06-20.json", "processed", "qualified")
		mustCall(t, e, "charge.dispute.created.2024-06-20.json", "processed", "unqualified")
		mustCall(t, e, "charge.dispute.closed.lost.2024-06-20.json", "processed", "counted")
		sp, _ := e.ledger.SpendOf(context.Background(), 5)
		if sp.Net["usd"] != 0 || erinQualified(t, e.sim) {
			t.Fatalf("net %v, qualified %v", sp.Net, erinQualified(t, e.sim))
		}
	})
}

func TestReversalAfterTheRewardWasIssuedIsOnlyRecorded(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		ctx := context.Background()
		mustCall(t, e, "invoice.paid.2024-06-20.json", "processed", "qualified")
		// The sweep matched and issued Bob's reward for Erin's qualification.
		q, err := e.ledger.StandingQualification(ctx, 5)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.ledger.SeeDueReward(ctx, ledger.DueReward{ID: 77, RewardID: 1, RecipientID: 2, Metric: "amount"}); err != nil {
			t.Fatal(err)
		}
		if err := e.ledger.MatchDueReward(ctx, 77, q.Ref(), ledger.RewardSlot{RecipientID: 2, RewardID: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ledger.MarkRewardSettled(ctx, ledger.Settlement{ID: 77, RecipientID: 2, State: ledger.RewardIssued, At: time.Now(), By: ledger.SettledBySweep}); err != nil {
			t.Fatal(err)
		}
		mustCall(t, e, "charge.refunded.2024-06-20.json", "processed", "reversal_after_issue")
		if !erinQualified(t, e.sim) {
			t.Fatal("refbridge unqualified a lead whose reward was already issued")
		}
		if !metricLine(e.logs.String(), `"Events":1`, `"EventType":"charge.refunded"`, `"Outcome":"reversal_after_issue"`, `"_aws"`) {
			t.Fatal("no metric for the reversal after issue")
		}
	})
}

// A qualification backs the referrer's $25 and the lead's coupon. With the coupon issued and the
// $25 still due, the refund still unqualifies the lead, so the sweep cancels the $25 (the coupon
// is not clawed back); with both issued it comes after the payout and is only recorded: the
// lead stays qualified in RF. The ledger records the reversal in every case (it comes first, so
// that the sweep can begin no issue on a qualification being reversed).
func TestReversalWithTwoMatchedRewards(t *testing.T) {
	for _, c := range []struct {
		name         string
		issue        []int64
		want         string
		stillQualify bool // in RF
	}{
		{"one issued, one still due", []int64{78}, "unqualified", false},
		{"both issued", []int64{77, 78}, "reversal_after_issue", true},
		{"neither issued", nil, "unqualified", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			both(t, false, func(t *testing.T, e env) {
				ctx := context.Background()
				mustCall(t, e, "invoice.paid.2024-06-20.json", "processed", "qualified")
				q, err := e.ledger.StandingQualification(ctx, 5)
				if err != nil {
					t.Fatal(err)
				}
				// Bob's $25 (definition 1, due reward 77) and Erin's coupon (definition 2, due
				// reward 78), both matched by the sweep to Erin's qualification.
				for _, r := range []ledger.DueReward{
					{ID: 77, RewardID: 1, RecipientID: 2, Metric: "amount"},
					{ID: 78, RewardID: 2, RecipientID: 5, Metric: "coupon"},
				} {
					if _, err := e.ledger.SeeDueReward(ctx, r); err != nil {
						t.Fatal(err)
					}
					if err := e.ledger.MatchDueReward(ctx, r.ID, q.Ref(), ledger.RewardSlot{RecipientID: r.RecipientID, RewardID: r.RewardID}); err != nil {
						t.Fatal(err)
					}
				}
				for _, id := range c.issue {
					if _, err := e.ledger.MarkRewardSettled(ctx, ledger.Settlement{ID: id, State: ledger.RewardIssued, At: time.Now(), By: ledger.SettledBySweep}); err != nil {
						t.Fatal(err)
					}
				}
				mustCall(t, e, "charge.refunded.2024-06-20.json", "processed", c.want)
				if erinQualified(t, e.sim) != c.stillQualify {
					t.Fatalf("qualified in RF: %v, want %v", !c.stillQualify, c.stillQualify)
				}
				if q, err := e.ledger.LatestQualification(ctx, 5); err != nil || q.Standing() {
					t.Fatalf("the ledger's qualification after the refund: %+v %v, want reversed", q, err)
				}
			})
		})
	}
}

// A refund whose unqualify call fails answers 503; the redelivery finishes the reversal although
// the refund itself was counted the first time.
func TestRefundRedeliveryFinishesAFailedUnqualify(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		mustCall(t, e, "invoice.paid.2024-06-20.json", "processed", "qualified")
		if _, err := e.sim.Server.AddFault(rfsim.Fault{Match: "PUT /api/v2/users/qualification", Status: 500, Count: 2}); err != nil {
			t.Fatal(err)
		}
		if status, a := call(t, e, signed(fixture(t, "charge.refunded.2024-06-20.json"))); status != 503 {
			t.Fatalf("with RF failing: %d %+v", status, a)
		}
		e.sim.Server.ClearFaults()
		mustCall(t, e, "charge.refunded.2024-06-20.json", "processed", "unqualified")
		if erinQualified(t, e.sim) {
			t.Fatal("the lead stayed qualified in RF")
		}
	})
}

// A refund in another currency does not undo a qualification earned in dollars.
func TestRefundInAnotherCurrencyKeepsTheQualification(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		mustCall(t, e, "invoice.paid.2024-06-20.json", "processed", "qualified")
		eurInvoice := withEventID(t, fixture(t, "invoice.paid.2024-06-20.json"), "evt_eur_invoice", func(m map[string]any) {
			obj := m["data"].(map[string]any)["object"].(map[string]any)
			obj["id"], obj["currency"], obj["amount_paid"], obj["charge"] = "in_eur_1", "eur", 900, "ch_eur_1"
		})
		if status, a := call(t, e, signed(eurInvoice)); status != 200 || !strings.HasPrefix(a.Reason, "counted") {
			t.Fatalf("eur invoice: %d %+v", status, a)
		}
		eurRefund := withEventID(t, fixture(t, "charge.refunded.2024-06-20.json"), "evt_eur_refund", func(m map[string]any) {
			obj := m["data"].(map[string]any)["object"].(map[string]any)
			obj["id"], obj["currency"], obj["amount"], obj["amount_refunded"], obj["invoice"] = "ch_eur_1", "eur", 900, 900, "in_eur_1"
		})
		if status, a := call(t, e, signed(eurRefund)); status != 200 || !strings.HasPrefix(a.Reason, "counted") {
			t.Fatalf("eur refund: %d %+v", status, a)
		}
		if !erinQualified(t, e.sim) {
			t.Fatal("a euro refund unqualified a lead qualified in dollars")
		}
	})
}

// A refund of a charge whose invoice never counted (paid outside the window) changes nothing.
func TestRefundOfAnUncountedChargeIsHeld(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		mustCall(t, e, "invoice.paid.2024-06-20.json", "processed", "qualified")
		other := withEventID(t, fixture(t, "charge.refunded.2024-06-20.json"), "evt_other_charge", func(m map[string]any) {
			obj := m["data"].(map[string]any)["object"].(map[string]any)
			obj["id"], obj["invoice"] = "ch_not_counted", "in_never_counted"
		})
		if status, a := call(t, e, signed(other)); status != 200 || a.Status != "processed" || !strings.HasPrefix(a.Reason, "held:") {
			t.Fatalf("%d %+v", status, a)
		}
		if h, err := e.ledger.ChargeHoldOf(context.Background(), "ch_not_counted"); err != nil || h.InvoiceID != "in_never_counted" {
			t.Fatalf("hold %+v %v", h, err)
		}
		if sp, _ := e.ledger.SpendOf(context.Background(), 5); sp.Net["usd"] != 4900 || !erinQualified(t, e.sim) {
			t.Fatalf("net %v qualified %v", sp.Net, erinQualified(t, e.sim))
		}
	})
}

// invoiceEvent is the 2024-06-20 invoice.paid fixture with its invoice changed by edit.
func invoiceEvent(t *testing.T, id string, edit func(inv map[string]any)) []byte {
	return withEventID(t, fixture(t, "invoice.paid.2024-06-20.json"), "evt_"+id, func(m map[string]any) {
		inv := m["data"].(map[string]any)["object"].(map[string]any)
		inv["id"] = id
		edit(inv)
		if created, ok := inv["_event_created"]; ok { // a test's way to date the event itself
			m["created"] = created
			delete(inv, "_event_created")
		}
	})
}

// invoiceStep is one delivery of an invoice row and the answer it must get.
type invoiceStep struct {
	edit       func(inv map[string]any)
	wantStatus string
	wantReason string
}

// invoiceRow is one row of the issue's test list.
type invoiceRow struct {
	name          string
	mod           func(*referrals.Settings)
	wantQualified bool
	wantCalls     int
	steps         []invoiceStep
}

// TestPaidInvoiceRowsThroughTheHandler runs the issue's invoice rows end to end: each matching
// rule, a customer nobody referred, $0, below then over the threshold, outside the window, and
// a dry run.
func TestPaidInvoiceRowsThroughTheHandler(t *testing.T) {
	var tests []invoiceRow
	type step = invoiceStep
	add := func(name string, mod func(*referrals.Settings), qualified bool, calls int, steps ...step) {
		tests = append(tests, invoiceRow{name, mod, qualified, calls, steps})
	}
	add("rule: rf_code in invoice metadata", nil, true, 1, step{func(inv map[string]any) {
		inv["customer_email"], inv["metadata"] = "drifted@example.com", map[string]any{"rf_code": "eRiNlEad"}
	}, "processed", "qualified"})
	add("rule: rf_user_id in subscription metadata", nil, true, 1, step{func(inv map[string]any) {
		inv["customer_email"], inv["subscription_details"] = nil, map[string]any{"metadata": map[string]any{"rf_user_id": "5"}}
	}, "processed", "qualified"})
	add("rule: email searched in RF", nil, true, 1, step{func(map[string]any) {}, "processed", "qualified"})
	add("not referred", nil, false, 0, step{func(inv map[string]any) {
		inv["customer"], inv["customer_email"] = "cus_stranger", "stranger@example.com"
	}, "ignored", "unmatched"})
	add("$0 invoice", nil, false, 0, step{func(inv map[string]any) { inv["amount_paid"] = 0 }, "ignored", "ignored"})
	add("below the threshold, then a second invoice crossing it", nil, true, 1,
		step{func(inv map[string]any) { inv["amount_paid"] = 1500 }, "processed", "counted"},
		step{func(inv map[string]any) { inv["id"], inv["amount_paid"] = "in_second", 600 }, "processed", "qualified"})
	add("outside the window", func(s *referrals.Settings) { s.Window = 24 * time.Hour }, false, 0,
		step{func(inv map[string]any) { // Erin signed up on 2026-01-12; paid on 2026-03-01
			inv["_event_created"] = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).Unix()
		}, "ignored", "ignored"})
	add("dry run", func(s *referrals.Settings) { s.DryRun = true }, false, 0,
		step{func(map[string]any) {}, "processed", "counted: dry run"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bothWith(t, false, tt.mod, func(t *testing.T, e env) {
				for i, st := range tt.steps {
					payload := invoiceEvent(t, fmt.Sprintf("in_row_%d", i), st.edit)
					status, a := call(t, e, signed(payload))
					if status != 200 || a.Status != tt.steps[i].wantStatus || !strings.HasPrefix(a.Reason, st.wantReason) {
						t.Fatalf("step %d: %d %+v, want %s %q…", i, status, a, st.wantStatus, st.wantReason)
					}
				}
				if erinQualified(t, e.sim) != tt.wantQualified {
					t.Errorf("qualified in RF = %v", !tt.wantQualified)
				}
				if n := rfCalls(e.sim, "PUT", "/api/v2/users/qualification"); n != tt.wantCalls {
					t.Errorf("%d qualification calls, want %d", n, tt.wantCalls)
				}
			})
		})
	}
}

// A basil-and-later dispute: its charge was never named by an invoice, so without
// STRIPE_API_KEY it is acknowledged and ignored, with the reason.
func TestBasilDisputeWithoutAKey(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		mustCall(t, e, "invoice.paid.2025-03-31.basil.json", "processed", "qualified")
		status, a := call(t, e, signed(fixture(t, "charge.dispute.created.2025-03-31.basil.json")))
		if status != 200 || a.Status != "processed" || !strings.HasPrefix(a.Reason, "held:") || !strings.Contains(a.Reason, "STRIPE_API_KEY") {
			t.Fatalf("%d %+v", status, a)
		}
		if !erinQualified(t, e.sim) {
			t.Fatal("unqualified without knowing whose charge it was")
		}
	})
}

// A won dispute comes while the sweep cancels a reward of Erin's reversed qualification (its
// cancel begun, RF not called yet): qualifying her again in RF first would make RF keep no new
// reward for her, so the event is answered 503, without an error or an RF call, until the
// cancel is finished; Stripe's redelivery then restores her.
func TestWonDisputeWaitsForTheSweepsCancel(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		ctx := context.Background()
		mustCall(t, e, "invoice.paid.2024-06-20.json", "processed", "qualified")
		mustCall(t, e, "charge.dispute.created.2024-06-20.json", "processed", "unqualified")
		q1, err := e.ledger.LatestQualification(ctx, 5)
		if err != nil {
			t.Fatal(err)
		}
		cancel := ledger.Intent{Kind: ledger.IntentCancel, Target: ledger.DueRewardTarget(1042), Ref: "sweep"}
		if _, err := e.ledger.BeginCancelIfNewest(ctx, cancel, q1.Ref()); err != nil {
			t.Fatal(err)
		}
		puts := rfCalls(e.sim, "PUT", "/api/v2/users/qualification")
		won := signed(fixture(t, "charge.dispute.closed.won.2024-06-20.json"))
		if status, a := call(t, e, won); status != 503 || !strings.Contains(a.Error, "being canceled") {
			t.Fatalf("won dispute during the sweep's cancel: %d %+v, want 503", status, a)
		}
		if erinQualified(t, e.sim) || rfCalls(e.sim, "PUT", "/api/v2/users/qualification") != puts {
			t.Fatal("Erin was qualified again in RF before the sweep's cancel was done")
		}
		if strings.Contains(e.logs.String(), `"level":"ERROR"`) {
			t.Fatalf("an expected wait logged as an error: %s", e.logs.String())
		}
		if _, err := e.ledger.FinishIntent(ctx, ledger.IntentCancel, cancel.Target, ledger.IntentDone, ""); err != nil {
			t.Fatal(err)
		}
		if status, a := call(t, e, won); status != 200 || !strings.HasPrefix(a.Reason, "restored") {
			t.Fatalf("the redelivery after the cancel: %d %+v", status, a)
		}
		if !erinQualified(t, e.sim) {
			t.Fatal("the won dispute did not restore the qualification in RF")
		}
	})
}
