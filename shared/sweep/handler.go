package sweep

import (
	"context"
	"errors"
	"fmt"

	"github.com/refbridge/refbridge/shared/lease"
	"github.com/refbridge/refbridge/shared/observe"
)

// Request is the payload of a sweep invocation: the schedule's (EventBridge Scheduler sends the
// target's Input), a manual `aws lambda invoke`, `POST /sweep` or the CLI. Every field is
// optional; unknown fields are ignored.
type Request struct {
	// DryRun rehearses this run even when DRY_RUN is false. A request can only make a run
	// safer: it can never turn a configured dry run into a real one.
	DryRun bool `json:"dry_run,omitempty"`
}

// Handler runs one sweep per invocation.
type Handler struct {
	Sweeper *Sweeper
	Metrics *observe.Metrics // nil: none
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
		// The retrier was built for real runs (DRY_RUN=false): it would qualify leads. A
		// rehearsal asked for by the request leaves unmatched invoices alone.
		dry.Retrier = nil
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

// count writes the run's numbers as one EMF line. Every run writes every value, zeros
// included, so alarms on a maximum (unmatched invoices piling up) see the fall as well as the
// rise.
func (h *Handler) count(ctx context.Context, sum Summary, err error) {
	waiting := 0
	for _, n := range sum.Waiting {
		waiting += n
	}
	incomplete := 0
	if err != nil || !sum.Complete {
		// A pass that keeps not finishing means more work than a run's time: worth an alarm.
		incomplete = 1
	}
	h.Metrics.Emit(ctx, []observe.Value{
		{Name: "RewardsIssued", Value: float64(sum.Issued)},
		{Name: "RewardsCanceled", Value: float64(sum.Canceled)},
		{Name: "RewardsWaiting", Value: float64(waiting)},
		{Name: "RewardsFailed", Value: float64(sum.Failed)},
		{Name: "UnmatchedWaiting", Value: float64(sum.UnmatchedWaiting)},
		{Name: "UnmatchedRetryFailed", Value: float64(sum.UnmatchedRetryFailed)},
		{Name: "UnmatchedExpired", Value: float64(sum.UnmatchedExpired)},
		{Name: "SweepIncomplete", Value: float64(incomplete)},
		{Name: "SweepDuration", Value: float64(sum.DurationMS), Unit: observe.UnitMilliseconds},
	})
}
