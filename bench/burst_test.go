package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/ledger"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/wiring"
)

// BenchmarkBurst POSTs 1,000 Stripe events, 64 at a time, to the local server (`refbridge
// serve`, built from cmd/refbridge and started as a process) on DynamoDB Local, with the RF
// simulator, and reports latency percentiles, throughput and whether every event was
// processed right. The burst is a billing day: 5% first invoices of new referred customers
// (each qualifies its lead: an RF call, through the shared bucket at the default 500/min),
// 90% renewals of referred customers already qualified (two each, so a customer's two
// renewals race), and 5% redeliveries of events of the burst, sent as concurrently as the
// rest. Customers nobody referred are left out on purpose: each of their payments searches RF,
// so a burst of them drains at RF's rate whatever the server does (see the event mix). A 503
// (the same event in progress) is retried, as Stripe retries it.
func BenchmarkBurst(b *testing.B) {
	n := size(1000, 40)
	for range b.N {
		b.StopTimer()
		res := runBurst(b, n, 64)
		b.ReportMetric(res.P50MS, "p50-ms")
		b.ReportMetric(res.P99MS, "p99-ms")
		b.ReportMetric(res.PerSecond, "events/s")
		writeResult(b, "burst", res)
		if len(res.Failures) > 0 {
			b.Fatalf("%d failures, e.g. %s", len(res.Failures), res.Failures[0])
		}
	}
}

func runBurst(b *testing.B, n, concurrency int) BurstResult {
	e := newBenchEnv(b)
	ctx := context.Background()
	res := BurstResult{Events: n, Concurrency: concurrency}
	res.FirstInvoices, res.Duplicates = n*5/100, n*5/100
	res.Renewals = n - res.FirstInvoices - res.Duplicates
	renewing := res.Renewals / 2

	// Setup, uncounted and in this process: the renewing customers are RF leads, qualified in
	// RF and in the ledger (as their first invoice left them); the new ones are leads only.
	deps, err := wiring.Local(ctx, e.getenv, io.Discard, config.Need{RFAPIToken: true},
		wiring.WithDynamoDBOptions(countDynamoDB), wiring.WithRFOptions(rf.WithLimiter(nil)))
	if err != nil {
		b.Fatal(err)
	}
	m := &mix{invoice: fixture(b, mixInvoice), refund: fixture(b, mixRefund)} // renders the burst's events
	var renewers, newcomers []*customer
	for i := range renewing + res.FirstInvoices {
		c := &customer{id: fmt.Sprintf("cus_Burst%010d", i+1), email: fmt.Sprintf("burst%d@example.com", i+1), referred: true}
		if i < renewing {
			renewers = append(renewers, c)
		} else {
			newcomers = append(newcomers, c)
		}
	}
	referLeads(b, e.sim, deps.Ledger, append(append([]*customer{}, renewers...), newcomers...))
	setupQualified(b, e, deps.Ledger, renewers)

	// The burst: renewals (invoices 2 and 3 of each renewer), first invoices, redeliveries.
	var evs []mixEvent
	seq := 0
	for _, c := range renewers {
		for inv := 2; inv <= 3; inv++ {
			seq++
			evs = append(evs, mixEvent{class: ClassRenewalReferred, customer: c, invoice: inv, seq: seq, want: "counted"})
		}
	}
	for _, c := range newcomers {
		seq++
		evs = append(evs, mixEvent{class: ClassFirstReferred, customer: c, invoice: 1, seq: seq, want: "qualified"})
	}
	rng := rand.New(rand.NewPCG(3, 0x62757273))
	for range res.Duplicates {
		dup := evs[rng.IntN(len(evs))]
		dup.class = ClassDuplicate
		evs = append(evs, dup)
	}
	rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })

	url := startServer(b, e)
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	type answer struct {
		status int
		reason string
	}
	answers := make([]answer, len(evs))
	var (
		mu        sync.Mutex
		latencies []time.Duration
	)
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	b.StartTimer()
	start := time.Now()
	for i, ev := range evs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for attempt := 0; ; attempt++ {
				body := m.payload(ev)
				req, _ := http.NewRequest("POST", url+"/stripe/webhook", bytes.NewReader(body))
				req.Header.Set("Stripe-Signature", sign(body))
				req.Header.Set("Content-Type", "application/json")
				began := time.Now()
				resp, err := client.Do(req)
				took := time.Since(began)
				var a answer
				if err != nil {
					a.reason = err.Error()
				} else {
					var r struct{ Status, Reason, Error string }
					_ = json.NewDecoder(resp.Body).Decode(&r)
					resp.Body.Close()
					a = answer{resp.StatusCode, r.Reason + r.Error}
				}
				mu.Lock()
				latencies = append(latencies, took)
				if a.status == http.StatusServiceUnavailable {
					res.Retried++
				}
				mu.Unlock()
				if a.status != http.StatusServiceUnavailable || attempt == 20 {
					answers[i] = a
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	res.Seconds = elapsed.Seconds()
	res.PerSecond = float64(len(evs)) / elapsed.Seconds()
	sortDurations(latencies)
	res.P50MS, res.P99MS, res.MaxMS = ms(percentile(latencies, 50)), ms(percentile(latencies, 99)), ms(latencies[len(latencies)-1])
	fail := func(format string, args ...any) {
		if len(res.Failures) < 20 {
			res.Failures = append(res.Failures, fmt.Sprintf(format, args...))
		}
	}
	// Every event answered 200; of an event and its redelivery, exactly one did the work.
	did := map[int]int{}
	for i, ev := range evs {
		a := answers[i]
		if a.status != 200 {
			fail("%s %d: %d %s", ev.class, ev.seq, a.status, a.reason)
			continue
		}
		if !strings.HasPrefix(a.reason, "event already processed") {
			did[ev.seq]++
			if !strings.HasPrefix(a.reason, ev.want) {
				fail("%s %d: %q, want %q", ev.class, ev.seq, a.reason, ev.want)
			}
		}
	}
	for _, ev := range evs {
		if did[ev.seq] != 1 {
			fail("event %d processed %d times", ev.seq, did[ev.seq])
		}
	}
	// RF: every new lead qualified, by exactly one call each; the ledger: every payment counted.
	for _, c := range newcomers {
		if u, ok := e.sim.Server.User(int(c.leadID)); ok && u.QualifiedAt != nil {
			res.Qualified++
		} else {
			fail("lead %d not qualified in RF", c.leadID)
		}
	}
	for _, call := range e.sim.Server.Calls() {
		if call.Method == "PUT" && strings.HasSuffix(call.Path, "/users/qualification") {
			res.QualifyCalls++
		}
	}
	if res.QualifyCalls != len(newcomers) {
		fail("%d qualification calls for %d new leads", res.QualifyCalls, len(newcomers))
	}
	for i, c := range append(append([]*customer{}, renewers...), newcomers...) {
		want := int64(2 * 4900) // two renewals (the setup counted no spend)
		if i >= len(renewers) {
			want = 4900 // a first invoice
		}
		s, err := deps.Ledger.SpendOf(ctx, c.leadID)
		if err != nil || s.Net["usd"] != want {
			fail("lead %d: net %v, want %d (%v)", c.leadID, s.Net, want, err)
		}
	}
	return res
}

// setupQualified qualifies the customers' leads in RF and in the ledger, four at a time.
func setupQualified(b *testing.B, e benchEnv, l ledger.Store, cs []*customer) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(cs))
	sem := make(chan struct{}, 4)
	for _, c := range cs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := e.sim.Server.Qualify(rfsim.UserRef{ID: int(c.leadID)}, true); err != nil {
				errs <- err
				return
			}
			lead, err := l.LeadByID(context.Background(), c.leadID)
			if err == nil {
				now := time.Now()
				_, err = l.Qualify(context.Background(), ledger.Qualification{LeadID: c.leadID, ReferrerID: lead.ReferrerID, At: now,
					EarliestAt: now, Origin: ledger.OriginRefbridge, InvoiceID: fmt.Sprintf("in_%s_0001", c.id[4:]), Rule: "customer_map"})
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// startServer builds cmd/refbridge and runs `refbridge serve` on a free loopback port, on the
// benchmark's table and simulator, until the benchmark ends; it returns the server's URL.
func startServer(b *testing.B, e benchEnv) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "refbridge")
	build := exec.Command("go", "build", "-o", bin, "./cmd/refbridge")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build refbridge: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "serve", "-addr", "127.0.0.1:0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + b.TempDir(),
		"AWS_ENDPOINT_URL_DYNAMODB=" + os.Getenv(ddbtest.EndpointEnv), "AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local",
		"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true"}
	for k, v := range e.vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var logs bytes.Buffer
	cmd.Stderr = &logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if b.Failed() {
			b.Logf("server logs (last 4 KB): %s", tail(logs.Bytes(), 4096))
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "refbridge serving on "); ok {
				found <- strings.Fields(rest)[0]
			}
		}
		close(found)
	}()
	select {
	case url, ok := <-found:
		if !ok {
			b.Fatalf("server exited: %s", tail(logs.Bytes(), 4096))
		}
		return url
	case <-time.After(30 * time.Second):
		b.Fatalf("server did not start: %s", tail(logs.Bytes(), 4096))
	}
	return ""
}

func tail(p []byte, n int) []byte {
	if len(p) > n {
		return p[len(p)-n:]
	}
	return p
}
