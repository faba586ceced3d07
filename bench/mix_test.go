package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"gopkg.in/yaml.v3"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/ratelimit"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/wiring"
)

// mixEvent is one delivery of the mix; its payload is rendered when it is sent (mix.payload),
// so a process handling the mix does not hold 10,000 bodies.
type mixEvent struct {
	class    string
	customer *customer // all of a customer's events are delivered in order, by one worker
	refund   bool      // a charge.refunded, else an invoice.paid
	invoice  int       // the customer's nth invoice (paid, or whose charge is refunded)
	seq      int       // the event's number: its id
	// want is the start of the answer's reason ("qualified", "unmatched", "duplicate", ...);
	// "" accepts any 200.
	want string
}

// customer is one Stripe customer of the mix.
type customer struct {
	id, email string
	referred  bool
	leadID    int64
	invoices  int
	churned   bool // refunded: a customer who asks for a refund cancels, and pays no more
}

// mix generates n deliveries in the proportions — 5% first invoices of referred
// customers, 15% first invoices of customers nobody referred, 70% renewals (of customers who
// paid before, referred or not, as they come), 5% redeliveries of an earlier event, 5% full
// refunds of an earlier payment — in a random order that keeps each customer's events in
// their order. Referred customers are leads of the demo campaign, with their Stripe customer
// mapped (as attribution at signup leaves them); nobody else is known to RF.
type mix struct {
	invoice, refund []byte
	customers       []*customer
	events          []mixEvent
}

func newMix(invoice, refund []byte, n int, seed uint64) (*mix, error) {
	m := &mix{invoice: invoice, refund: refund}
	counts := map[string]int{
		ClassFirstReferred: n * 5 / 100, ClassFirstNotReferred: n * 15 / 100, "renewal": n * 70 / 100,
		ClassDuplicate: n * 5 / 100, "refund": n * 5 / 100,
	}
	counts["renewal"] += n - counts[ClassFirstReferred] - counts[ClassFirstNotReferred] - counts["renewal"] - counts[ClassDuplicate] - counts["refund"]
	var labels []string
	for _, c := range []string{ClassFirstReferred, ClassFirstNotReferred, "renewal", ClassDuplicate, "refund"} {
		for range counts[c] {
			labels = append(labels, c)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x6d6978))
	rng.Shuffle(len(labels), func(i, j int) { labels[i], labels[j] = labels[j], labels[i] })

	type paid struct {
		c       *customer
		invoice int
	}
	var active []*customer // paid once, not churned
	var payments []paid    // not refunded
	var deferred []string  // labels whose precondition did not hold yet
	seq := 0
	try := func(label string) bool {
		seq++
		switch label {
		case ClassFirstReferred, ClassFirstNotReferred:
			c := &customer{id: fmt.Sprintf("cus_Mix%010d", len(m.customers)+1), referred: label == ClassFirstReferred}
			c.email = fmt.Sprintf("payer%d@example.com", len(m.customers)+1)
			m.customers = append(m.customers, c)
			want := "qualified"
			if !c.referred {
				want = "unmatched"
			}
			m.pay(c, label, seq, want)
			active = append(active, c)
			payments = append(payments, paid{c, c.invoices})
		case "renewal":
			if len(active) == 0 {
				return false
			}
			c := active[rng.IntN(len(active))]
			class, want := ClassRenewalReferred, "counted"
			if !c.referred {
				class, want = ClassRenewalNot, "unmatched"
			}
			m.pay(c, class, seq, want)
			payments = append(payments, paid{c, c.invoices})
		case ClassDuplicate:
			if len(m.events) == 0 {
				return false
			}
			dup := m.events[rng.IntN(len(m.events))]
			dup.class, dup.want = ClassDuplicate, "duplicate"
			m.events = append(m.events, dup)
		case "refund":
			if len(payments) == 0 {
				return false
			}
			i := rng.IntN(len(payments))
			p := payments[i]
			payments = slices.Delete(payments, i, i+1)
			class := ClassRefundReferred
			if !p.c.referred {
				class = ClassRefundNot
			}
			m.refundOf(p.c, p.invoice, class, seq)
			if !p.c.churned {
				p.c.churned = true
				active = slices.DeleteFunc(active, func(c *customer) bool { return c == p.c })
			}
		}
		return true
	}
	for _, label := range labels {
		if !try(label) {
			deferred = append(deferred, label)
			continue
		}
		for len(deferred) > 0 && try(deferred[0]) {
			deferred = deferred[1:]
		}
	}
	for _, label := range deferred {
		if !try(label) {
			return nil, fmt.Errorf("mix: cannot place a %s", label)
		}
	}
	return m, nil
}

// loadMix is newMix on the fixtures in events/stripe.
func loadMix(b *testing.B, n int, seed uint64) *mix {
	b.Helper()
	m, err := newMix(fixture(b, mixInvoice), fixture(b, mixRefund), n, seed)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// The fixtures the mix's events are made from.
const (
	mixInvoice = "invoice.paid.2024-06-20.json"
	mixRefund  = "charge.refunded.2024-06-20.json"
)

// pay adds the customer's next invoice.paid (the fixture, with this customer's ids).
func (m *mix) pay(c *customer, class string, seq int, want string) {
	c.invoices++
	m.events = append(m.events, mixEvent{class: class, customer: c, invoice: c.invoices, seq: seq, want: want})
}

// refundOf adds a full refund of the customer's nth invoice's charge.
func (m *mix) refundOf(c *customer, invoice int, class string, seq int) {
	want := "held" // nobody's charge yet: kept on the charge until a payment of it counts for a lead
	if c.referred {
		want = "" // unqualified, or counted when later payments keep the lead over the threshold
	}
	m.events = append(m.events, mixEvent{class: class, customer: c, refund: true, invoice: invoice, seq: seq, want: want})
}

// payload renders the event: the fixture with the customer's, invoice's and event's ids.
func (m *mix) payload(ev mixEvent) []byte {
	c := ev.customer
	tmpl, id := m.invoice, fmt.Sprintf("evt_MixPaid%011d", ev.seq)
	if ev.refund {
		tmpl, id = m.refund, fmt.Sprintf("evt_MixRefund%09d", ev.seq)
	}
	r := strings.NewReplacer(
		"evt_1RbInvoicePaidOld01", id,
		"evt_1RbChargeRefunded1", id,
		"in_1RbErinFirst0001", fmt.Sprintf("in_%s_%04d", c.id[4:], ev.invoice),
		"ch_3RbErinDemo0001", fmt.Sprintf("ch_%s_%04d", c.id[4:], ev.invoice),
		"pi_3RbErinDemo0001", fmt.Sprintf("pi_%s_%04d", c.id[4:], ev.invoice),
		"sub_1RbErinDemo0001", "sub_"+c.id[4:],
		"cus_RbErinDemo0001", c.id,
		"erin@example.com", c.email,
	)
	p := []byte(r.Replace(string(tmpl)))
	if !ev.refund && ev.invoice > 1 {
		p = bytes.Replace(p, []byte(`"billing_reason": "subscription_create"`), []byte(`"billing_reason": "subscription_cycle"`), 1)
	}
	return p
}

// request is the event as Stripe delivers it to the Function URL, signed now.
func (m *mix) request(ev mixEvent) events.LambdaFunctionURLRequest {
	p := m.payload(ev)
	req := events.LambdaFunctionURLRequest{Body: string(p), RawPath: "/",
		Headers: map[string]string{"stripe-signature": sign(p), "content-type": "application/json"}}
	req.RequestContext.HTTP.Method = "POST"
	return req
}

// BenchmarkEventMix delivers a realistic mix of Stripe events (newMix) to the stripe-webhook
// handler as Lambda runs it (the Function URL adapter, wiring's DynamoDB stores on DynamoDB
// Local, the shared rate limiter in the same table, the RF simulator) and counts, per event
// class, the DynamoDB requests with the read and write units DynamoDB Local reports, and the
// RF calls. It needs DynamoDB Local (scripts/dynamodb-local run).
func BenchmarkEventMix(b *testing.B) {
	n := size(10000, 200)
	for range b.N {
		res := runMix(b, n, 4)
		b.ReportMetric(res.All.DDBRequests, "ddb-req/event")
		b.ReportMetric(res.All.RFCalls, "rf-calls/event")
		b.ReportMetric(res.Classes[ClassDuplicate].DDBRequests, "ddb-req/duplicate")
		b.ReportMetric(res.Classes[ClassFirstReferred].DDBRequests, "ddb-req/first-qualification")
		b.ReportMetric(res.Cost.Total, "usd/million-events")
		writeResult(b, "mix", res)
		if len(res.Failures) > 0 {
			b.Fatalf("%d events not processed as expected, e.g. %s", len(res.Failures), res.Failures[0])
		}
	}
}

// benchEnv is the environment wiring.Local reads, for the handler against DynamoDB Local and
// the simulator.
type benchEnv struct {
	table string
	sim   *rfsimtest.Sim
	vars  map[string]string
}

// newBenchEnv makes a fresh table on DynamoDB Local and a simulator with the demo campaign and
// no rate limit (the benchmarks that are not about pacing must not wait on it), and sets the
// SDK's variables in the process (the AWS configuration reads them there).
func newBenchEnv(b *testing.B) benchEnv {
	b.Helper()
	_, table := ddbtest.Table(b)
	sim := rfsimtest.New(b, rfsim.WithRatePerMinute(0))
	seed := rfsimtest.DemoSeed(b)
	seed.RatePerMinute = 0
	sim.MustSeed(b, seed)
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_DYNAMODB": os.Getenv(ddbtest.EndpointEnv), "AWS_ACCESS_KEY_ID": "local",
		"AWS_SECRET_ACCESS_KEY": "local", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
	} {
		b.Setenv(k, v)
	}
	return benchEnv{table: table, sim: sim, vars: map[string]string{
		"STATE_TABLE":            table,
		"RF_API_URL":             sim.URL,
		"RF_API_TOKEN":           sim.Token,
		"RF_CAMPAIGN_IDS":        "1",
		"STRIPE_WEBHOOK_SECRETS": stripeSecret,
	}}
}

func (e benchEnv) getenv(k string) string { return e.vars[k] }

// referLeads makes each referred customer an RF lead of one of the demo referrers, and records
// it in the ledger with its Stripe customer, as attribution at signup does (uncounted setup).
func referLeads(b *testing.B, sim *rfsimtest.Sim, l ledger.Store, customers []*customer) {
	b.Helper()
	codes := []string{"aLiCeRef", "bObbYRef", "cArOlRef"}
	for i, c := range customers {
		if !c.referred {
			continue
		}
		u, err := sim.Server.CreateUser(rfsim.NewUser{CampaignID: 1, FirstName: "Payer", Email: c.email,
			Referrer: &rfsim.ReferrerRef{Field: "code", Value: codes[i%len(codes)]}})
		if err != nil {
			b.Fatal(err)
		}
		c.leadID = int64(u.ID)
		lead := ledger.Lead{ID: c.leadID, Code: u.Code, ReferrerID: int64(*u.ReferrerID), CampaignID: 1,
			Source: ledger.SourceSignup, StripeCustomerID: c.id, SignedUpAt: time.Now()}
		lead.SetEmail(c.email)
		if _, err := l.PutLead(context.Background(), lead); err != nil {
			b.Fatal(err)
		}
	}
}

func runMix(b *testing.B, n, workers int) MixResult {
	b.StopTimer()
	e := newBenchEnv(b)
	m := loadMix(b, n, 1)
	// A limiter on the same table, as Lambda's, but fast: RF_RATE_PER_MINUTE (at most 600)
	// would make 10,000 events take the better part of an hour. Each RF call still takes its
	// token through DynamoDB, and those requests are counted.
	bucket, err := ratelimit.New(dynamodb.New(ddbtest.Client(b).Options(), countDynamoDB), e.table, "rf",
		ratelimit.Limit{Events: 1_000_000, Per: time.Minute, Burst: 10})
	if err != nil {
		b.Fatal(err)
	}
	deps, err := wiring.Local(context.Background(), e.getenv, io.Discard, config.Need{RFAPIToken: true, StripeWebhookSecrets: true},
		wiring.WithDynamoDBOptions(countDynamoDB), wiring.WithRFOptions(observeRF(), rf.WithLimiter(bucket)))
	if err != nil {
		b.Fatal(err)
	}
	referLeads(b, e.sim, deps.Ledger, m.customers)
	invoke := httpx.FunctionURL(deps.StripeWebhook())

	type outcome struct {
		class  string
		t      *tally
		took   time.Duration
		reason string
		status int
		want   string
	}
	queues := make([][]mixEvent, workers)
	for _, ev := range m.events {
		h := fnv.New32a()
		h.Write([]byte(ev.customer.id))
		w := int(h.Sum32() % uint32(workers))
		queues[w] = append(queues[w], ev)
	}
	results := make([][]outcome, workers)
	var wg sync.WaitGroup
	b.StartTimer()
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for _, ev := range queues[w] {
				t := &tally{}
				req := m.request(ev)
				began := time.Now()
				resp, err := invoke(withTally(context.Background(), t), req)
				o := outcome{class: ev.class, t: t, took: time.Since(began), want: ev.want}
				if err != nil {
					o.reason = err.Error()
				} else {
					o.status = resp.StatusCode
					var a struct{ Status, Reason, Error string }
					_ = json.Unmarshal([]byte(resp.Body), &a)
					o.reason = a.Reason + a.Error
				}
				results[w] = append(results[w], o)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	res := MixResult{Events: len(m.events), Workers: workers, Seconds: elapsed.Seconds(), Classes: map[string]*ClassStats{},
		MemoryMB: lambdaMemoryMB(b), ClassOrder: ClassOrder}
	type acc struct {
		s     *ClassStats
		times []time.Duration
		ddb   int
		rf    int
		rru   float64
		wru   float64
		est   float64
	}
	accs := map[string]*acc{}
	get := func(class string) *acc {
		a := accs[class]
		if a == nil {
			a = &acc{s: &ClassStats{DDBByOperation: map[string]int{}, RFByRoute: map[string]int{}}}
			accs[class] = a
		}
		return a
	}
	for _, rs := range results {
		for _, o := range rs {
			ok := o.status == 200 && strings.HasPrefix(o.reason, o.want)
			if o.class == ClassDuplicate {
				ok = o.status == 200 && strings.HasPrefix(o.reason, "event already processed")
			}
			if !ok && len(res.Failures) < 20 {
				res.Failures = append(res.Failures, fmt.Sprintf("%s: %d %q (want %q)", o.class, o.status, o.reason, o.want))
			}
			for _, a := range []*acc{get(o.class), get("all")} {
				a.s.Events++
				a.times = append(a.times, o.took)
				a.ddb += o.t.ddbRequests
				a.rf += o.t.rfCalls
				a.rru += o.t.rru
				a.wru += o.t.wru
				a.est += o.t.estimatedWRU
				for k, v := range o.t.ddb {
					a.s.DDBByOperation[k] += v
				}
				for k, v := range o.t.rf {
					a.s.RFByRoute[k] += v
				}
			}
		}
	}
	for class, a := range accs {
		n := float64(a.s.Events)
		a.s.DDBRequests, a.s.RFCalls = float64(a.ddb)/n, float64(a.rf)/n
		a.s.RRU, a.s.WRU, a.s.EstimatedWRU = a.rru/n, a.wru/n, a.est/n
		sortDurations(a.times)
		var sum time.Duration
		for _, d := range a.times {
			sum += d
		}
		a.s.MeanMS, a.s.P99MS = ms(sum/time.Duration(len(a.times))), ms(percentile(a.times, 99))
		if class == "all" {
			res.All = a.s
		} else {
			res.Classes[class] = a.s
		}
	}
	res.Cost = CostPerMillion(res.MemoryMB, res.All.DDBRequests, res.All.WRU, res.All.RRU, res.All.RFCalls)
	unmatched := 0
	for _, c := range []string{ClassFirstNotReferred, ClassRenewalNot} {
		if cs := res.Classes[c]; cs != nil {
			unmatched += cs.Events
		}
	}
	res.UnmatchedShare = float64(unmatched) / float64(res.Events)
	res.UnmatchedRetry = retryUnmatched(b, deps)
	return res
}

// retryUnmatched retries up to 50 waiting unmatched invoices as one sweep run does, and
// returns what a retry costs.
func retryUnmatched(b *testing.B, deps wiring.Deps) *ClassStats {
	ctx := context.Background()
	due, err := deps.Ledger.UnmatchedDue(ctx, time.Now().Add(time.Minute), 50)
	if err != nil {
		b.Fatal(err)
	}
	st := &ClassStats{DDBByOperation: map[string]int{}, RFByRoute: map[string]int{}}
	var ddb, rfc int
	for _, u := range due {
		t := &tally{}
		tctx := withTally(ctx, t)
		out, err := deps.Decisions.RetryUnmatched(tctx, u)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := deps.Ledger.RescheduleUnmatched(tctx, u.InvoiceID, time.Now().Add(time.Hour), out.Reason); err != nil {
			b.Fatal(err)
		}
		st.Events++
		ddb += t.ddbRequests
		rfc += t.rfCalls
		st.RRU += t.rru
		st.WRU += t.wru
		for k, v := range t.ddb {
			st.DDBByOperation[k] += v
		}
	}
	if st.Events > 0 {
		n := float64(st.Events)
		st.DDBRequests, st.RFCalls, st.RRU, st.WRU = float64(ddb)/n, float64(rfc)/n, st.RRU/n, st.WRU/n
	}
	return st
}

// lambdaMemoryMB is the functions' configured memory (template.yaml's Globals).
func lambdaMemoryMB(b *testing.B) int {
	b.Helper()
	raw, err := os.ReadFile("../template.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var t struct {
		Globals struct {
			Function struct {
				MemorySize int `yaml:"MemorySize"`
			} `yaml:"Function"`
		} `yaml:"Globals"`
	}
	if err := yaml.Unmarshal(raw, &t); err != nil {
		b.Fatal(err)
	}
	if t.Globals.Function.MemorySize == 0 {
		b.Fatal("template.yaml: no Globals.Function.MemorySize")
	}
	return t.Globals.Function.MemorySize
}
