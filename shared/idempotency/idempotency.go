// Package idempotency makes a piece of work run once per key, the way Powertools for AWS
// Lambda's idempotency utility does, with its item schema so operators recognise the records:
// `id`, `status` (INPROGRESS / COMPLETED), `expiration` (epoch seconds, the table's TTL
// attribute), `in_progress_expiration` (epoch milliseconds), `data` (the stored result) and
// `validation` (a hash of the payload that must match on replay).
//
// The lock is one conditional write. The in-progress lease ends at the invocation's deadline, so
// a Lambda killed by its timeout blocks retries only until then, not until the record expires.
// Expiry is always compared against the clock: DynamoDB deletes expired items lazily.
package idempotency

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Status is a record's state.
type Status string

// The two states of a record, spelt as Powertools spells them.
const (
	StatusInProgress Status = "INPROGRESS"
	StatusCompleted  Status = "COMPLETED"
)

var (
	// ErrInProgress means another invocation holds the key and its lease has not ended. Callers
	// answer 503 so the sender retries later.
	ErrInProgress = errors.New("idempotency: the same request is already in progress")
	// ErrPayloadMismatch means the key was used before with a different payload.
	ErrPayloadMismatch = errors.New("idempotency: the key was used with a different payload")
	// ErrLockLost means the work finished after its lease ended and another invocation took the
	// key over: the result was not saved.
	ErrLockLost = errors.New("idempotency: the lock was lost before the result was saved")

	// errConflict is a store's answer when the key is held or completed; it comes with the
	// existing record.
	errConflict = errors.New("idempotency: key exists")
)

// Record is one idempotency item.
type Record struct {
	Key                  string
	Status               Status
	Expiration           time.Time // whole seconds
	InProgressExpiration time.Time // milliseconds
	Data                 []byte
	Validation           string
	// Owner identifies the invocation holding the lock, so that only it can complete or
	// release the record once another invocation may have taken it over.
	Owner string
}

// Store persists records. PutInProgress writes rec if the key is free at now (absent, expired,
// or in progress with its lease ended); otherwise it returns the existing record and an error
// wrapping errConflict. Complete and Release only act while rec.Owner still holds the lock.
type Store interface {
	PutInProgress(ctx context.Context, rec Record, now time.Time) (*Record, error)
	Complete(ctx context.Context, rec Record) error
	Release(ctx context.Context, key, owner string) error
}

// Config is the runner's settings; the zero value is completed with the defaults.
type Config struct {
	// Expiration is how long a completed result is replayed (default one hour, as Powertools).
	Expiration time.Duration
	// Lease bounds the lock when the context has no deadline (default one minute).
	Lease time.Duration
	// Now and NewOwner are the clock and the lock-owner ID source; tests replace them.
	Now      func() time.Time
	NewOwner func() string
}

// Idempotency runs work once per key.
type Idempotency struct {
	store Store
	cfg   Config
}

// New returns a runner over store.
func New(store Store, cfg Config) *Idempotency {
	if cfg.Expiration <= 0 {
		cfg.Expiration = time.Hour
	}
	if cfg.Lease <= 0 {
		cfg.Lease = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewOwner == nil {
		cfg.NewOwner = randomID
	}
	return &Idempotency{store: store, cfg: cfg}
}

// Result is what Do returns.
type Result struct {
	Data []byte
	// Replayed is true when Data is the stored result of an earlier run.
	Replayed bool
}

// Do runs work once for key. payload is the part of the request that must be identical when
// the key is seen again (nil skips the check). A completed, unexpired key returns its stored
// result without running work. When work fails, the lock is released so a retry runs it again.
func (i *Idempotency) Do(ctx context.Context, key string, payload []byte, work func(context.Context) ([]byte, error)) (Result, error) {
	if key == "" {
		return Result{}, errors.New("idempotency: empty key")
	}
	validation := ""
	if payload != nil {
		sum := sha256.Sum256(payload)
		validation = hex.EncodeToString(sum[:])
	}
	now := i.cfg.Now()
	lease := now.Add(i.cfg.Lease)
	if dl, ok := ctx.Deadline(); ok {
		lease = dl
	}
	rec := Record{
		Key:                  key,
		Status:               StatusInProgress,
		Expiration:           now.Add(i.cfg.Expiration).Truncate(time.Second),
		InProgressExpiration: lease.Truncate(time.Millisecond),
		Validation:           validation,
		Owner:                i.cfg.NewOwner(),
	}
	existing, err := i.store.PutInProgress(ctx, rec, now)
	switch {
	case err == nil:
	case errors.Is(err, errConflict) && existing != nil && existing.Owner == rec.Owner:
		// Our own write, retried by the SDK after its answer was lost: we hold the lock.
	case errors.Is(err, errConflict) && existing != nil:
		return i.conflict(key, existing, validation, now)
	default:
		return Result{}, fmt.Errorf("idempotency lock %s: %w", key, err)
	}

	// The work gets the invocation's time less a margin, so that a result finished just in time
	// can still be saved: otherwise the retry would run the work again.
	wctx, cancel := workContext(ctx)
	defer cancel()
	data, werr := work(wctx)
	if werr != nil {
		// Release even if ctx is done: a record left behind would block retries until the lease
		// ends. WithoutCancel keeps the values (tracing) and drops the cancellation.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
		defer rcancel()
		if rerr := i.store.Release(rctx, key, rec.Owner); rerr != nil {
			return Result{}, errors.Join(werr, fmt.Errorf("idempotency release %s: %w", key, rerr))
		}
		return Result{}, werr
	}
	if !utf8.Valid(data) {
		// Stored as a string attribute, as Powertools does; the handlers' results are JSON.
		return Result{Data: data}, fmt.Errorf("idempotency save %s: the result is not UTF-8 text", key)
	}
	rec.Status = StatusCompleted
	rec.Data = data
	rec.Expiration = i.cfg.Now().Add(i.cfg.Expiration).Truncate(time.Second)
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer scancel()
	if err := i.store.Complete(sctx, rec); err != nil {
		return Result{Data: data}, fmt.Errorf("idempotency save %s: %w", key, err)
	}
	return Result{Data: data}, nil
}

// saveTimeout bounds the writes made after the work (save or release), which run even when the
// invocation's context is done.
const saveTimeout = 5 * time.Second

// workContext gives the work the caller's deadline less a margin of up to two seconds (a tenth
// of the time left when that is shorter), kept for saving the result.
func workContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	margin := min(2*time.Second, time.Until(dl)/10)
	return context.WithDeadline(ctx, dl.Add(-margin))
}

// alive reports whether a record still holds at now, with the same whole-second and
// whole-millisecond comparisons the DynamoDB condition makes, so both stores agree.
func alive(r Record, now time.Time) (completed, inProgress bool) {
	notExpired := r.Expiration.Unix() >= now.Unix()
	completed = r.Status == StatusCompleted && notExpired
	inProgress = r.Status == StatusInProgress && notExpired && r.InProgressExpiration.UnixMilli() >= now.UnixMilli()
	return completed, inProgress
}

// conflict decides what an existing record means, in Powertools' order: a live lock first,
// then a completed result, whose payload must match.
func (i *Idempotency) conflict(key string, ex *Record, validation string, now time.Time) (Result, error) {
	completed, inProgress := alive(*ex, now)
	switch {
	case inProgress:
		return Result{}, fmt.Errorf("%w: %s until %s", ErrInProgress, key, ex.InProgressExpiration.UTC().Format(time.RFC3339Nano))
	case completed:
		if validation != "" && ex.Validation != "" && ex.Validation != validation {
			return Result{}, fmt.Errorf("%w: %s", ErrPayloadMismatch, key)
		}
		return Result{Data: ex.Data, Replayed: true}, nil
	default:
		// The record expired between the store's check and ours (clock skew): treat it as busy
		// so the sender retries, rather than running the work under a lock we do not hold.
		return Result{}, fmt.Errorf("%w: %s (record changed while locking)", ErrInProgress, key)
	}
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
