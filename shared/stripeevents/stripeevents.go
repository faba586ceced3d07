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
//
// Only the signature is stripe-go's (ValidatePayloadWithTolerance): its ConstructEvent would
// also decode data.object into a map of every field, several times the cost of the check, on
// every delivery, duplicates included. The envelope is read here, data.object kept raw for the
// Decode function of its type.
func Verify(payload []byte, sigHeader string, secrets []string, tolerance time.Duration) (Event, error) {
	if len(secrets) == 0 {
		return Event{}, ErrNoSecrets
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var err error
	for _, secret := range secrets {
		err = webhook.ValidatePayloadWithTolerance(payload, sigHeader, secret, tolerance)
		// A header or timestamp problem is the same for every secret; only a signature that does
		// not match is worth trying the next secret for.
		if !errors.Is(err, webhook.ErrNoValidSignature) {
			break
		}
	}
	if err != nil {
		return Event{}, err
	}
	var env struct {
		ID         string `json:"id"`
		Type       string `json:"type"`
		APIVersion string `json:"api_version"`
		Livemode   bool   `json:"livemode"`
		Created    int64  `json:"created"`
		Data       *struct {
			Object             json.RawMessage `json:"object"`
			PreviousAttributes map[string]any  `json:"previous_attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(payload, &env); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if env.ID == "" || env.Type == "" || env.Data == nil || len(env.Data.Object) == 0 || string(env.Data.Object) == "null" {
		return Event{}, fmt.Errorf("%w: missing id, type or data.object", ErrMalformed)
	}
	// The raw value is exactly the JSON value's bytes: an object starts with '{'. (stripe-go's
	// ConstructEvent refused anything else by decoding it into a map.)
	if env.Data.Object[0] != '{' {
		return Event{}, fmt.Errorf("%w: data.object is not an object", ErrMalformed)
	}
	return Event{ID: env.ID, Type: env.Type, APIVersion: env.APIVersion, Livemode: env.Livemode,
		Created: time.Unix(env.Created, 0).UTC(), Object: env.Data.Object, PreviousAttributes: env.Data.PreviousAttributes}, nil
}
