package sweep

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/refbridge/refbridge/shared/lease"
	"github.com/refbridge/refbridge/shared/ledger"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
)

// Ledger is the part of the ledger the sweep uses.
type Ledger interface {
	SeeDueReward(ctx context.Context, r ledger.DueReward) (ledger.DueReward, error)
	QualificationsFor(ctx context.Context, recipientID int64) ([]ledger.Qualification, error)
	MatchDueReward(ctx context.Context, dueRewardID int64, q ledger.QualificationRef) error
	MarkRewardSettled(ctx context.Context, s ledger.Settlement) (ledger.DueReward, error)
	BeginIntent(ctx context.Context, in ledger.Intent) (ledger.Intent, error)
	FinishIntent(ctx context.Context, kind ledger.IntentKind, target string, outcome ledger.IntentStatus, lastErr string) (ledger.Intent, error)
	TakeOverIntent(ctx context.Context, kind ledger.IntentKind, target string, seenAttempts int, staleBefore time.Time) (ledger.Intent, error)
	PendingIntents(ctx context.Context, kind ledger.IntentKind) ([]ledger.Intent, error)
	LogDecision(ctx context.Context, d ledger.Decision) error
	UnmatchedDue(ctx context.Context, now time.Time, limit int) ([]ledger.Unmatched, error)
	ResolveUnmatched(ctx context.Context, invoiceID string, outcome ledger.UnmatchedStatus, reason string) (ledger.Unmatched, error)
	RescheduleUnmatched(ctx context.Context, invoiceID string, next time.Time, reason string) (ledger.Unmatched, error)
}

// Retrier tries a waiting unmatched paid invoice again (referrals.Service).
type Retrier interface {
	RetryUnmatched(ctx context.Context, u ledger.Unmatched) (referrals.Result, error)
}

// RF is the part of the Referral Factory client the sweep uses.
type RF interface {
	DueRewards(m rf.Metric, opts rf.ListOptions) *rf.Pager[rf.DueReward]
	IssuedRewards(m rf.Metric, opts rf.ListOptions) *rf.Pager[rf.IssuedReward]
	IssueReward(ctx context.Context, dueID int64) (rf.IssuedReward, error)
	CancelReward(ctx context.Context, dueID int64) (rf.IssuedReward, error)
}

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
	Now        func() time.Time
	Log        *slog.Logger
}

// Summary is what one run did.
type Summary struct {
	Listed, Issued, Canceled, Skipped, Failed, Reconciled int
	UnmatchedMatched, UnmatchedExpired, UnmatchedWaiting  int
	Waiting                                               map[string]int // by rule
}

// Run reconciles unconfirmed attempts, then lists the due rewards of every metric, decides and
// acts on each. A reward is listed in full before any is acted on: issuing shifts RF's pages.
func (s *Sweeper) Run(ctx context.Context) (Summary, error) {
	sum := Summary{Waiting: map[string]int{}}
	if s.Lease != nil {
		owner := randomOwner()
		now := s.now()
		until := now.Add(s.staleAfter())
		if dl, ok := ctx.Deadline(); ok {
			until = dl
		}
		if err := s.Lease.Acquire(ctx, "reward-sweep", owner, now, until); err != nil {
			return sum, fmt.Errorf("sweep: %w", err)
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := s.Lease.Release(rctx, "reward-sweep", owner); err != nil {
				s.logger().WarnContext(ctx, "sweep lease not released; it expires by itself", "error", err.Error())
			}
		}()
	}
	if err := s.reconcile(ctx, &sum); err != nil {
		return sum, err
	}
	for _, m := range rf.AllMetrics() {
		due, err := s.RF.DueRewards(m, rf.ListOptions{PerPage: rf.MaxPerPage}).Collect(ctx)
		if err != nil {
			return sum, fmt.Errorf("list due %s rewards: %w", m, err)
		}
		sum.Listed += len(due)
		for _, d := range due {
			if err := s.one(ctx, m, d, &sum); err != nil {
				return sum, err
			}
		}
	}
	return sum, s.retryUnmatched(ctx, &sum)
}

// retryUnmatched gives each waiting paid invoice whose retry is due another chance to match a
// lead, and expires those whose time ran out, with the reason.
func (s *Sweeper) retryUnmatched(ctx context.Context, sum *Summary) error {
	if s.Retrier == nil {
		return nil
	}
	now := s.now()
	due, err := s.Ledger.UnmatchedDue(ctx, now, 100)
	if err != nil {
		return fmt.Errorf("unmatched invoices: %w", err)
	}
	for _, u := range due {
		if now.After(u.RetryUntil) {
			if _, err := s.Ledger.ResolveUnmatched(ctx, u.InvoiceID, ledger.UnmatchedExpired, "no lead matched before the retry window ended: "+u.Reason); err != nil && !errors.Is(err, ledger.ErrConflict) {
				return fmt.Errorf("expire unmatched %s: %w", u.InvoiceID, err)
			}
			sum.UnmatchedExpired++
			continue
		}
		res, err := s.Retrier.RetryUnmatched(ctx, u)
		if err != nil {
			sum.Failed++
			s.logger().WarnContext(ctx, "unmatched invoice retry failed", "invoice", u.InvoiceID, "error", err.Error())
			continue
		}
		if res.Outcome != referrals.Unmatched {
			sum.UnmatchedMatched++
			continue
		}
		every := s.RetryEvery
		if every <= 0 {
			every = time.Hour
		}
		if _, err := s.Ledger.RescheduleUnmatched(ctx, u.InvoiceID, now.Add(every), res.Reason); err != nil {
			return fmt.Errorf("reschedule unmatched %s: %w", u.InvoiceID, err)
		}
		sum.UnmatchedWaiting++
	}
	return nil
}

// reconcile settles attempts a crashed run left pending whose effect RF shows: an issue or
// cancel that RF applied is confirmed, never repeated.
func (s *Sweeper) reconcile(ctx context.Context, sum *Summary) error {
	for _, kind := range []ledger.IntentKind{ledger.IntentIssue, ledger.IntentCancel} {
		pending, err := s.Ledger.PendingIntents(ctx, kind)
		if err != nil {
			return fmt.Errorf("pending %s intents: %w", kind, err)
		}
		for _, in := range pending {
			id, err := strconv.ParseInt(in.Target, 10, 64)
			if err != nil {
				continue
			}
			r, found, err := s.settledInRF(ctx, id)
			if err != nil {
				return err
			}
			if found {
				if err := s.confirm(ctx, kind, id, r.RecipientID, r.Status); err != nil {
					return err
				}
				sum.Reconciled++
			}
		}
	}
	return nil
}

func (s *Sweeper) one(ctx context.Context, m rf.Metric, d rf.DueReward, sum *Summary) error {
	now := s.now()
	rec, err := s.Ledger.SeeDueReward(ctx, ledger.DueReward{ID: d.ID, RewardID: d.RewardID, RecipientID: d.RecipientID,
		Metric: string(m), FirstSeenAt: now})
	if err != nil {
		return fmt.Errorf("record due reward %d: %w", d.ID, err)
	}
	q, err := s.qualification(ctx, rec)
	if err != nil {
		return err
	}
	facts := Facts{Metric: string(m), CanBeIssued: d.CanBeIssued, FirstSeenAt: rec.FirstSeenAt,
		Settled: rec.State == ledger.RewardIssued || rec.State == ledger.RewardCanceled}
	if q != nil {
		facts.Qualification = &Qualification{At: q.At, ReversedAt: q.ReversedAt}
	}
	dec := Decide(facts, s.Rules, now)
	s.log(ctx, d.ID, dec)
	switch dec.Action {
	case Skip:
		sum.Skipped++
	case Wait:
		sum.Waiting[dec.Rule]++
	case Issue, Cancel:
		done, err := s.act(ctx, dec.Action, d.ID, rec.RecipientID)
		switch {
		case err != nil:
			sum.Failed++
			s.logger().WarnContext(ctx, "sweep could not act on a due reward", "reward", d.ID, "action", string(dec.Action), "error", err.Error())
		case done && dec.Action == Issue:
			sum.Issued++
		case done:
			sum.Canceled++
		}
	}
	return nil
}

// qualification returns the qualification matched to the reward, matching the recipient's
// oldest unmatched one first when there is none yet (nil: none behind it).
func (s *Sweeper) qualification(ctx context.Context, rec ledger.DueReward) (*ledger.Qualification, error) {
	qs, err := s.Ledger.QualificationsFor(ctx, rec.RecipientID)
	if err != nil {
		return nil, fmt.Errorf("qualifications for %d: %w", rec.RecipientID, err)
	}
	if !rec.Matched.IsZero() {
		for i := range qs {
			if qs[i].Ref() == rec.Matched {
				return &qs[i], nil
			}
		}
		return nil, nil
	}
	for i := range qs {
		if qs[i].MatchedDueRewardID != 0 {
			continue
		}
		err := s.Ledger.MatchDueReward(ctx, rec.ID, qs[i].Ref())
		if errors.Is(err, ledger.ErrConflict) {
			continue // taken by another reward meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("match due reward %d: %w", rec.ID, err)
		}
		return &qs[i], nil
	}
	return nil, nil
}

// act issues or cancels once: intent → call → confirm. It reports whether the effect is done.
// The recipient is counted in the month's issued rewards when the reward is recorded issued.
func (s *Sweeper) act(ctx context.Context, a Action, id, recipientID int64) (bool, error) {
	kind, state := ledger.IntentIssue, ledger.RewardIssued
	call := s.RF.IssueReward
	if a == Cancel {
		kind, state, call = ledger.IntentCancel, ledger.RewardCanceled, s.RF.CancelReward
	}
	if s.DryRun {
		s.logger().InfoContext(ctx, "dry run: would "+string(a)+" the reward", "reward", id)
		return false, nil
	}
	target := ledger.DueRewardTarget(id)
	in, err := s.Ledger.BeginIntent(ctx, ledger.Intent{Kind: kind, Target: target, Ref: "sweep"})
	switch {
	case errors.Is(err, ledger.ErrIntentDone):
		_, err := s.Ledger.MarkRewardSettled(ctx, ledger.Settlement{ID: id, RecipientID: recipientID,
			State: state, At: s.now(), By: ledger.SettledBySweep})
		return false, ignoreSettled(err)
	case errors.Is(err, ledger.ErrIntentPending):
		// An earlier attempt may have reached RF: read RF before anything else.
		r, found, rerr := s.settledInRF(ctx, id)
		if rerr != nil {
			return false, rerr
		}
		if found {
			return false, s.confirm(ctx, kind, id, recipientID, r.Status)
		}
		// RF still lists it as due: take the attempt over if it is stale, else leave it.
		if _, err := s.Ledger.TakeOverIntent(ctx, kind, target, in.Attempts, s.now().Add(-s.staleAfter())); err != nil {
			return false, fmt.Errorf("%s reward %d: an earlier attempt is still recent: %w", a, id, err)
		}
	case err != nil:
		return false, fmt.Errorf("%s reward %d: intent: %w", a, id, err)
	}
	if _, err := call(ctx, id); err != nil {
		if !rf.IsOutcomeUnknown(err) { // known not applied: a later run may try again
			if _, ferr := s.Ledger.FinishIntent(ctx, kind, target, ledger.IntentFailed, err.Error()); ferr != nil {
				return false, errors.Join(err, ferr)
			}
		}
		return false, fmt.Errorf("%s reward %d: %w", a, id, err)
	}
	return true, s.confirm(ctx, kind, id, recipientID, "")
}

// confirm records an effect RF applied, to the reward's recipient (0: unknown).
func (s *Sweeper) confirm(ctx context.Context, kind ledger.IntentKind, id, recipientID int64, rfStatus string) error {
	state := ledger.RewardIssued
	if kind == ledger.IntentCancel || rfStatus == rf.StatusCanceled {
		state = ledger.RewardCanceled
	}
	if _, err := s.Ledger.FinishIntent(ctx, kind, ledger.DueRewardTarget(id), ledger.IntentDone, ""); err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return fmt.Errorf("confirm %s of reward %d: %w", kind, id, err)
	}
	_, err := s.Ledger.MarkRewardSettled(ctx, ledger.Settlement{ID: id, RecipientID: recipientID,
		State: state, At: s.now(), By: ledger.SettledBySweep})
	return ignoreSettled(err)
}

// settledInRF looks a reward up in RF's issued lists (issued and canceled rewards both move
// there, keeping their id).
func (s *Sweeper) settledInRF(ctx context.Context, id int64) (rf.IssuedReward, bool, error) {
	f := rf.Eq("id", id)
	for _, m := range rf.AllMetrics() {
		rs, err := s.RF.IssuedRewards(m, rf.ListOptions{Filter: &f}).Collect(ctx)
		if err != nil {
			return rf.IssuedReward{}, false, fmt.Errorf("issued %s rewards: %w", m, err)
		}
		for _, r := range rs {
			if r.ID == id {
				return r, true, nil
			}
		}
	}
	return rf.IssuedReward{}, false, nil
}

func randomOwner() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func ignoreSettled(err error) error {
	if errors.Is(err, ledger.ErrAlreadySettled) {
		return nil
	}
	return err
}

func (s *Sweeper) log(ctx context.Context, id int64, d Decision) {
	err := s.Ledger.LogDecision(ctx, ledger.Decision{Subject: "due#" + strconv.FormatInt(id, 10), At: s.now(),
		Rule: d.Rule, Outcome: string(d.Action), Reason: d.Reason})
	if err != nil {
		s.logger().WarnContext(ctx, "decision log write failed", "reward", id, "error", err.Error())
	}
}

func (s *Sweeper) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sweeper) staleAfter() time.Duration {
	if s.StaleAfter > 0 {
		return s.StaleAfter
	}
	return 15 * time.Minute
}

func (s *Sweeper) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}
