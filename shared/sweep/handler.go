package sweep

import (
	"context"
	"errors"
	"fmt"

	"github.com/refbridge/refbridge/shared/lease"
)

// Request is the payload of a sweep invocation: the schedule's (EventBridge Scheduler sends the
// target's Input), a manual `aws lambda invoke`, `POST /sweep` or the CLI. Every field is
// optional; unknown fields are ignored.
type Request struct {
	// DryRun rehearses this run even when DRY_RUN is false. A request can only make a run
	// safer: it can never turn a configured dry run into a real one.
	DryRun bool `json:"dry_run,omitempty"`
}

// Counter receives the run's counts as metrics (observe.Metrics).
type Counter interface {
	Count(ctx context.Context, name string, n int)
}

// Handler runs one sweep per invocation.
type Handler struct {
	Sweeper *Sweeper
	Metrics Counter // optional
}

// ErrFailures is returned when the run went through but some rewards failed: the invocation
// is reported failed (Lambda's Errors metric, the on-failure destination) so nobody has to
// read the logs to find out. The failed rewards are tried again by the next run.
var ErrFailures = errors.New("sweep: some rewards failed")

// Handle runs the sweep. Another run holding the lease is not a failure: that run does the work.
func (h *Handler) Handle(ctx context.Context, req Request) (Summary, error) {
	s := h.Sweeper
	if req.DryRun && !s.DryRun {
		dry := *s
		dry.DryRun = true
		s = &dry
	}
	sum, err := s.Run(ctx)
	if errors.Is(err, lease.ErrHeld) {
		sum.NotRun = err.Error()
		return sum, nil
	}
	h.count(ctx, sum, err)
	if err != nil {
		return sum, err
	}
	if sum.Failed > 0 {
		return sum, fmt.Errorf("%w: %d (see the log)", ErrFailures, sum.Failed)
	}
	return sum, nil
}

func (h *Handler) count(ctx context.Context, sum Summary, err error) {
	if h.Metrics == nil {
		return
	}
	for name, n := range map[string]int{
		"RewardsIssued":    sum.Issued,
		"RewardsCanceled":  sum.Canceled,
		"RewardsFailed":    sum.Failed,
		"RFRateLimited":    int(sum.RateLimited),
		"UnmatchedExpired": sum.UnmatchedExpired,
	} {
		if n > 0 {
			h.Metrics.Count(ctx, name, n)
		}
	}
	if err != nil || !sum.Complete {
		// A pass that keeps not finishing means more work than a run's time: worth an alarm.
		h.Metrics.Count(ctx, "SweepIncomplete", 1)
	}
}
