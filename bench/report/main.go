// Command report writes BENCHMARKS.md from one run of refbridge's benchmarks: the result lines
// of `go test -bench -json` and the figures the bench package wrote to its results folder. It
// states the machine and the commands, every figure beside its target, met or not, and for a
// target missed, why and what would close the gap. scripts/bench runs it (`make bench`).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/refbridge/refbridge/bench"
)

func main() {
	var (
		jsonFiles = flag.String("json", "", "comma-separated files of `go test -json -bench` output")
		results   = flag.String("results", "", "the folder the benchmarks wrote their figures to")
		out       = flag.String("out", "BENCHMARKS.md", "the file to write")
		commands  = flag.String("commands", "", "a file holding the commands that ran, one a line")
		elapsed   = flag.Float64("elapsed", 0, "seconds the whole run took")
		loadStart = flag.String("load-start", "", "/proc/loadavg when the run started")
		loadEnd   = flag.String("load-end", "", "/proc/loadavg when the benchmarks ended")
		cache     = flag.String("cache", "", "the Go build cache at the start: empty or warm")
		cpu       = flag.Float64("cpu", 0, "CPU seconds (user + system) the run's processes used")
	)
	flag.Parse()
	r := &report{results: *results, elapsed: *elapsed, cpu: *cpu, loadStart: *loadStart, loadEnd: *loadEnd, cache: *cache}
	if err := r.read(strings.Split(*jsonFiles, ","), *commands); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	md := r.render()
	if err := os.WriteFile(*out, md, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	fmt.Printf("report: wrote %s (%d targets met of %d)\n", *out, r.met, len(r.targets))
}

// result is one benchmark result line: its iterations and its values by unit.
type result struct {
	n      int
	values map[string]float64
}

type report struct {
	results   string
	elapsed   float64
	cpu       float64 // CPU seconds of the run's processes; 0: unknown
	loadStart string
	loadEnd   string
	cache     string
	commands  []string
	benches   map[string]result // by name, without the -GOMAXPROCS suffix
	failed    []string          // packages or benchmarks that failed

	mix    *bench.MixResult
	pacing *bench.PacingResult
	// pacingLatency is the pacing with RF's latency added.
	pacingLatency *bench.PacingResult
	cold          []bench.FunctionStart
	memory        *bench.MemoryResult
	burst         *bench.BurstResult
	targets       []target
	met           int
	sectionsB     bytes.Buffer
}

// target is one of the targets and how this run did.
type target struct {
	section, what, measured, limit string
	met                            bool
	missing                        bool   // the figure was not produced
	gap                            string // why it is missed, and the plan (markdown), when missed
}

func (r *report) read(files []string, commandsFile string) error {
	r.benches = map[string]result{}
	for _, f := range files {
		if f == "" {
			continue
		}
		if err := r.readJSON(f); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	if commandsFile != "" {
		raw, err := os.ReadFile(commandsFile)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				r.commands = append(r.commands, l)
			}
		}
	}
	load := func(name string, v any) bool {
		raw, err := os.ReadFile(filepath.Join(r.results, name+".json"))
		if err != nil {
			return false
		}
		if err := json.Unmarshal(raw, v); err != nil {
			r.failed = append(r.failed, name+".json: "+err.Error())
			return false
		}
		return true
	}
	r.mix, r.pacing, r.memory, r.burst = &bench.MixResult{}, &bench.PacingResult{}, &bench.MemoryResult{}, &bench.BurstResult{}
	if !load("mix", r.mix) {
		r.mix = nil
	}
	if !load("pacing", r.pacing) {
		r.pacing = nil
	}
	r.pacingLatency = &bench.PacingResult{}
	if !load("pacing-rf-latency", r.pacingLatency) {
		r.pacingLatency = nil
	}
	if !load("memory", r.memory) {
		r.memory = nil
	}
	if !load("burst", r.burst) {
		r.burst = nil
	}
	load("coldstart", &r.cold)
	return nil
}

// readJSON collects the benchmark result lines of a `go test -json` stream. A result line may
// come in several output events (the name before the run, the figures after), so each
// package's output is joined first.
func (r *report) readJSON(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	outputs := map[string]*strings.Builder{}
	var order []string
	dec := json.NewDecoder(f)
	for {
		var ev struct {
			Action, Package, Test, Output string
		}
		if err := dec.Decode(&ev); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
		if outputs[ev.Package] == nil {
			outputs[ev.Package] = &strings.Builder{}
			order = append(order, ev.Package)
		}
		switch ev.Action {
		case "output":
			outputs[ev.Package].WriteString(ev.Output)
		case "fail":
			name := ev.Package
			if ev.Test != "" {
				name += " " + ev.Test
			}
			r.failed = append(r.failed, name)
		}
	}
	for _, pkg := range order {
		sc := bufio.NewScanner(strings.NewReader(outputs[pkg].String()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			name, res, ok := parseResult(sc.Text())
			if ok {
				r.benches[name] = res
			}
		}
	}
	return nil
}

// parseResult reads "BenchmarkX/y-2  <n>  <value> <unit>  <value> <unit> ...".
func parseResult(line string) (string, result, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
		return "", result{}, false
	}
	n, err := strconv.Atoi(f[1])
	if err != nil || len(f[2:])%2 != 0 {
		return "", result{}, false
	}
	res := result{n: n, values: map[string]float64{}}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return "", result{}, false
		}
		res.values[f[i+1]] = v
	}
	name := f[0]
	if i := strings.LastIndex(name, "-"); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	return name, res, true
}

func (r *report) value(bench, unit string) (float64, bool) {
	res, ok := r.benches[bench]
	if !ok {
		return 0, false
	}
	v, ok := res.values[unit]
	return v, ok
}

func (r *report) add(t target) {
	if t.met && !t.missing {
		r.met++
	}
	r.targets = append(r.targets, t)
}

func (r *report) render() []byte {
	var body bytes.Buffer
	r.handler(&body)
	r.mixSection(&body)
	r.pacingSection(&body)
	r.coldSection(&body)
	r.memorySection(&body)
	r.burstSection(&body)

	var b bytes.Buffer
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (`scripts/bench` runs the benchmarks, `go run ./bench/report` writes this file) on %s. "+
		"Every figure below is from that one run; a figure that compares is a ratio taken in the same run, since absolute times drift on a shared machine. "+
		"Regenerate it with `make bench`; the CI runs each benchmark once (`-short -benchtime=1x`, in `make test`) so none of them rots.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "## Machine\n\n")
	for _, l := range machine() {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	if r.loadStart != "" {
		end := r.loadEnd
		if end == "" {
			end = readFile("/proc/loadavg")
		}
		fmt.Fprintf(&b, "- load average (1, 5, 15 min) at the start: %s; at the end: %s (the machine is shared: other jobs ran meanwhile)\n",
			loadFields(r.loadStart), loadFields(end))
	}
	if r.elapsed > 0 {
		cache := ""
		switch r.cache {
		case "empty":
			cache = ", from an empty Go build cache (every build included, as on a fresh machine)"
		case "warm":
			cache = ", with a warm Go build cache"
		}
		fmt.Fprintf(&b, "- `make bench` took **%s**%s (target: under 10 minutes on a fresh machine)\n", fmtDuration(r.elapsed), cache)
		if r.cpu > 0 {
			fmt.Fprintf(&b, "- its processes used %s of CPU time (user + system of the builds and the benchmarks), which "+
				"%d idle cores would do in %s at best; the pacing benchmarks also wait for RF's rate, about a minute and a half "+
				"that the bootstraps' builds fill\n",
				fmtDuration(r.cpu), runtime.NumCPU(), fmtDuration(r.cpu/float64(runtime.NumCPU())))
		}
	}
	fmt.Fprintf(&b, "\n## Commands\n\n```sh\n")
	for _, c := range r.commands {
		fmt.Fprintln(&b, c)
	}
	fmt.Fprintf(&b, "```\n\n")
	if len(r.failed) > 0 {
		fmt.Fprintf(&b, "**Failures in this run**: %s\n\n", strings.Join(r.failed, "; "))
	}

	fmt.Fprintf(&b, "## Targets\n\n%d of %d met.\n\n| | figure | measured | target | |\n|---|---|---|---|---|\n", r.met, len(r.targets))
	for _, t := range r.targets {
		mark := "met"
		switch {
		case t.missing:
			mark = "**not measured**"
		case !t.met:
			mark = "**missed**: see [gaps](#gaps-and-plans)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", t.section, t.what, t.measured, t.limit, mark)
	}
	b.WriteString("\n")
	b.Write(body.Bytes())

	fmt.Fprintf(&b, "## Gaps and plans\n\n")
	gaps := 0
	for _, t := range r.targets {
		if (!t.met || t.missing) && t.gap != "" {
			gaps++
			fmt.Fprintf(&b, "### %s: %s (%s, target %s)\n\n%s\n\n", t.section, t.what, t.measured, t.limit, strings.TrimSpace(t.gap))
		}
	}
	if gaps == 0 {
		b.WriteString("Every target was met in this run.\n\n")
	}
	b.WriteString(strings.TrimSpace(optimised) + "\n")
	return b.Bytes()
}

// optimised is what this benchmark suite changed when it was written, so the figures that
// were off their targets then are explained.
const optimised = `
## What the first run changed

- The duplicate and ignored paths cost 4.9× and 3.4× floor (a) when first measured: ` + "`stripeevents.Verify`" + ` called
  stripe-go's ` + "`ConstructEventWithOptions`" + `, which decodes ` + "`data.object`" + ` into a map of every field (what the naive
  way pays) before refbridge decoded the few fields it reads. It now checks the signature with ` + "`webhook.ValidatePayloadWithTolerance`" + `
  and reads only the envelope.
- The handler decoded the invoice before its idempotency lookup, so a duplicate paid for a decode it threw away. The
  object is now decoded inside the once-run work; a malformed one releases its lock and is answered 400 as before.
- A token from the shared RF rate limiter cost two DynamoDB requests whenever the bucket was idle (a refused booking,
  then the write that starts the queue), which is the common case for webhooks. Every write now returns the bucket's
  ` + "`tat`" + ` and the bucket remembers the last one it saw, trying the idle write first when the bucket was idle then: one
  request, idle or busy as last seen.
- The sweep's pacing was 0.82 of its share in the first full run, on a loaded machine: the bucket then made a caller that had to wait sleep
  until its token's time and ask again, a request's latency late, so it found the bucket idle and started it anew at its
  own time: every wait lost that latency and cost two more requests. The bucket now books the next free slot with one
  write and the caller sleeps until it (the FIFO booking of the crash and rate-limit suite), so the schedule does not
  drift. The benchmark then also scaled the bucket to its 10-second window (a burst of 1, which no deployment has); it
  now runs the bucket as wiring builds it (a burst of 8 at 500 a minute), and counts every RF call over the whole run,
  not the issues alone. With RF's latency added (a benchmark of its own) the sweep's one-at-a-time issuing, not the
  bucket, sets the pace: see the gaps.
`

func machine() []string {
	var out []string
	cpu := "unknown CPU"
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			break
		}
	}
	out = append(out, fmt.Sprintf("%s, %d cores (`nproc`), %s/%s", cpu, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH))
	for _, l := range strings.Split(readFile("/proc/meminfo"), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			out = append(out, fmt.Sprintf("memory: %.1f GB", kb/1024/1024))
		}
	}
	for _, l := range strings.Split(readFile("/etc/os-release"), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			out = append(out, "OS: "+strings.Trim(v, `"`))
		}
	}
	out = append(out, "Go: "+runtime.Version())
	return out
}

func loadFields(s string) string {
	f := strings.Fields(s)
	if len(f) < 3 {
		return s
	}
	return strings.Join(f[:3], ", ")
}

func readFile(p string) string {
	raw, _ := os.ReadFile(p)
	return string(raw)
}

func fmtDuration(sec float64) string {
	d := time.Duration(sec * float64(time.Second)).Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

func mb(bytes int64) string { return fmt.Sprintf("%.1f MB", float64(bytes)/1e6) }

func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

func sortedKeys(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
