// Package sweep is the reward sweep's run: it lists Referral Factory's due rewards, matches each
// to the qualification behind it, decides (issue, cancel, wait) and acts exactly once. This file
// holds the decision, a pure function of what is known, so every rule is tested on its own.
package sweep

import (
	"fmt"
	"slices"
	"time"
)

// Action is what the sweep does with a due reward.
type Action string

// The sweep's actions.
const (
	Issue  Action = "issue"
	Cancel Action = "cancel"
	Wait   Action = "wait"
	Skip   Action = "skip" // already settled: never touched again
)

// Rules are the sweep's settings.
type Rules struct {
	Hold            time.Duration // REWARD_HOLD_DAYS
	AllowMetrics    []string      // REWARD_ISSUE_ALLOW_METRICS
	MaxPerRecipient int           // REWARD_MAX_PER_RECIPIENT_PER_MONTH; 0 = no cap
}

// Facts are what the sweep knows about one due reward when it decides.
type Facts struct {
	Metric      string
	CanBeIssued bool // RF's can_be_issued
	Settled     bool // refbridge recorded it issued or canceled (by itself or RF's webhook)
	FirstSeenAt time.Time
	// Qualification is the one matched to the reward; nil for a reward with none behind it
	// (a join reward), which is held from FirstSeenAt.
	Qualification *Qualification
	// IssuedThisMonth counts the rewards recorded as issued to the same recipient this calendar
	// month (UTC): by the sweep, or by hand in RF and reported by its webhook.
	IssuedThisMonth int
}

// Qualification is the part of a qualification the decision needs.
type Qualification struct {
	At         time.Time
	ReversedAt time.Time // zero while it stands
}

// Decision is the outcome, with its reason for the decision log.
type Decision struct {
	Action Action
	Reason string
	Until  time.Time // for Wait: when waiting may end (zero: unknown)
	Rule   string
}

// Decide applies the rules in order: settled → skip; reversed → cancel; hold → wait;
// RF cannot issue → wait; metric not allowed → wait; monthly cap → wait; else issue.
func Decide(f Facts, r Rules, now time.Time) Decision {
	if f.Settled {
		return Decision{Action: Skip, Reason: "already issued or canceled", Rule: "settled"}
	}
	q := f.Qualification
	if q != nil && !q.ReversedAt.IsZero() {
		return Decision{Action: Cancel, Reason: "its qualification was reversed on " + q.ReversedAt.UTC().Format(time.RFC3339), Rule: "reversed"}
	}
	start, from := f.FirstSeenAt, "first seen"
	if q != nil {
		start, from = q.At, "qualified"
	}
	if until := start.Add(r.Hold); now.Before(until) {
		return Decision{Action: Wait, Reason: fmt.Sprintf("hold: %s %s, issued after %s", from, start.UTC().Format(time.RFC3339), until.UTC().Format(time.RFC3339)),
			Until: until, Rule: "hold"}
	}
	if !f.CanBeIssued {
		return Decision{Action: Wait, Reason: "Referral Factory says it cannot be issued yet", Rule: "can_be_issued"}
	}
	if len(r.AllowMetrics) > 0 && !slices.Contains(r.AllowMetrics, f.Metric) {
		return Decision{Action: Wait, Reason: "metric " + f.Metric + " is not issued automatically (REWARD_ISSUE_ALLOW_METRICS)", Rule: "metric"}
	}
	if r.MaxPerRecipient > 0 && f.IssuedThisMonth >= r.MaxPerRecipient {
		y, m, _ := now.UTC().Date()
		next := time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC)
		return Decision{Action: Wait, Reason: fmt.Sprintf("monthly cap of %d reached for the recipient; issued from %s", r.MaxPerRecipient, next.Format(time.RFC3339)),
			Until: next, Rule: "cap"}
	}
	if q == nil {
		return Decision{Action: Issue, Reason: "hold elapsed since first seen; no qualification behind it", Rule: "issue"}
	}
	return Decision{Action: Issue, Reason: "hold elapsed and the qualification stands", Rule: "issue"}
}
