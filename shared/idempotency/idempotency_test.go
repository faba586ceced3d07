package idempotency

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ddbtest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	store Store
	clock *clock
	ids   atomic.Int64
}

func (e *env) runner(cfg Config) *Idempotency {
	cfg.Now = e.clock.Now
	cfg.NewOwner = func() string { return fmt.Sprintf("owner-%d", e.ids.Add(1)) }
	return New(e.store, cfg)
}

// stores runs a test against both stores: the contract is the same.
func stores(t *testing.T, test func(t *testing.T, e *env)) {
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		test(t, &env{store: NewMemory(), clock: &clock{t: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}})
	})
	t.Run("dynamodb", func(t *testing.T) {
		t.Parallel()
		db, table := ddbtest.Table(t)
		test(t, &env{store: NewDynamo(db, table), clock: &clock{t: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}})
	})
}

func work(n *atomic.Int32, out string, err error) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		n.Add(1)
		if err != nil {
			return nil, err
		}
		return []byte(out), nil
	}
}

func TestRunsOnceAndReplays(t *testing.T) {
	stores(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		r := e.runner(Config{Expiration: time.Hour})
		var n atomic.Int32
		res, err := r.Do(ctx, "evt_1", []byte(`{"a":1}`), work(&n, `{"status":"processed"}`, nil))
		if err != nil || res.Replayed || string(res.Data) != `{"status":"processed"}` {
			t.Fatalf("first: %+v %v", res, err)
		}
		e.clock.Advance(59 * time.Minute)
		res, err = r.Do(ctx, "evt_1", []byte(`{"a":1}`), work(&n, "other", nil))
		if err != nil || !res.Replayed || string(res.Data) != `{"status":"processed"}` {
			t.Fatalf("replay: %+v %v", res, err)
		}
		if n.Load() != 1 {
			t.Fatalf("work ran %d times", n.Load())
		}
		// Same key, other payload: refused, work not run.
		if _, err := r.Do(ctx, "evt_1", []byte(`{"a":2}`), work(&n, "x", nil)); !errors.Is(err, ErrPayloadMismatch) {
			t.Fatalf("mismatch: %v", err)
		}
		// Past the expiration the clock says the record is dead, whatever DynamoDB's lazy TTL did.
		e.clock.Advance(2 * time.Minute)
		res, err = r.Do(ctx, "evt_1", []byte(`{"a":2}`), work(&n, "second run", nil))
		if err != nil || res.Replayed || string(res.Data) != "second run" || n.Load() != 2 {
			t.Fatalf("after expiry: %+v %v (runs %d)", res, err, n.Load())
		}
	})
}

func TestFailedWorkReleasesTheLock(t *testing.T) {
	stores(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		r := e.runner(Config{})
		var n atomic.Int32
		boom := errors.New("rf answered 503")
		if _, err := r.Do(ctx, "evt_2", nil, work(&n, "", boom)); !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		res, err := r.Do(ctx, "evt_2", nil, work(&n, "ok", nil))
		if err != nil || res.Replayed || string(res.Data) != "ok" || n.Load() != 2 {
			t.Fatalf("retry: %+v %v (runs %d)", res, err, n.Load())
		}
	})
}

func TestFailedWorkOnCanceledContextStillReleases(t *testing.T) {
	stores(t, func(t *testing.T, e *env) {
		r := e.runner(Config{})
		ctx, cancel := context.WithCancel(context.Background())
		var n atomic.Int32
		_, err := r.Do(ctx, "evt_3", nil, func(ctx context.Context) ([]byte, error) {
			n.Add(1)
			cancel()
			return nil, ctx.Err()
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		res, err := r.Do(context.Background(), "evt_3", nil, work(&n, "ok", nil))
		if err != nil || string(res.Data) != "ok" {
			t.Fatalf("retry after a canceled run: %+v %v", res, err)
		}
	})
}

func TestInProgressAndTakeover(t *testing.T) {
	stores(t, func(t *testing.T, e *env) {
		r := e.runner(Config{Lease: time.Hour})
		// The first holder's invocation ends in 30 s (its ctx deadline) and it is killed before
		// completing: its lock must block retries only until then.
		deadline := e.clock.Now().Add(30 * time.Second)
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Hour))
		defer cancel()
		dctx := deadlineCtx{Context: ctx, deadline: deadline}
		started, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			_, err := r.Do(dctx, "evt_4", nil, func(context.Context) ([]byte, error) {
				close(started)
				<-release // "killed": finishes only after another invocation took over
				return []byte("late"), nil
			})
			done <- err
		}()
		<-started

		var n atomic.Int32
		if _, err := r.Do(context.Background(), "evt_4", nil, work(&n, "x", nil)); !errors.Is(err, ErrInProgress) {
			t.Fatalf("while held: %v", err)
		}
		e.clock.Advance(31 * time.Second)
		res, err := r.Do(context.Background(), "evt_4", nil, work(&n, "taken over", nil))
		if err != nil || string(res.Data) != "taken over" || n.Load() != 1 {
			t.Fatalf("takeover: %+v %v", res, err)
		}
		close(release)
		if err := <-done; !errors.Is(err, ErrLockLost) {
			t.Fatalf("late holder: %v, want ErrLockLost", err)
		}
		res, err = r.Do(context.Background(), "evt_4", nil, work(&n, "y", nil))
		if err != nil || !res.Replayed || string(res.Data) != "taken over" {
			t.Fatalf("the late holder overwrote the result: %+v %v", res, err)
		}
	})
}

// deadlineCtx reports a deadline on the test clock while staying alive in real time.
type deadlineCtx struct {
	context.Context
	deadline time.Time
}

func (d deadlineCtx) Deadline() (time.Time, bool) { return d.deadline, true }

func TestLeaseWithoutDeadline(t *testing.T) {
	stores(t, func(t *testing.T, e *env) {
		r := e.runner(Config{Lease: 10 * time.Second})
		now := e.clock.Now()
		if _, err := e.store.PutInProgress(context.Background(), Record{Key: "evt_5", Status: StatusInProgress,
			Expiration: now.Add(time.Hour), InProgressExpiration: now.Add(10 * time.Second), Owner: "crashed"}, now); err != nil {
			t.Fatal(err)
		}
		var n atomic.Int32
		if _, err := r.Do(context.Background(), "evt_5", nil, work(&n, "x", nil)); !errors.Is(err, ErrInProgress) {
			t.Fatalf("within lease: %v", err)
		}
		e.clock.Advance(11 * time.Second)
		if res, err := r.Do(context.Background(), "evt_5", nil, work(&n, "x", nil)); err != nil || string(res.Data) != "x" {
			t.Fatalf("after lease: %+v %v", res, err)
		}
		// A crashed holder's late release must not remove the new owner's record.
		if err := e.store.Release(context.Background(), "evt_5", "crashed"); err != nil {
			t.Fatal(err)
		}
		if res, err := r.Do(context.Background(), "evt_5", nil, work(&n, "z", nil)); err != nil || !res.Replayed {
			t.Fatalf("after a stale release: %+v %v", res, err)
		}
	})
}

// TestRace: 200 invocations of the same event at once. Exactly one runs the work; every other
// one sees "in progress" (never a second run); afterwards everyone gets the stored result.
func TestRace(t *testing.T) {
	stores(t, func(t *testing.T, e *env) {
		r := e.runner(Config{})
		const n = 200
		var runs atomic.Int32
		release := make(chan struct{})
		var wg sync.WaitGroup
		var inProgress, other atomic.Int32
		results := make(chan Result, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := r.Do(context.Background(), "evt_race", []byte("p"), func(context.Context) ([]byte, error) {
					runs.Add(1)
					<-release
					return []byte("winner"), nil
				})
				switch {
				case err == nil:
					results <- res
				case errors.Is(err, ErrInProgress):
					inProgress.Add(1)
				default:
					other.Add(1)
					t.Errorf("unexpected error: %v", err)
				}
			}()
		}
		// Wait until every loser has answered, then let the winner finish. If two won, the
		// losers never add up: fail instead of hanging.
		giveUp := time.Now().Add(time.Minute)
		for inProgress.Load()+other.Load() < n-1 {
			if time.Now().After(giveUp) || runs.Load() > 1 {
				close(release)
				wg.Wait()
				t.Fatalf("runs %d, in progress %d, other %d", runs.Load(), inProgress.Load(), other.Load())
			}
			time.Sleep(time.Millisecond)
		}
		close(release)
		wg.Wait()
		close(results)
		if runs.Load() != 1 || inProgress.Load() != n-1 {
			t.Fatalf("runs %d, in progress %d", runs.Load(), inProgress.Load())
		}
		for res := range results {
			if string(res.Data) != "winner" || res.Replayed {
				t.Fatalf("winner result %+v", res)
			}
		}
		res, err := r.Do(context.Background(), "evt_race", []byte("p"), work(new(atomic.Int32), "x", nil))
		if err != nil || !res.Replayed || string(res.Data) != "winner" {
			t.Fatalf("after the race: %+v %v", res, err)
		}
	})
}

func TestEmptyKey(t *testing.T) {
	r := New(NewMemory(), Config{})
	if _, err := r.Do(context.Background(), "", nil, work(new(atomic.Int32), "", nil)); err == nil {
		t.Fatal("empty key accepted")
	}
}

// TestResultFinishedAtTheDeadlineIsSaved: work that uses all the time it is given still leaves
// time to save its result, so the redelivery replays it instead of running it again.
func TestResultFinishedAtTheDeadlineIsSaved(t *testing.T) {
	stores(t, func(t *testing.T, e *env) {
		r := e.runner(Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var n atomic.Int32
		res, err := r.Do(ctx, "evt_slow", nil, func(wctx context.Context) ([]byte, error) {
			n.Add(1)
			<-wctx.Done() // the work runs until the time it was given is up, then succeeds
			return []byte("done"), nil
		})
		if err != nil || string(res.Data) != "done" {
			t.Fatalf("slow work: %+v %v", res, err)
		}
		res, err = r.Do(context.Background(), "evt_slow", nil, work(&n, "again", nil))
		if err != nil || !res.Replayed || n.Load() != 1 {
			t.Fatalf("redelivery: %+v %v (runs %d)", res, err, n.Load())
		}
	})
}

// TestExpiryBoundary: both stores compare expiry in whole seconds, as the DynamoDB condition
// does, so they agree half a second after the stored expiration.
func TestExpiryBoundary(t *testing.T) {
	stores(t, func(t *testing.T, e *env) {
		r := e.runner(Config{Expiration: time.Hour})
		var n atomic.Int32
		if _, err := r.Do(context.Background(), "evt_edge", nil, work(&n, "first", nil)); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Hour + 500*time.Millisecond) // same second as the expiration
		res, err := r.Do(context.Background(), "evt_edge", nil, work(&n, "second", nil))
		if err != nil || !res.Replayed {
			t.Fatalf("in the expiration second: %+v %v", res, err)
		}
		e.clock.Advance(time.Second)
		res, err = r.Do(context.Background(), "evt_edge", nil, work(&n, "second", nil))
		if err != nil || res.Replayed || string(res.Data) != "second" {
			t.Fatalf("after it: %+v %v", res, err)
		}
	})
}

func TestNonTextResultIsRefused(t *testing.T) {
	stores(t, func(t *testing.T, e *env) {
		r := e.runner(Config{})
		var n atomic.Int32
		if _, err := r.Do(context.Background(), "evt_bin", nil, work(&n, "\xff\x00", nil)); err == nil {
			t.Fatal("a non-UTF-8 result was accepted")
		}
	})
}

// retriedPut replays every PutInProgress, as the SDK does when a write's answer is lost: the
// second attempt finds the record the first one wrote.
type retriedPut struct{ Store }

func (s retriedPut) PutInProgress(ctx context.Context, rec Record, now time.Time) (*Record, error) {
	if _, err := s.Store.PutInProgress(ctx, rec, now); err != nil {
		return nil, err
	}
	return s.Store.PutInProgress(ctx, rec, now)
}

func TestOwnRetriedLockIsOurs(t *testing.T) {
	stores(t, func(t *testing.T, e *env) {
		e.store = retriedPut{e.store}
		r := e.runner(Config{})
		var n atomic.Int32
		res, err := r.Do(context.Background(), "evt_retried", nil, work(&n, "ok", nil))
		if err != nil || string(res.Data) != "ok" || n.Load() != 1 {
			t.Fatalf("%+v %v (runs %d)", res, err, n.Load())
		}
	})
}
