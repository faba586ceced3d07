package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/ledger"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/wiring"
)

// childEnv, set in the test binary's environment, makes it the memory benchmark's measured
// process (TestMain) instead of running tests: the value is the path of its instructions.
const childEnv = "REFBRIDGE_BENCH_MEMORY_CHILD"

// memorySpec is what the measured process is told.
type memorySpec struct {
	Events  int               `json:"events"`
	Samples int               `json:"samples"`
	Fixture string            `json:"fixture_dir"`
	Env     map[string]string `json:"env"`
	Leads   []ledger.Lead     `json:"leads"`
}

// BenchmarkMemory runs the stripe-webhook handler in a process of its own (this test binary,
// started again as childEnv says), built by wiring in memory (STATE_TABLE unset) against the
// simulator in this process, and has it handle the mix's events one after the other. The
// process samples its heap and RSS as it goes, then drops the handler and its stores and
// measures again, which tells the state it recorded (in Lambda, DynamoDB's) from anything the
// handling leaves behind. Peak RSS is the kernel's high-water mark (VmHWM).
func BenchmarkMemory(b *testing.B) {
	n := size(10000, 100)
	for range b.N {
		b.StopTimer()
		res := runMemory(b, n)
		b.ReportMetric(res.PeakMB, "peak-rss-MB")
		b.ReportMetric(res.LeftBehindMB, "left-behind-MB")
		b.ReportMetric(res.StateKBPerEvt, "state-KB/event")
		writeResult(b, "memory", res)
		if res.Failures > 0 {
			b.Fatalf("%d events not answered 200", res.Failures)
		}
	}
}

func runMemory(b *testing.B, n int) MemoryResult {
	sim := rfsimtest.New(b, rfsim.WithRatePerMinute(0))
	seed := rfsimtest.DemoSeed(b)
	seed.RatePerMinute = 0
	sim.MustSeed(b, seed)
	m := loadMix(b, n, 2)
	spec := memorySpec{Events: n, Samples: 10, Fixture: filepath.Join("..", "events", "stripe"),
		Env: map[string]string{"RF_API_URL": sim.URL, "RF_API_TOKEN": sim.Token, "RF_CAMPAIGN_IDS": "1",
			"STRIPE_WEBHOOK_SECRETS": stripeSecret}}
	l := ledger.NewMemory()
	referLeads(b, sim, l, m.customers)
	for _, c := range m.customers {
		if c.referred {
			lead, err := l.LeadByID(context.Background(), c.leadID)
			if err != nil {
				b.Fatal(err)
			}
			spec.Leads = append(spec.Leads, lead)
		}
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "spec.json")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+path, "GOMAXPROCS=2")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	b.StartTimer()
	err = cmd.Run()
	b.StopTimer()
	if err != nil {
		b.Fatalf("measured process: %v\n%s", err, stderr.Bytes())
	}
	var res MemoryResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		b.Fatalf("measured process said %q: %v\n%s", stdout.Bytes(), err, stderr.Bytes())
	}
	return res
}

// child is the measured process: it handles the events and prints a MemoryResult.
func child() int {
	res, err := measure(os.Getenv(childEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func measure(specPath string) (MemoryResult, error) {
	var spec memorySpec
	raw, err := os.ReadFile(specPath)
	if err == nil {
		err = json.Unmarshal(raw, &spec)
	}
	if err != nil {
		return MemoryResult{}, fmt.Errorf("spec: %w", err)
	}
	invoice, err := os.ReadFile(filepath.Join(spec.Fixture, mixInvoice))
	if err != nil {
		return MemoryResult{}, err
	}
	refund, err := os.ReadFile(filepath.Join(spec.Fixture, mixRefund))
	if err != nil {
		return MemoryResult{}, err
	}
	m, err := newMix(invoice, refund, spec.Events, 2)
	if err != nil {
		return MemoryResult{}, err
	}
	res := MemoryResult{Events: spec.Events, Base: sample(0)}
	// go test -cpuprofile profiles the benchmark's process, not this one; this does (go tool pprof).
	if path := os.Getenv("REFBRIDGE_BENCH_MEMORY_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return MemoryResult{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return MemoryResult{}, err
		}
		defer pprof.StopCPUProfile()
	}

	ctx := context.Background()
	// As the local server builds it without STATE_TABLE, but with no limiter: the in-process
	// one is held to RF_RATE_PER_MINUTE (at most 600), which would make this take an hour.
	deps, err := wiring.Local(ctx, func(k string) string { return spec.Env[k] }, io.Discard,
		config.Need{RFAPIToken: true, StripeWebhookSecrets: true}, wiring.WithRFOptions(rf.WithLimiter(nil)))
	if err != nil {
		return MemoryResult{}, err
	}
	for _, l := range spec.Leads {
		if _, err := deps.Ledger.PutLead(ctx, l); err != nil {
			return MemoryResult{}, err
		}
	}
	invoke := httpx.FunctionURL(deps.StripeWebhook())
	every := max(1, spec.Events/spec.Samples)
	start := time.Now()
	for i, ev := range m.events {
		resp, err := invoke(ctx, m.request(ev))
		if err != nil || resp.StatusCode != 200 {
			res.Failures++
		}
		if (i+1)%every == 0 {
			res.Samples = append(res.Samples, sample(i+1))
		}
	}
	res.Seconds = time.Since(start).Seconds()
	end := sample(len(m.events))
	runtime.KeepAlive(deps) // live until here: the sample above counts the stores
	res.PeakMB = procStatusMB("VmHWM")
	// Drop everything the handler reaches, the stores included, and measure what is left.
	deps, invoke, m = wiring.Deps{}, nil, nil
	res.Released = sample(end.Events)
	res.StateMB = end.HeapMB - res.Released.HeapMB
	res.StateKBPerEvt = res.StateMB * 1024 / float64(spec.Events)
	if len(res.Samples) > 0 {
		first := res.Samples[0]
		res.GrowthAfterWarmupMB = end.HeapMB - first.HeapMB
		res.RSSGrowthMB = end.RSSMB - first.RSSMB
	}
	res.LeftBehindMB = res.Released.HeapMB - res.Base.HeapMB
	return res, nil
}

// sample collects garbage and reads the heap, RSS and goroutines.
func sample(events int) MemorySample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return MemorySample{Events: events, HeapMB: float64(ms.HeapInuse) / (1 << 20), RSSMB: procStatusMB("VmRSS"),
		Goroutines: runtime.NumGoroutine()}
}

// procStatusMB reads a /proc/self/status field given in kB.
func procStatusMB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
