package bench

// The figures each benchmark writes to ResultsEnv's folder, as <name>.json, and bench/report
// reads back.

// The event classes of the mix.
const (
	ClassFirstReferred    = "first invoice, referred customer"
	ClassFirstNotReferred = "first invoice, customer not referred"
	ClassRenewalReferred  = "renewal, referred customer"
	ClassRenewalNot       = "renewal, customer not referred"
	ClassDuplicate        = "duplicate delivery"
	ClassRefundReferred   = "refund, referred customer"
	ClassRefundNot        = "refund, customer not referred"
)

// ClassOrder is the order the classes are reported in.
var ClassOrder = []string{ClassFirstReferred, ClassFirstNotReferred, ClassRenewalReferred, ClassRenewalNot,
	ClassDuplicate, ClassRefundReferred, ClassRefundNot}

// ClassStats are one class's figures.
type ClassStats struct {
	Events         int            `json:"events"`
	DDBRequests    float64        `json:"ddb_requests_per_event"`
	DDBByOperation map[string]int `json:"ddb_by_operation"`
	RRU            float64        `json:"rru_per_event"`
	WRU            float64        `json:"wru_per_event"`
	EstimatedWRU   float64        `json:"estimated_wru_per_event"`
	RFCalls        float64        `json:"rf_calls_per_event"`
	RFByRoute      map[string]int `json:"rf_by_route"`
	MeanMS         float64        `json:"mean_ms"`
	P99MS          float64        `json:"p99_ms"`
}

// MixResult is what BenchmarkEventMix writes (mix.json).
type MixResult struct {
	Events     int                    `json:"events"`
	Workers    int                    `json:"workers"`
	Seconds    float64                `json:"seconds"`
	Classes    map[string]*ClassStats `json:"classes"`
	All        *ClassStats            `json:"all"`
	MemoryMB   int                    `json:"lambda_memory_mb"`
	Cost       Cost                   `json:"cost_per_million"`
	Failures   []string               `json:"failures,omitempty"`
	ClassOrder []string               `json:"class_order"`
	// UnmatchedShare is the share of events that left an unmatched invoice waiting, and
	// UnmatchedRetry what one of the sweep's hourly retries of such an invoice costs (measured
	// on a sample, the sweep's steps: RetryUnmatched, then RescheduleUnmatched).
	UnmatchedShare float64     `json:"unmatched_share"`
	UnmatchedRetry *ClassStats `json:"unmatched_retry"`
}

// PacingResult is what BenchmarkSweepPacing writes (pacing.json).
type PacingResult struct {
	DueRewards int     `json:"due_rewards"`
	Window     float64 `json:"window_seconds"`
	// Limit is RF's limit per window (the simulator's), SharePerMinute refbridge's
	// (RF_RATE_PER_MINUTE) and Burst the bucket's.
	Limit             int     `json:"limit"`
	SharePerMinute    int     `json:"share_per_minute"`
	Burst             int     `json:"burst"`
	Issued            int     `json:"issued"`
	RFCalls           int     `json:"rf_calls"`
	RateLimited       int     `json:"rf_429s"`
	IssueSeconds      float64 `json:"issue_seconds"`     // first issue call to last, as the simulator saw them
	IssuesPerSecond   float64 `json:"issues_per_second"` // (issued − 1) / issue_seconds
	OfShare           float64 `json:"of_share"`
	OfLimit           float64 `json:"of_limit"`
	CallsPerSecond    float64 `json:"calls_per_second"` // every RF call of the run, over the run
	RunSeconds        float64 `json:"run_seconds"`
	MaxCallsInAWindow int     `json:"max_calls_in_a_window"` // any sliding window of the simulator's length
	Complete          bool    `json:"complete"`
	// RunOfShare is CallsPerSecond over the share's rate: the pacing of the whole run, its
	// start and the listing calls included.
	RunOfShare float64 `json:"run_of_share"`
	// IntervalMS is the bucket's spacing of tokens (a minute ÷ (share − burst), as ratelimit's).
	IntervalMS float64 `json:"interval_ms"`
	// RFLatencyMS is how much later than the simulator every RF call was answered (0: loopback).
	RFLatencyMS float64 `json:"rf_latency_ms"`
}

// FunctionStart is one function's figures.
type FunctionStart struct {
	Name string `json:"name"`
	// Arch is the architecture of the size figures (arm64, as deployed; the host's in the CI
	// smoke run, which skips the cross-compilation).
	Arch      string  `json:"size_arch"`
	Bytes     int64   `json:"bytes"`
	ZipBytes  int64   `json:"zip_bytes"`
	Runs      int     `json:"runs"`
	ReadyMS   float64 `json:"ready_median_ms"`          // process start → first GET /next
	AnswerMS  float64 `json:"first_response_median_ms"` // process start → first response
	AnswerMin float64 `json:"first_response_min_ms"`
	AnswerMax float64 `json:"first_response_max_ms"`
	// VsHello is AnswerMS over hello's, taken in the same run.
	VsHello float64 `json:"vs_hello"`
}

// MemorySample is the measured process after some events, after a garbage collection.
type MemorySample struct {
	Events     int     `json:"events"`
	HeapMB     float64 `json:"heap_inuse_mb"`
	RSSMB      float64 `json:"rss_mb"`
	Goroutines int     `json:"goroutines"`
}

// MemoryResult is what BenchmarkMemory writes (memory.json).
type MemoryResult struct {
	Events  int            `json:"events"`
	Seconds float64        `json:"seconds"`
	PeakMB  float64        `json:"peak_rss_mb"` // VmHWM at the end
	Base    MemorySample   `json:"base"`        // before the handler was built
	Samples []MemorySample `json:"samples"`
	// Released is the process once the handler and its in-memory stores are dropped: what the
	// events left behind that is not the state they recorded.
	Released MemorySample `json:"released"`
	// StateMB is what the in-memory stores held at the end (the heap at the end less Released):
	// in Lambda the state is in DynamoDB, not in the process.
	StateMB       float64 `json:"state_mb"`
	StateKBPerEvt float64 `json:"state_kb_per_event"`
	// GrowthAfterWarmup is the heap from the first sample (the warm-up) to the last, and
	// GrowthNotState what of it is not the recorded state.
	GrowthAfterWarmupMB float64 `json:"heap_growth_after_warmup_mb"`
	RSSGrowthMB         float64 `json:"rss_growth_after_warmup_mb"`
	LeftBehindMB        float64 `json:"left_behind_mb"` // Released − Base
	Failures            int     `json:"failures"`
}

// BurstResult is what BenchmarkBurst writes (burst.json).
type BurstResult struct {
	Events      int     `json:"events"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"events_per_second"`
	// Latencies of every request (first tries and retries), ms.
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
	// Retried counts 503s (the same event in progress, as Stripe's retry would meet), answered
	// again after a short wait.
	Retried int `json:"retried_503s"`
	// Composition and checks.
	FirstInvoices int      `json:"first_invoices"`
	Renewals      int      `json:"renewals"`
	Duplicates    int      `json:"duplicates"`
	Qualified     int      `json:"qualified_in_rf"`
	QualifyCalls  int      `json:"qualify_calls"`
	Failures      []string `json:"failures,omitempty"`
}

// ResultsEnv names the folder each benchmark writes its detailed figures to, as <name>.json,
// for bench/report (scripts/bench sets it). Unset: the figures are only logged.
const ResultsEnv = "REFBRIDGE_BENCH_RESULTS"
