package lease

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

func stores(t *testing.T, test func(t *testing.T, s Store)) {
	t.Run("memory", func(t *testing.T) { t.Parallel(); test(t, NewMemory()) })
	t.Run("dynamodb", func(t *testing.T) {
		t.Parallel()
		db, table := ddbtest.Table(t)
		test(t, NewDynamo(db, table))
	})
}

func TestLease(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
		if err := s.Acquire(ctx, "sweep", "run-1", t0, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.Acquire(ctx, "sweep", "run-2", t0.Add(30*time.Second), t0.Add(2*time.Minute)); !errors.Is(err, ErrHeld) {
			t.Fatalf("while held: %v", err)
		}
		if err := s.Acquire(ctx, "sweep", "run-1", t0.Add(30*time.Second), t0.Add(2*time.Minute)); err != nil {
			t.Fatalf("the holder extends: %v", err)
		}
		// The holder died: after expiry another run takes over, and the dead one's late release
		// does not free the new holder's lease.
		if err := s.Acquire(ctx, "sweep", "run-2", t0.Add(3*time.Minute), t0.Add(4*time.Minute)); err != nil {
			t.Fatalf("after expiry: %v", err)
		}
		if err := s.Release(ctx, "sweep", "run-1"); err != nil {
			t.Fatal(err)
		}
		if err := s.Acquire(ctx, "sweep", "run-3", t0.Add(3*time.Minute), t0.Add(4*time.Minute)); !errors.Is(err, ErrHeld) {
			t.Fatalf("a stale release freed the lease: %v", err)
		}
		if err := s.Release(ctx, "sweep", "run-2"); err != nil {
			t.Fatal(err)
		}
		if err := s.Acquire(ctx, "sweep", "run-3", t0.Add(3*time.Minute), t0.Add(4*time.Minute)); err != nil {
			t.Fatalf("after release: %v", err)
		}
	})
}

func TestOneOfManyWins(t *testing.T) {
	stores(t, func(t *testing.T, s Store) {
		now := time.Now()
		var won atomic.Int32
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Acquire(context.Background(), "sweep", fmt.Sprint("run-", i), now, now.Add(time.Minute))
				if err == nil {
					won.Add(1)
				} else if !errors.Is(err, ErrHeld) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("%d runs took the lease", won.Load())
		}
	})
}
