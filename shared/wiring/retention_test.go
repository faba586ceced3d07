package wiring

import (
	"context"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/idempotency"
)

// completions records what the idempotency runner completes.
type completions struct {
	*idempotency.Memory
	records []idempotency.Record
}

func (c *completions) Complete(ctx context.Context, rec idempotency.Record) error {
	c.records = append(c.records, rec)
	return c.Memory.Complete(ctx, rec)
}

// once is what the webhook handlers run their work through.
type once interface {
	Do(ctx context.Context, key string, payload []byte, work func(context.Context) ([]byte, error)) (idempotency.Result, error)
}

// TestEventMemory: a delivery is remembered (its idempotency record, which holds the answer and
// a hash of the payload, expires) longer than its sender retries it: Stripe retries for three
// days, so four; RF's retries are undocumented, so a week.
func TestEventMemory(t *testing.T) {
	for _, c := range []struct {
		name string
		once func(Deps) once
		want time.Duration
	}{
		{"stripe-webhook", func(d Deps) once {
			return d.StripeWebhook().Once
		}, 4 * 24 * time.Hour},
		{"rf-webhook", func(d Deps) once {
			return d.RFWebhook().Once
		}, 7 * 24 * time.Hour},
	} {
		store := &completions{Memory: idempotency.NewMemory()}
		start := time.Now()
		_, err := c.once(Deps{Idempotency: store}).Do(context.Background(), "k", []byte("payload"), func(context.Context) ([]byte, error) {
			return []byte(`{"outcome":"processed"}`), nil
		})
		if err != nil || len(store.records) != 1 {
			t.Fatalf("%s: %v %+v", c.name, err, store.records)
		}
		if got := store.records[0].Expiration.Sub(start); got < c.want-time.Minute || got > c.want+time.Minute {
			t.Errorf("%s remembers a delivery for %v, want %v", c.name, got, c.want)
		}
	}
}
