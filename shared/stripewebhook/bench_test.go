package stripewebhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v79"
	"github.com/stripe/stripe-go/v79/webhook"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/idempotency"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

// BenchmarkHandler measures the handler's CPU per delivery of one invoice.paid payload (the
// fixture, as Stripe sends it: pretty-printed), in-process: in-memory stores, the production
// logger and metrics writing to io.Discard, the RF simulator on loopback. Beside the handler's
// paths, two floors on the same payload, in the same run, so the ratios hold on a shared
// machine whose absolute times drift:
//
//   - floor=validate+fields: stripe-go's webhook.ValidatePayload and one json.Unmarshal into
//     the few fields refbridge reads — the least any verifying handler can do;
//   - naive=constructevent+invoice: webhook.ConstructEvent and json.Unmarshal of data.object
//     into stripe.Invoice — what a handler written from Stripe's docs does.
//
// scripts/bench turns the results into ratios (BENCHMARKS.md).
func BenchmarkHandler(b *testing.B) {
	payload := benchFixture(b, "invoice.paid.2024-06-20.json")
	b.Logf("payload: %d bytes", len(payload))
	// The same invoice under a type refbridge does not handle (Stripe sends it beside
	// invoice.paid to endpoints that enable it): answered before any state is touched.
	ignored := bytes.Replace(payload, []byte(`"type": "invoice.paid"`), []byte(`"type": "invoice.payment_succeeded"`), 1)
	if bytes.Equal(ignored, payload) {
		b.Fatal("fixture type not found")
	}
	run := func(name string, size int, op func(b *testing.B) func()) {
		b.Run(name, func(b *testing.B) {
			do := op(b)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				do()
			}
		})
	}
	run("floor=validate+fields", len(payload), func(b *testing.B) func() { return floorOp(b, payload) })
	run("naive=constructevent+invoice", len(payload), func(b *testing.B) func() { return naiveOp(b, payload) })
	run("path=duplicate", len(payload), func(b *testing.B) func() { return newBenchWorld(b).duplicateOp(b, payload) })
	run("path=ignored", len(ignored), func(b *testing.B) func() { return newBenchWorld(b).ignoredOp(b, ignored) })
	run("path=first-qualification", len(payload), func(b *testing.B) func() { return newBenchWorld(b).firstQualificationOp(b, payload) })

	// The ratios, robust to a shared machine: every iteration runs each operation once, in
	// turn, timing each; the figures are the medians of those times, so a moment of contention
	// costs all of them alike, and a preempted operation does not move the median.
	b.Run("interleaved", func(b *testing.B) {
		names := []string{"floor", "naive", "duplicate", "ignored", "first-qualification"}
		w := newBenchWorld(b)
		ops := []func(){floorOp(b, payload), naiveOp(b, payload), w.duplicateOp(b, payload), w.ignoredOp(b, ignored),
			w.firstQualificationOp(b, payload)}
		times := make([][]time.Duration, len(ops))
		b.ResetTimer()
		for b.Loop() {
			for i, op := range ops {
				start := time.Now()
				op()
				times[i] = append(times[i], time.Since(start))
			}
		}
		b.StopTimer()
		med := make([]float64, len(ops))
		for i := range ops {
			med[i] = float64(median(times[i]))
			b.ReportMetric(med[i], names[i]+"-median-ns")
		}
		for i := 1; i < len(ops); i++ {
			b.ReportMetric(med[i]/med[0], names[i]+"/floor")
		}
	})
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// floorOp is the least a verifying handler can do: stripe-go's signature check and one decode
// of the fields refbridge reads.
func floorOp(b *testing.B, payload []byte) func() {
	header := signHeader(payload)
	return func() {
		if err := webhook.ValidatePayload(payload, header, secret); err != nil {
			b.Fatal(err)
		}
		var ev floorEvent
		if err := json.Unmarshal(payload, &ev); err != nil {
			b.Fatal(err)
		}
		if ev.Data.Object.ID == "" {
			b.Fatal("no invoice id")
		}
	}
}

// naiveOp is what a handler written from Stripe's docs does.
func naiveOp(b *testing.B, payload []byte) func() {
	header := signHeader(payload)
	return func() {
		ev, err := webhook.ConstructEvent(payload, header, secret)
		if err != nil {
			b.Fatal(err)
		}
		var inv stripe.Invoice
		if err := json.Unmarshal(ev.Data.Raw, &inv); err != nil {
			b.Fatal(err)
		}
		if inv.ID == "" {
			b.Fatal("no invoice id")
		}
	}
}

// duplicateOp is Stripe's redelivery of an event handled before.
func (w *benchWorld) duplicateOp(b *testing.B, payload []byte) func() {
	req := w.request(payload)
	if out := w.h.Handle(context.Background(), req); out.Kind != httpx.Processed {
		b.Fatalf("first delivery: %+v", out)
	}
	return func() {
		if out := w.h.Handle(context.Background(), req); out.Kind != httpx.Duplicate {
			b.Fatalf("redelivery: %+v", out)
		}
	}
}

// ignoredOp is a delivery of a type refbridge does not handle.
func (w *benchWorld) ignoredOp(b *testing.B, payload []byte) func() {
	req := w.request(payload)
	return func() {
		if out := w.h.Handle(context.Background(), req); out.Kind != httpx.Ignored {
			b.Fatalf("%+v", out)
		}
	}
}

// firstQualificationOp is a new customer's first invoice, over the threshold: lead found by
// its customer mapping, spend counted, intent, PUT /users/qualification, confirmed. The leads
// are prepared in rounds; a round's preparation runs with the timer stopped.
func (w *benchWorld) firstQualificationOp(b *testing.B, payload []byte) func() {
	round := 1024
	if testing.Short() { // the CI smoke run: -benchtime=1x
		round = 4
	}
	reqs := w.firstInvoices(b, payload, round)
	next := 0
	return func() {
		if next == len(reqs) {
			b.StopTimer()
			reqs, next = w.firstInvoices(b, payload, round), 0
			b.StartTimer()
		}
		if out := w.h.Handle(context.Background(), reqs[next]); out.Kind != httpx.Processed {
			b.Fatalf("%+v", out)
		}
		next++
	}
}

// floorEvent is every field refbridge reads of an invoice.paid, in one struct: the floor's
// "decode only what is needed".
type floorEvent struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Livemode bool   `json:"livemode"`
	Created  int64  `json:"created"`
	Data     struct {
		Object struct {
			Object        string            `json:"object"`
			ID            string            `json:"id"`
			Customer      string            `json:"customer"`
			CustomerEmail string            `json:"customer_email"`
			Currency      string            `json:"currency"`
			AmountPaid    int64             `json:"amount_paid"`
			BillingReason string            `json:"billing_reason"`
			Status        string            `json:"status"`
			Metadata      map[string]string `json:"metadata"`
			Subscription  string            `json:"subscription"`
			Charge        string            `json:"charge"`
			PaymentIntent string            `json:"payment_intent"`
		} `json:"object"`
	} `json:"data"`
}

func benchFixture(b *testing.B, name string) []byte {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "events", "stripe", name))
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

func signHeader(payload []byte) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: time.Now()}).Header
}

// benchWorld is the handler as production builds it, in memory, against the simulator.
type benchWorld struct {
	h      *Handler
	ledger ledger.Store
	sim    *rfsimtest.Sim
	seq    int
}

func newBenchWorld(b *testing.B) *benchWorld {
	b.Helper()
	// No rate limit on either side: this measures CPU, not pacing (BenchmarkSweepPacing does).
	sim := rfsimtest.New(b, rfsim.WithRatePerMinute(0))
	seed := rfsimtest.DemoSeed(b)
	seed.RatePerMinute = 0
	sim.MustSeed(b, seed)
	client, err := rf.New(sim.URL, sim.Token, rf.WithLimiter(nil))
	if err != nil {
		b.Fatal(err)
	}
	th, _ := config.ParseThreshold("2000")
	l := ledger.NewMemory()
	log := observe.NewLogger(io.Discard, observe.LogOptions{Function: "stripe-webhook", Level: slog.LevelInfo,
		Secrets: []string{secret, sim.Token}})
	dec := referrals.New(l, client, referrals.Settings{CampaignIDs: []int64{1}, SignupCampaignID: 1, Threshold: th,
		UnmatchedRetry: 72 * time.Hour}, nil, log)
	h := &Handler{Secrets: []string{secret}, Decisions: dec,
		Once: idempotency.New(idempotency.NewMemory(), idempotency.Config{Expiration: 4 * 24 * time.Hour}),
		Log:  log, Metrics: observe.New(io.Discard, "stripe-webhook")}
	return &benchWorld{h: h, ledger: l, sim: sim}
}

// request is a delivery of payload as the Function URL adapter hands it to the handler.
func (w *benchWorld) request(payload []byte) httpx.Request {
	return httpx.Request{Method: "POST", Path: "/", Body: payload,
		Header: map[string]string{"stripe-signature": signHeader(payload), "content-type": "application/json"}}
}

// firstInvoices makes n new referred leads (in RF and in the ledger, with their Stripe
// customer mapped, as a signup leaves them) and a signed first invoice.paid for each.
func (w *benchWorld) firstInvoices(b *testing.B, payload []byte, n int) []httpx.Request {
	b.Helper()
	reqs := make([]httpx.Request, 0, n)
	for range n {
		w.seq++
		u, err := w.sim.Server.CreateUser(rfsim.NewUser{CampaignID: 1, FirstName: "Lead", Email: fmt.Sprintf("lead%d@example.com", w.seq),
			Referrer: &rfsim.ReferrerRef{Field: "code", Value: "aLiCeRef"}})
		if err != nil {
			b.Fatal(err)
		}
		cus := fmt.Sprintf("cus_Bench%010d", w.seq)
		if _, err := w.ledger.PutLead(context.Background(), ledger.Lead{ID: int64(u.ID), Code: u.Code, ReferrerID: 1, CampaignID: 1,
			Source: ledger.SourceSignup, StripeCustomerID: cus}); err != nil {
			b.Fatal(err)
		}
		p := bytes.ReplaceAll(payload, []byte("cus_RbErinDemo0001"), []byte(cus))
		p = bytes.ReplaceAll(p, []byte("evt_1RbInvoicePaidOld01"), fmt.Appendf(nil, "evt_Bench%013d", w.seq))
		p = bytes.ReplaceAll(p, []byte("in_1RbErinFirst0001"), fmt.Appendf(nil, "in_Bench%011d", w.seq))
		p = bytes.ReplaceAll(p, []byte("ch_3RbErinDemo0001"), fmt.Appendf(nil, "ch_Bench%010d", w.seq))
		reqs = append(reqs, w.request(p))
	}
	return reqs
}
