package ratelimit

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/referralfactory"
)

func TestLimitInterval(t *testing.T) {
	tests := []struct {
		l       Limit
		wantUS  int64
		wantErr bool
	}{
		{PerMinute(500), 121952, false}, // burst 8: 492 spaced tokens a minute
		{Limit{Events: 600, Per: time.Minute, Burst: 10}, 101695, false},
		{Limit{Events: 50, Per: time.Second, Burst: 5}, 22223, false},
		{Limit{Events: 5, Per: time.Second, Burst: 5}, 0, true},
		{Limit{Events: 0, Per: time.Second, Burst: 1}, 0, true},
		{Limit{Events: 5, Per: 0, Burst: 1}, 0, true},
	}
	for _, tt := range tests {
		iv, err := tt.l.interval()
		if (err != nil) != tt.wantErr || iv != tt.wantUS {
			t.Errorf("%+v: interval %d, %v; want %d", tt.l, iv, err, tt.wantUS)
		}
		if err == nil && int64(tt.l.Burst)+tt.l.Per.Microseconds()/iv > int64(tt.l.Events) {
			t.Errorf("%+v: burst + per/interval exceeds events", tt.l)
		}
	}
	for _, n := range []int{1, 2, 30, 600} {
		if _, err := PerMinute(n).interval(); err != nil {
			t.Errorf("PerMinute(%d): %v", n, err)
		}
	}
	if iv, _ := PerMinute(1).interval(); iv <= time.Minute.Microseconds() {
		t.Errorf("PerMinute(1) allows a second call within the minute: interval %dµs", iv)
	}
}

// TestSharedBucketNeverExceedsTheRate runs concurrent workers through two Bucket values (two
// Lambda instances) on one DynamoDB item and checks every grant time: no window of length Per
// holds more than Events grants.
func TestSharedBucketNeverExceedsTheRate(t *testing.T) {
	db, table := ddbtest.Table(t)
	l := Limit{Events: 50, Per: time.Second, Burst: 5}
	a, err := New(db, table, "rf", l)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := New(db, table, "rf", l)
	const workers, each = 12, 12 // 144 grants: about three windows' worth
	var mu sync.Mutex
	var grants []time.Time
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bucket := a
			if w%2 == 1 {
				bucket = b
			}
			for range each {
				at, err := bucket.Reserve(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				grants = append(grants, at)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(grants) != workers*each {
		t.Fatalf("%d grants", len(grants))
	}
	sort.Slice(grants, func(i, j int) bool { return grants[i].Before(grants[j]) })
	maxIn := 0
	for i := range grants {
		j := sort.Search(len(grants), func(k int) bool { return !grants[k].Before(grants[i].Add(l.Per)) })
		maxIn = max(maxIn, j-i)
	}
	if maxIn > l.Events {
		t.Fatalf("%d grants in one %s window, limit %d", maxIn, l.Per, l.Events)
	}
	// The bucket is shared, not per instance: two instances together got no more than one.
	if maxIn < l.Events/2 {
		t.Errorf("only %d grants in the busiest window: the bucket is far slower than its limit", maxIn)
	}
}

func TestDeadlineAndPenalty(t *testing.T) {
	db, table := ddbtest.Table(t)
	l := Limit{Events: 10, Per: time.Second, Burst: 2}
	bk, err := New(db, table, "rf", l)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A slow bucket: after its burst the next token is a minute away. A context ending in 5 s
	// (ample for the DynamoDB call even on a loaded machine) gets ErrDeadline at once: had the
	// bucket slept, the sleep would have ended with context.DeadlineExceeded instead.
	slow, err := New(db, table, "rf-slow", Limit{Events: 3, Per: time.Minute, Burst: 2})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the burst
		if err := slow.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := slow.Wait(short); !errors.Is(err, ErrDeadline) {
		t.Fatalf("err = %v, want ErrDeadline (answered at once, not after sleeping)", err)
	}

	// RF said 429 with Retry-After: everyone waits, including another instance.
	other, _ := New(db, table, "rf", l)
	penaltyStart := time.Now()
	if err := bk.Penalize(ctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	at, err := other.Reserve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if at.Before(penaltyStart.Add(300 * time.Millisecond)) {
		t.Fatalf("granted %s after the penalty began, before it ended", at.Sub(penaltyStart))
	}
	// A shorter penalty never shortens a longer one.
	longStart := time.Now()
	if err := bk.Penalize(ctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := bk.Penalize(ctx, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	at, err = other.Reserve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if at.Before(longStart.Add(300 * time.Millisecond)) {
		t.Fatalf("a 1 ms penalty cut a 300 ms one short: granted after %s", at.Sub(longStart))
	}
}

// countingDB counts the bucket's requests.
type countingDB struct {
	DynamoDBAPI
	n atomic.Int64
}

func (c *countingDB) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	c.n.Add(1)
	return c.DynamoDBAPI.UpdateItem(ctx, in, opts...)
}

// A token costs one request when the bucket is as this process last saw it, idle or busy; a
// guess made stale by another instance costs one more, never a token too many.
func TestTokenCostsOneRequestWhenTheBucketIsAsLastSeen(t *testing.T) {
	db, table := ddbtest.Table(t)
	// The clock counts whole µs since start, as the bucket does.
	var clock atomic.Int64
	start := time.Now().Truncate(time.Microsecond)
	now := func() time.Time { return start.Add(time.Duration(clock.Load()) * time.Microsecond) }
	sleep := func(_ context.Context, d time.Duration) error { clock.Add(d.Microseconds()); return nil }
	l := Limit{Events: 10, Per: time.Second, Burst: 2} // a token every 125 ms
	mine, other := &countingDB{DynamoDBAPI: db}, &countingDB{DynamoDBAPI: db}
	bk, err := New(mine, table, "rf", l, WithClock(now, sleep))
	if err != nil {
		t.Fatal(err)
	}
	bk2, _ := New(other, table, "rf", l, WithClock(now, sleep))
	take := func(b *Bucket, c *countingDB, want int64, what string) {
		t.Helper()
		before := c.n.Load()
		if err := b.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := c.n.Load() - before; got != want {
			t.Errorf("%s: %d requests, want %d", what, got, want)
		}
	}
	take(bk, mine, 1, "first token, no bucket yet")
	take(bk, mine, 1, "second token at once: busy bucket, as last seen")
	clock.Store(time.Second.Microseconds())
	take(bk, mine, 1, "a second later: idle bucket, as last seen")
	take(bk2, other, 2, "another instance, which never saw it: idle guessed, busy found")
	before := clock.Load()
	take(bk, mine, 1, "busy beyond the burst since last seen: the next slot booked, then waited for")
	if waited := time.Duration(clock.Load()-before) * time.Microsecond; waited != 125*time.Millisecond {
		t.Errorf("waited %s, want 125ms", waited)
	}
}

func TestCanceledContext(t *testing.T) {
	db, table := ddbtest.Table(t)
	bk, _ := New(db, table, "rf", Limit{Events: 2, Per: time.Hour, Burst: 1})
	ctx, cancel := context.WithCancel(context.Background())
	if err := bk.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if err := bk.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// The bucket plugs into the RF client as its limiter, penalties included.
var (
	_ referralfactory.Limiter   = (*Bucket)(nil)
	_ referralfactory.Penalizer = (*Bucket)(nil)
)

// Waiters book the next free slots in turn, one write each, and sleep until them: nobody
// races for "the token now" (where a caller always a little late could lose for ever).
func TestWaitersBookTheirSlots(t *testing.T) {
	db, table := ddbtest.Table(t)
	cdb := &countingDB{DynamoDBAPI: db}
	t0 := time.Unix(1_900_000_000, 0)
	var slept []time.Duration
	clk := WithClock(func() time.Time { return t0 }, func(_ context.Context, d time.Duration) error {
		slept = append(slept, d) // the clock stands still: every caller asks at t0
		return nil
	})
	l := Limit{Events: 20, Per: time.Second, Burst: 2}
	bk, err := New(cdb, table, "rf-queue", l, clk)
	if err != nil {
		t.Fatal(err)
	}
	iv, _ := l.interval()
	step := time.Duration(iv) * time.Microsecond
	for i, want := range []time.Duration{0, 0, step, 2 * step, 3 * step} {
		before := cdb.n.Load()
		at, err := bk.Reserve(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := at.Sub(t0); got != want {
			t.Fatalf("caller %d: slot at +%s, want +%s", i, got, want)
		}
		// The first starts the bucket, never seen (one write); every other books with one write.
		if writes := cdb.n.Load() - before; writes != 1 {
			t.Fatalf("caller %d: %d writes", i, writes)
		}
	}
	if want := []time.Duration{step, 2 * step, 3 * step}; !slices.Equal(slept, want) {
		t.Fatalf("slept %v, want %v", slept, want)
	}
}

// A slot further ahead than the horizon is not booked: the caller sleeps until it comes within
// the horizon and books it then, so a penalty can still move it.
func TestBeyondTheHorizonTheCallerAsksAgain(t *testing.T) {
	db, table := ddbtest.Table(t)
	now := time.Unix(1_900_000_000, 0)
	clk := WithClock(func() time.Time { return now }, func(_ context.Context, d time.Duration) error {
		now = now.Add(d)
		return nil
	})
	bk, err := New(db, table, "rf-far", Limit{Events: 3, Per: time.Minute, Burst: 2}, clk) // a token every 60 s
	if err != nil {
		t.Fatal(err)
	}
	t0 := now
	for range 2 { // the burst
		if _, err := bk.Reserve(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	at, err := bk.Reserve(context.Background())
	if err != nil || at.Sub(t0) != 60*time.Second {
		t.Fatalf("third token at +%s (%v), want +60s", at.Sub(t0), err)
	}
}
