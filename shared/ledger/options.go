package ledger

import (
	"fmt"
	"maps"
	"time"
)

// DefaultDecisionRetention is how long decision-log entries are kept.
const DefaultDecisionRetention = 400 * 24 * time.Hour

// Option configures a store; both implementations take the same options.
type Option func(*config)

type config struct {
	now       func() time.Time
	retention time.Duration
}

func newConfig(opts []Option) config {
	c := config{now: time.Now, retention: DefaultDecisionRetention}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithClock replaces the clock (tests control time with it). It stamps UpdatedAt, MappedAt,
// the intent times, the default At of records given without one, and decides which decision
// entries have expired.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now != nil {
			c.now = now
		}
	}
}

// WithDecisionRetention sets how long decision-log entries are kept (default 400 days).
func WithDecisionRetention(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.retention = d
		}
	}
}

// clock returns the configured time in UTC, without the monotonic reading, so that what is
// stored and what is returned compare equal.
func (c config) clock() time.Time { return c.now().UTC().Round(0) }

// decision validates a decision and completes it: At defaults to now, ExpiresAt is At plus the
// retention, rounded up to the whole second the TTL attribute holds.
func (c config) decision(d Decision) (Decision, error) {
	if d.Subject == "" {
		return Decision{}, fmt.Errorf("ledger: log decision: %w: empty subject", ErrInvalid)
	}
	if d.At.IsZero() {
		d.At = c.clock()
	}
	d.At = utc(d.At)
	d.ExpiresAt = unixUTC(d.At.Add(c.retention).Add(time.Second - 1).Unix())
	d.Inputs = maps.Clone(d.Inputs)
	return d, nil
}

func unixUTC(sec int64) time.Time { return time.Unix(sec, 0).UTC() }
