package sweep

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/refbridge/refbridge/shared/lease"
	"github.com/refbridge/refbridge/shared/ledger"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
)

// Ledger is the part of the ledger the sweep uses.
type Ledger interface {
	SeeDueReward(ctx context.Context, r ledger.DueReward) (ledger.DueReward, error)
	DueRewardRecord(ctx context.Context, id int64) (ledger.DueReward, error)
	QualificationsFor(ctx context.Context, recipientID int64) ([]ledger.Qualification, error)
	MatchDueReward(ctx context.Context, dueRewardID int64, q ledger.QualificationRef, slot ledger.RewardSlot) error
	RematchDueReward(ctx context.Context, dueRewardID int64, from, to ledger.QualificationRef, slot ledger.RewardSlot) error
	MarkRewardSettled(ctx context.Context, s ledger.Settlement) (ledger.DueReward, error)
	IssuedInMonth(ctx context.Context, recipientID int64, month time.Time) (int, error)
	BeginIntent(ctx context.Context, in ledger.Intent) (ledger.Intent, error)
	BeginIntentIfStanding(ctx context.Context, in ledger.Intent, q ledger.QualificationRef) (ledger.Intent, error)
	FinishIntent(ctx context.Context, kind ledger.IntentKind, target string, outcome ledger.IntentStatus, lastErr string) (ledger.Intent, error)
	LeadsByEmail(ctx context.Context, emailHash string) ([]ledger.Lead, error)
	TakeOverIntent(ctx context.Context, kind ledger.IntentKind, target string, seenAttempts int, staleBefore time.Time) (ledger.Intent, error)
	PendingIntents(ctx context.Context, kind ledger.IntentKind) ([]ledger.Intent, error)
	LogDecision(ctx context.Context, d ledger.Decision) error
	UnmatchedDue(ctx context.Context, now time.Time, limit int) ([]ledger.Unmatched, error)
	UnmatchedWaitingCount(ctx context.Context) (int, error)
	ResolveUnmatched(ctx context.Context, invoiceID string, outcome ledger.UnmatchedStatus, reason string) (ledger.Unmatched, error)
	RescheduleUnmatched(ctx context.Context, invoiceID string, next time.Time, reason string) (ledger.Unmatched, error)
	SaveCheckpoint(ctx context.Context, name string, data []byte) error
	LoadCheckpoint(ctx context.Context, name string) ([]byte, error)
}

// Retrier tries a waiting unmatched paid invoice again (referrals.Service).
type Retrier interface {
	RetryUnmatched(ctx context.Context, u ledger.Unmatched) (referrals.Result, error)
}

// RF is the part of the Referral Factory client the sweep uses. The summary's RF counts are
// the difference of Stats over the run: exact in Lambda, where the process runs only the sweep;
// in the local server they include the webhooks' calls made meanwhile.
type RF interface {
	DueRewards(m rf.Metric, opts rf.ListOptions) *rf.Pager[rf.DueReward]
	IssuedRewards(m rf.Metric, opts rf.ListOptions) *rf.Pager[rf.IssuedReward]
	IssueReward(ctx context.Context, dueID int64) (rf.IssuedReward, error)
	CancelReward(ctx context.Context, dueID int64) (rf.IssuedReward, error)
	Stats() rf.Stats
}

// Name is the sweep's lease and checkpoint name in the state table. A dry run keeps its
// checkpoint under Name + "-dry-run", so a rehearsal never moves the real run's position.
const Name = "reward-sweep"

// Defaults of the Sweeper's settings.
const (
	// defaultStaleAfter outlasts the longest Lambda invocation (15 minutes): an attempt older
	// than that belongs to a run that has ended, one way or another.
	defaultStaleAfter = 16 * time.Minute
	defaultRetryEvery = time.Hour
	// defaultReserve is the time kept back at the end of a run: more than one reward's work
	// (an RF attempt times out after 10 s) plus saving the checkpoint.
	defaultReserve = 15 * time.Second
	// checkpointEvery saves the position every so many rewards, so a run killed without
	// warning (out of memory, a timeout the reserve did not cover) repeats little.
	checkpointEvery = 100
	// maxConsecutiveFailures stops a run that fails on every reward (RF refusing the token,
	// DynamoDB down): nothing gets better by trying the next thousand.
	maxConsecutiveFailures = 10
	// finishMargin is kept after the work is cut off, to save the checkpoint and release the
	// lease before the invocation's deadline.
	finishMargin = 3 * time.Second
	// unmatchedBatch is how many waiting invoices one run retries at most.
	unmatchedBatch = 100
)

// Sweeper runs sweeps.
type Sweeper struct {
	Ledger Ledger
	RF     RF
	// Lease keeps overlapping runs (the schedule and an async retry) from both acting; nil
	// only in tests of a single run.
	Lease lease.Store
	// Retrier, when set, retries unmatched paid invoices until UNMATCHED_RETRY_DAYS runs out.
	Retrier Retrier
	// RetryEvery spaces an unmatched invoice's retries (default one hour).
	RetryEvery time.Duration
	Rules      Rules
	DryRun     bool
	// StaleAfter is how old an unconfirmed attempt must be before another run may take it over
	// (after reading RF's state); it must exceed the longest run.
	StaleAfter time.Duration
	// Reserve is how long before the context's deadline the run stops starting new work and
	// saves its checkpoint (default 15 s, at most a quarter of the time the run has).
	Reserve time.Duration
	// Now is the clock of the decisions (holds, caps, first sightings); the run's own time
	// budget is always measured on the real clock, as the context's deadline is.
	Now func() time.Time
	Log *slog.Logger
}

// Summary is what one run did; it is returned, logged and, locally, answered as JSON.
type Summary struct {
	Listed   int `json:"listed"`
	Issued   int `json:"issued"`
	Canceled int `json:"canceled"`
	// WouldIssue and WouldCancel count, in a dry run, the calls that were not made.
	WouldIssue  int `json:"would_issue,omitempty"`
	WouldCancel int `json:"would_cancel,omitempty"`
	// Waiting counts the rewards left for a later run, by the rule that held them.
	Waiting map[string]int `json:"waiting"`
	// Skipped are rewards already issued or canceled (RF still lists them, or not yet).
	Skipped int `json:"skipped"`
	// Reconciled are earlier attempts found applied in RF and confirmed without a new call.
	Reconciled int `json:"reconciled"`
	Failed     int `json:"failed"`

	// The unmatched paid invoices: matched or expired by this run, how many still wait (all of
	// them, not only those retried now), and retries that failed (RF unavailable, say: they are
	// tried again next time, and do not fail the run).
	UnmatchedMatched     int `json:"unmatched_matched"`
	UnmatchedExpired     int `json:"unmatched_expired"`
	UnmatchedWaiting     int `json:"unmatched_waiting"`
	UnmatchedRetryFailed int `json:"unmatched_retry_failed"`

	RFCalls     int64 `json:"rf_calls"`
	RateLimited int64 `json:"rf_429s"`
	DurationMS  int64 `json:"duration_ms"`

	// Complete says the run reached the end of the due lists; otherwise it stopped for time
	// (or after repeated failures) at Checkpoint, where the next run continues.
	Complete   bool   `json:"complete"`
	Resumed    bool   `json:"resumed"`
	Checkpoint string `json:"checkpoint,omitempty"`
	DryRun     bool   `json:"dry_run,omitempty"`
	// NotRun says why nothing was done: another run holds the lease.
	NotRun string `json:"not_run,omitempty"`
}

// ErrTooManyFailures stops a run whose rewards keep failing one after another.
var ErrTooManyFailures = errors.New("sweep: stopped after repeated failures")

// checkpoint is where a pass through the due lists stands. Due rewards are worked through in
// metric order, and in id order within a metric, so "everything up to AfterID" is a position
// that stays meaningful while issuing shifts RF's pages. It only saves work: exactly-once comes
// from the intents, so handling a reward twice is harmless.
type checkpoint struct {
	Metric  rf.Metric `json:"metric,omitempty"`
	AfterID int64     `json:"after_id,omitempty"`
}

func (c checkpoint) String() string {
	if c.Metric == "" {
		return ""
	}
	return fmt.Sprintf("%s after due reward %d", c.Metric, c.AfterID)
}

// Run reconciles unconfirmed attempts, retries unmatched paid invoices, then works through the
// due rewards of every metric from the checkpoint on, deciding and acting on each. It stops
// starting new work when the context's deadline comes near, saving the checkpoint.
//
// The error is for what stopped the run as a whole (the lease held elsewhere, the state table
// unreadable, repeated failures); a single reward's failure, or a metric RF would not list, is
// counted and logged, and tried again in the next pass.
func (s *Sweeper) Run(ctx context.Context) (sum Summary, err error) {
	started := time.Now()
	sum = Summary{Waiting: map[string]int{}, DryRun: s.DryRun}
	before := s.RF.Stats()
	defer func() {
		after := s.RF.Stats()
		sum.RFCalls, sum.RateLimited = after.Requests-before.Requests, after.RateLimited-before.RateLimited
		sum.DurationMS = time.Since(started).Milliseconds()
		s.report(ctx, sum, err)
	}()

	if _, ok := ctx.Deadline(); !ok {
		// A run without a deadline (local) must still end before its lease does.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.staleAfter()-time.Minute)
		defer cancel()
	}
	release, err := s.takeLease(ctx)
	if err != nil {
		return sum, err
	}
	defer release()
	b := s.budget(ctx)
	// The work itself (RF calls included) ends a little before the deadline, so that a call
	// hanging at the end still leaves time to save the checkpoint and release the lease.
	work, cancel := context.WithDeadline(ctx, b.workUntil)
	defer cancel()

	cp, err := s.loadCheckpoint(ctx)
	if err != nil {
		return sum, err
	}
	lists, err := s.loadListings(ctx)
	if err != nil {
		return sum, err
	}
	sum.Resumed = cp.Metric != ""
	if err := s.reconcile(work, b, &sum); err != nil {
		return sum, err
	}
	// Waiting invoices first: their retry windows run out, and there are few of them.
	if err := s.retryUnmatched(work, b, &sum); err != nil {
		return sum, err
	}
	p := pass{s: s, b: b, sum: &sum, cp: cp, lists: lists}
	if err := p.run(work); err != nil {
		sum.Checkpoint = p.cp.String()
		if serr := s.saveCheckpoint(ctx, p.cp); serr != nil {
			err = errors.Join(err, serr)
		}
		return sum, err
	}
	if p.stopped {
		sum.Checkpoint = p.cp.String()
		return sum, s.saveCheckpoint(ctx, p.cp)
	}
	// The pass is through: the next run starts a new one.
	if err := s.saveCheckpoint(ctx, checkpoint{}); err != nil {
		return sum, err
	}
	sum.Complete = true
	return sum, nil
}

// pass works through the due lists from a checkpoint.
type pass struct {
	s       *Sweeper
	b       budget
	sum     *Summary
	cp      checkpoint
	lists   listings // when the last complete listing of each metric started
	stopped bool     // for time, at cp
	handled int
	failRun int // consecutive failures
}

func (p *pass) run(ctx context.Context) error {
	metrics := rf.AllMetrics()
	start := 0
	if p.cp.Metric != "" {
		start = slices.Index(metrics, p.cp.Metric)
		if start < 0 { // a checkpoint this version does not know: begin again, losing nothing
			p.s.logger().WarnContext(ctx, "sweep checkpoint names an unknown metric; starting over", "metric", string(p.cp.Metric))
			start, p.cp = 0, checkpoint{}
		}
	}
	for _, m := range metrics[start:] {
		if p.b.short() {
			p.stopped = true
			return nil
		}
		// Listed in full before any is acted on: issuing shifts RF's offset pages.
		started := p.s.now()
		due, err := p.s.RF.DueRewards(m, rf.ListOptions{PerPage: rf.MaxPerPage}).Collect(ctx)
		if err != nil {
			if outOfTime(ctx, err) {
				p.stopped = true
				return nil
			}
			// One metric RF will not list (a 4xx for a metric the account does not use, say)
			// must not block the others: the next pass tries it again.
			p.sum.Failed++
			p.s.logger().WarnContext(ctx, "sweep could not list due rewards; skipping the metric this pass", "metric", string(m), "error", err.Error())
			p.cp.Metric, p.cp.AfterID = next(metrics, m), 0
			continue
		}
		p.sum.Listed += len(due)
		slices.SortFunc(due, func(a, b rf.DueReward) int { return cmp.Compare(a.ID, b.ID) })
		// The listing is complete once every reward in it has had its sighting recorded in this
		// run: only then does "first seen after it" mean "created after it started".
		complete := true
		for _, d := range due {
			if m == p.cp.Metric && d.ID <= p.cp.AfterID {
				complete = false // handled earlier in this pass; seen then, but that is not known here
				continue
			}
			if p.b.short() {
				p.stopped = true
				return nil
			}
			seen, err := p.one(ctx, m, d)
			if err != nil || p.stopped {
				return err
			}
			complete = complete && seen
		}
		if complete {
			p.s.saveListing(ctx, p.lists, m, started)
		}
		p.cp.Metric, p.cp.AfterID = next(metrics, m), 0
	}
	return nil
}

// one handles a due reward and moves the checkpoint past it. seen says its sighting was
// recorded.
func (p *pass) one(ctx context.Context, m rf.Metric, d rf.DueReward) (seen bool, _ error) {
	seen, err := p.s.one(ctx, m, d, p.lists[m], p.sum)
	if outOfTime(ctx, err) {
		// Cut off mid-reward (the deadline, no rate-limit token before it, a cancel): the
		// checkpoint stays before it, so the next run handles it again. An RF call that may
		// have gone out left its intent pending, for the next run to reconcile.
		p.stopped = true
		return false, nil
	}
	if err != nil {
		p.sum.Failed++
		p.failRun++
		p.s.logger().WarnContext(ctx, "sweep could not handle a due reward", "reward", d.ID, "metric", string(m), "error", err.Error())
		if p.failRun >= maxConsecutiveFailures {
			return seen, fmt.Errorf("%w: %d in a row, the last: %w", ErrTooManyFailures, p.failRun, err)
		}
	} else {
		p.failRun = 0
	}
	p.cp.Metric, p.cp.AfterID = m, d.ID
	if p.handled++; p.handled%checkpointEvery == 0 {
		if err := p.s.saveCheckpoint(ctx, p.cp); err != nil {
			p.s.logger().WarnContext(ctx, "sweep checkpoint not saved; continuing", "error", err.Error())
		}
	}
	return seen, nil
}

// outOfTime reports whether the run's time is up: the context ended, or an operation gave up
// because its deadline would pass (a rate-limit token after it, say).
func outOfTime(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// next is the metric after m; "" after the last.
func next(metrics []rf.Metric, m rf.Metric) rf.Metric {
	if i := slices.Index(metrics, m); i >= 0 && i+1 < len(metrics) {
		return metrics[i+1]
	}
	return ""
}

// budget says when a run must stop starting new work (a reserve before the context's
// deadline), and when work already started is cut off (a margin before it, for the checkpoint
// and the lease). Run always gives its context a deadline.
type budget struct {
	stopAt, workUntil time.Time
}

func (s *Sweeper) budget(ctx context.Context) budget {
	dl, _ := ctx.Deadline()
	left := time.Until(dl)
	reserve := s.Reserve
	if reserve <= 0 {
		reserve = min(defaultReserve, left/4)
	}
	return budget{stopAt: dl.Add(-reserve), workUntil: dl.Add(-min(finishMargin, left/10))}
}

func (b budget) short() bool { return !time.Now().Before(b.stopAt) }

// takeLease makes this run the only one acting until it ends (or its deadline passes, should it
// die without releasing).
func (s *Sweeper) takeLease(ctx context.Context) (release func(), err error) {
	if s.Lease == nil {
		return func() {}, nil
	}
	owner := randomOwner()
	now := time.Now()
	until := now.Add(s.staleAfter())
	if dl, ok := ctx.Deadline(); ok {
		until = dl
	}
	if err := s.Lease.Acquire(ctx, Name, owner, now, until); err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	return func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.Lease.Release(rctx, Name, owner); err != nil {
			s.logger().WarnContext(ctx, "sweep lease not released; it expires by itself", "error", err.Error())
		}
	}, nil
}

func (s *Sweeper) loadCheckpoint(ctx context.Context) (checkpoint, error) {
	var cp checkpoint
	data, err := s.Ledger.LoadCheckpoint(ctx, s.checkpointName())
	if errors.Is(err, ledger.ErrNotFound) {
		return cp, nil
	}
	if err != nil {
		return cp, fmt.Errorf("sweep: load checkpoint: %w", err)
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &cp); err != nil {
			// Losing the position costs a re-read of the lists, never a double issue.
			s.logger().WarnContext(ctx, "sweep checkpoint unreadable; starting over", "error", err.Error())
			return checkpoint{}, nil
		}
	}
	return cp, nil
}

// saveCheckpoint writes the position even when the run's context has just ended: that is when
// it matters most.
func (s *Sweeper) saveCheckpoint(ctx context.Context, cp checkpoint) error {
	data, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("sweep: encode checkpoint: %w", err)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.Ledger.SaveCheckpoint(wctx, s.checkpointName(), data); err != nil {
		return fmt.Errorf("sweep: save checkpoint (%s): %w", cp, err)
	}
	return nil
}

// listings says, per metric, when the sweep's last complete listing of it started: a complete
// listing recorded every due reward RF had when it began, so a reward first seen in a later
// listing was created after that start (its CreatedAfter). A metric never listed in full has
// no entry: its rewards' first sightings have no lower bound. Saved as JSON {metric: RFC 3339}.
type listings map[rf.Metric]time.Time

// listingsName is the listings item's checkpoint name. A dry run keeps its own, as it keeps its
// own checkpoint: its listings are complete too (its sightings are recorded), but a rehearsal
// never writes what the real runs read.
func (s *Sweeper) listingsName() string {
	if s.DryRun {
		return Name + "-listings-dry-run"
	}
	return Name + "-listings"
}

func (s *Sweeper) loadListings(ctx context.Context) (listings, error) {
	out := listings{}
	data, err := s.Ledger.LoadCheckpoint(ctx, s.listingsName())
	if errors.Is(err, ledger.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweep: load listings: %w", err)
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			// Without them, rewards first seen in this run have no lower bound: they match as
			// they did before refbridge kept listings, never worse.
			s.logger().WarnContext(ctx, "sweep listings unreadable; starting over", "error", err.Error())
			return listings{}, nil
		}
	}
	return out, nil
}

// saveListing records that the listing of m that started at started was complete. A failed
// write is logged: the next complete listing records a later start, and meanwhile rewards get
// an older lower bound, which is looser, never wrong.
func (s *Sweeper) saveListing(ctx context.Context, lists listings, m rf.Metric, started time.Time) {
	lists[m] = started.UTC()
	data, err := json.Marshal(lists)
	if err == nil {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err = s.Ledger.SaveCheckpoint(wctx, s.listingsName(), data)
	}
	if err != nil {
		s.logger().WarnContext(ctx, "sweep listing times not saved; continuing", "metric", string(m), "error", err.Error())
	}
}

// report logs the run's summary: one line an operator can read, or query in CloudWatch.
func (s *Sweeper) report(ctx context.Context, sum Summary, err error) {
	if err != nil {
		s.logger().ErrorContext(ctx, "reward sweep stopped", "summary", sum, "error", err.Error())
		return
	}
	s.logger().InfoContext(ctx, "reward sweep", "summary", sum)
}

func randomOwner() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Sweeper) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sweeper) checkpointName() string {
	if s.DryRun {
		return Name + "-dry-run"
	}
	return Name
}

func (s *Sweeper) staleAfter() time.Duration {
	return cmp.Or(s.StaleAfter, defaultStaleAfter)
}

func (s *Sweeper) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}
