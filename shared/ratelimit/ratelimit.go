// Package ratelimit keeps one token bucket for Referral Factory calls in the state table, so that
// every refbridge function and every concurrent Lambda instance together stay under the
// configured rate (RF blocks a caller's IP after repeated excess).
//
// It is the generic cell rate algorithm (GCRA), a token bucket kept as a single number: the
// "theoretical arrival time" (tat) of the next request. Taking a token is one conditional
// UpdateItem that books the next free slot (up to Horizon ahead, and never past the caller's
// deadline) and returns it; the caller sleeps until its slot, so waiters are served in turn.
// A refusal returns the current tat (ALL_OLD), which says exactly how long to wait, so a busy
// bucket costs no extra reads. Every write returns the tat it left (UPDATED_NEW) and the bucket
// remembers the last one it saw, so an idle bucket is started in one write too.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ErrDeadline means the wait for a token would outlast the context's deadline; nothing was taken.
// It matches context.DeadlineExceeded, so callers treat it as running out of time, which it is.
var ErrDeadline = fmt.Errorf("ratelimit: no token before the deadline: %w", context.DeadlineExceeded)

// Limit is at most Events in any window of length Per, with bursts of up to Burst.
type Limit struct {
	Events int
	Per    time.Duration
	Burst  int
}

// PerMinute is n calls a minute with a burst of about a second's worth (at most 10, and always
// fewer than n).
func PerMinute(n int) Limit {
	return Limit{Events: n, Per: time.Minute, Burst: max(1, min(n/60, 10, n-1))}
}

// interval spaces tokens (in microseconds) so that a full burst plus the steady flow never
// exceeds Events in any window of length Per: Burst + Per/interval ≤ Events.
func (l Limit) interval() (int64, error) {
	if l.Events == 1 && l.Burst == 1 && l.Per >= time.Millisecond {
		return l.Per.Microseconds() + 1, nil // one call, then a full window of nothing
	}
	if l.Events < 1 || l.Per < time.Millisecond || l.Burst < 1 || l.Burst >= l.Events {
		return 0, fmt.Errorf("ratelimit: invalid limit %+v: need 1 ≤ burst < events and per ≥ 1ms", l)
	}
	per, n := l.Per.Microseconds(), int64(l.Events-l.Burst)
	return (per + n - 1) / n, nil // round up: never faster than the limit
}

// DynamoDBAPI is the part of the DynamoDB client the bucket uses.
type DynamoDBAPI interface {
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// Bucket is a token bucket shared through DynamoDB. It implements the Referral Factory
// client's Limiter (Wait) and Penalizer (Penalize) hooks.
type Bucket struct {
	db    DynamoDBAPI
	table string
	key   map[string]types.AttributeValue
	iv    int64 // microseconds between tokens
	burst int64
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
	// seen is the tat this process last read or wrote (epoch µs; 0: none yet). It only picks
	// which conditional write to try first: a bucket idle when last seen usually still is (a
	// webhook's calls are far apart, and the sweep's, when its own work outlasts the interval),
	// so starting the queue at now takes the token in one request instead of a refused booking
	// and then that one. The tat only grows, so a bucket busy when last seen is busy still and
	// is booked directly. Both writes are conditional on the bucket as it is: a stale guess
	// (another instance took tokens since) costs a request, never a token.
	seen atomic.Int64
}

// Option configures a Bucket.
type Option func(*Bucket)

// WithClock replaces the clock and the sleep (tests).
func WithClock(now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(b *Bucket) { b.now, b.sleep = now, sleep }
}

// New returns the bucket called name (e.g. "rf") in table.
func New(db DynamoDBAPI, table, name string, l Limit, opts ...Option) (*Bucket, error) {
	iv, err := l.interval()
	if err != nil {
		return nil, err
	}
	b := &Bucket{
		db:    db,
		table: table,
		key: map[string]types.AttributeValue{
			"id": &types.AttributeValueMemberS{Value: "ratelimit#" + name},
			"sk": &types.AttributeValueMemberS{Value: "bucket"},
		},
		iv:    iv,
		burst: int64(l.Burst),
		now:   time.Now,
		sleep: sleepCtx,
	}
	for _, o := range opts {
		o(b)
	}
	return b, nil
}

// Wait blocks until a token is taken, or returns ErrDeadline at once when the context's
// deadline comes before the token would, or the context's error.
func (b *Bucket) Wait(ctx context.Context) error {
	_, err := b.Reserve(ctx)
	return err
}

// Horizon is how far ahead a caller may book a token. Within it the bucket is a queue: one
// conditional write books the next free slot and the caller sleeps until it, so waiters are
// served in the order they asked (racing for "the token now" let a caller that is always a
// little late wait for ever). Beyond it a caller sleeps and asks again, which bounds what a
// penalty (RF's 429) cannot take back: slots booked before it, at most Horizon ahead.
const Horizon = 5 * time.Second

// Reserve takes a token and returns the time it may be used: now, or a slot it booked up to
// Horizon ahead, which it sleeps until. The limit holds exactly on these times; the calls
// themselves start a request's latency later, which is why refbridge's default (500/min) stays
// well under RF's 600. When the context's deadline comes before the next free slot it returns
// ErrDeadline at once, having booked nothing.
func (b *Bucket) Reserve(ctx context.Context) (time.Time, error) {
	ahead := (b.burst - 1) * b.iv // a token is free while tat ≤ its time + ahead
	for {
		if err := ctx.Err(); err != nil {
			return time.Time{}, err
		}
		now := b.now()
		nowUS := now.UnixMicro()
		// Book the next slot if it is within the horizon and before the deadline.
		latest := nowUS + Horizon.Microseconds()
		dl, hasDeadline := ctx.Deadline()
		if hasDeadline {
			latest = min(latest, dl.UnixMicro())
		}
		if b.seen.Load() < nowUS {
			// Idle when last seen (or never seen): start the queue at now. When that is
			// refused, the bucket is busy after all (start recorded its tat): book behind it.
			ok, err := b.start(ctx, nowUS)
			if err != nil {
				return time.Time{}, err
			}
			if ok {
				return now, nil
			}
		}
		newTat, old, ok, err := b.book(ctx, nowUS, latest+ahead)
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			b.seen.Store(newTat)
			slot := newTat - b.iv - ahead // this token's time: the booked tat less the burst
			if slot <= nowUS {
				return now, nil
			}
			at := time.UnixMicro(slot)
			if err := b.sleep(ctx, at.Sub(now)); err != nil {
				return time.Time{}, err // the slot stays booked: unused, never exceeding the limit
			}
			return at, nil
		}
		b.seen.Store(old)
		if old < nowUS {
			// Idle bucket (or none yet), though not as last seen: start the queue at now.
			ok, err := b.start(ctx, nowUS)
			if err != nil {
				return time.Time{}, err
			}
			if ok {
				return now, nil
			}
			continue // someone else started it: book behind them
		}
		next := time.UnixMicro(old - ahead) // the earliest slot still free
		if hasDeadline && next.After(dl) {
			return time.Time{}, fmt.Errorf("%w: next token in %s", ErrDeadline, next.Sub(now))
		}
		// The queue is longer than the horizon: ask again when its end comes within it.
		if err := b.sleep(ctx, next.Sub(now)-Horizon+time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
}

// start takes a token from an idle bucket (or none yet), starting the queue at nowUS, and
// reports whether it did; either way it records the bucket's tat as seen.
func (b *Bucket) start(ctx context.Context, nowUS int64) (ok bool, err error) {
	tat, ok, err := b.update(ctx,
		expression.Set(expression.Name("tat"), expression.Value(nowUS+b.iv)),
		expression.AttributeNotExists(expression.Name("tat")).Or(expression.Name("tat").LessThan(expression.Value(nowUS))))
	if err == nil {
		b.seen.Store(tat)
	}
	return ok, err
}

// book takes the next free slot of a busy bucket (tat ≥ now) if its tat stays ≤ maxTat: one
// conditional UpdateItem that returns the new tat, or the current one when it refused.
func (b *Bucket) book(ctx context.Context, nowUS, maxTat int64) (newTat, old int64, ok bool, err error) {
	tat := expression.Name("tat")
	got, ok, err := b.update(ctx, expression.Set(tat, tat.Plus(expression.Value(b.iv))),
		tat.GreaterThanEqual(expression.Value(nowUS)).And(tat.LessThanEqual(expression.Value(maxTat))))
	if !ok {
		return 0, got, false, err
	}
	return got, 0, true, err
}

// tatOf reads the tat attribute (0 when absent).
func tatOf(item map[string]types.AttributeValue) (int64, error) {
	v, has := item["tat"].(*types.AttributeValueMemberN)
	if !has {
		return 0, nil
	}
	n, err := strconv.ParseInt(v.Value, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ratelimit: bucket holds %q: %w", v.Value, err)
	}
	return n, nil
}

// Penalize makes every user of the bucket wait at least d from now: RF answered 429, and its
// Retry-After applies to the token, not just to the caller that saw it.
func (b *Bucket) Penalize(ctx context.Context, d time.Duration) error {
	until := b.now().Add(d)
	tat := (until.UnixNano()+999)/1000 + (b.burst-1)*b.iv // rounded up: never a microsecond early
	current, _, err := b.update(ctx, expression.Set(expression.Name("tat"), expression.Value(tat)),
		expression.AttributeNotExists(expression.Name("tat")).Or(expression.Name("tat").LessThan(expression.Value(tat))))
	if err == nil {
		b.seen.Store(current) // ours, or a longer penalty already there
	}
	return err
}

// update applies upd under cond. ok reports whether it applied; tat is the bucket's tat after
// the write when it did, its current one when it did not (0 when there is none).
func (b *Bucket) update(ctx context.Context, upd expression.UpdateBuilder, cond expression.ConditionBuilder) (tat int64, ok bool, err error) {
	expr, err := expression.NewBuilder().WithUpdate(upd).WithCondition(cond).Build()
	if err != nil {
		return 0, false, fmt.Errorf("ratelimit: build expression: %w", err)
	}
	out, err := b.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                           aws.String(b.table),
		Key:                                 b.key,
		UpdateExpression:                    expr.Update(),
		ConditionExpression:                 expr.Condition(),
		ExpressionAttributeNames:            expr.Names(),
		ExpressionAttributeValues:           expr.Values(),
		ReturnValues:                        types.ReturnValueUpdatedNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		tat, err := tatOf(ccf.Item)
		return tat, false, err
	}
	if err != nil {
		return 0, false, fmt.Errorf("ratelimit: take token: %w", err)
	}
	tat, err = tatOf(out.Attributes)
	return tat, err == nil, err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
