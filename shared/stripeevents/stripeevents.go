// Package stripeevents verifies Stripe webhook deliveries and decodes, version-tolerantly, the
// few fields refbridge needs from the events it handles.
//
// stripe-go v79 is pinned to API version 2024-06-20 and would reject events of any other version.
// A Stripe account may be on a newer one: 2025-03-31.basil moved invoice.subscription under
// invoice.parent.subscription_details and removed invoice.charge, invoice.payment_intent and
// invoice.paid. So the signature is checked with stripe-go's own webhook package (version check
// off), and each object is decoded into small local types that read both shapes.
package stripeevents

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stripe/stripe-go/v79/webhook"
)

// The event types refbridge handles.
const (
	TypeInvoicePaid             = "invoice.paid"
	TypeChargeRefunded          = "charge.refunded"
	TypeDisputeCreated          = "charge.dispute.created"
	TypeDisputeClosed           = "charge.dispute.closed"
	TypeCheckoutSessionComplete = "checkout.session.completed"
	TypeCustomerCreated         = "customer.created"
	TypeCustomerUpdated         = "customer.updated"
)

// DefaultTolerance is how old a signature may be, Stripe's default.
const DefaultTolerance = webhook.DefaultTolerance

var (
	// ErrNoSecrets means no webhook secret is configured.
	ErrNoSecrets = errors.New("stripeevents: no webhook secret configured")
	// ErrMalformed means the signed body is not a Stripe event.
	ErrMalformed = errors.New("stripeevents: malformed event")
)

// Event is the envelope of a verified event; Object is data.object, undecoded.
type Event struct {
	ID         string
	Type       string
	APIVersion string
	Livemode   bool
	Created    time.Time
	Object     json.RawMessage
	// PreviousAttributes is data.previous_attributes (*.updated events only): the attributes
	// that changed, with their values before the event; nil when the event has none.
	PreviousAttributes map[string]any
}

// Verify checks the Stripe-Signature header against each secret (several during a rotation)
// with stripe-go's webhook package and returns the event. The errors are stripe-go's sentinels
// (webhook.ErrNotSigned, ErrInvalidHeader, ErrTooOld, ErrNoValidSignature), ErrNoSecrets or
// ErrMalformed; all of them mean "bad request", none is worth a retry.
func Verify(payload []byte, sigHeader string, secrets []string, tolerance time.Duration) (Event, error) {
	if len(secrets) == 0 {
		return Event{}, ErrNoSecrets
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var lastErr error
	for _, secret := range secrets {
		ev, err := webhook.ConstructEventWithOptions(payload, sigHeader, secret, webhook.ConstructEventOptions{
			Tolerance:                tolerance,
			IgnoreAPIVersionMismatch: true, // decoded below, version-tolerantly
		})
		if err == nil {
			if ev.ID == "" || ev.Type == "" || ev.Data == nil || len(ev.Data.Raw) == 0 {
				return Event{}, fmt.Errorf("%w: missing id, type or data.object", ErrMalformed)
			}
			return Event{ID: ev.ID, Type: string(ev.Type), APIVersion: ev.APIVersion, Livemode: ev.Livemode,
				Created: time.Unix(ev.Created, 0).UTC(), Object: ev.Data.Raw, PreviousAttributes: ev.Data.PreviousAttributes}, nil
		}
		lastErr = err
		// A header or timestamp problem is the same for every secret; only a signature that does
		// not match is worth trying the next secret for.
		if !errors.Is(err, webhook.ErrNoValidSignature) {
			break
		}
	}
	if errors.Is(lastErr, webhook.ErrNotSigned) || errors.Is(lastErr, webhook.ErrInvalidHeader) ||
		errors.Is(lastErr, webhook.ErrTooOld) || errors.Is(lastErr, webhook.ErrNoValidSignature) {
		return Event{}, lastErr
	}
	return Event{}, fmt.Errorf("%w: %v", ErrMalformed, lastErr)
}
