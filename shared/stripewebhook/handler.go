// Package stripewebhook is the stripe-webhook function's handler: it verifies a Stripe delivery,
// ignores what refbridge does not handle, runs each event once (idempotency on the event id)
// and hands it to the referral decisions (payments, refunds and disputes; signups carrying a
// referral code), then answers with the HTTP contract's outcome.
package stripewebhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/idempotency"
	"github.com/refbridge/refbridge/shared/observe"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

// Decisions is what the handler asks of the referral rules.
type Decisions interface {
	InvoicePaid(ctx context.Context, inv stripeevents.Invoice, paidAt time.Time) (referrals.Result, error)
	ChargeRefunded(ctx context.Context, ch stripeevents.Charge, at time.Time) (referrals.Result, error)
	DisputeCreated(ctx context.Context, d stripeevents.Dispute, at time.Time) (referrals.Result, error)
	DisputeClosed(ctx context.Context, d stripeevents.Dispute, at time.Time) (referrals.Result, error)
	Signup(ctx context.Context, s stripeevents.Signup) (referrals.Result, error)
}

// Once runs work once per key (the idempotency runner).
type Once interface {
	Do(ctx context.Context, key string, payload []byte, work func(context.Context) ([]byte, error)) (idempotency.Result, error)
}

// Handler handles Stripe deliveries.
type Handler struct {
	Secrets   []string // STRIPE_WEBHOOK_SECRETS, newest first during a rotation
	Live      bool     // STRIPE_MODE=live
	Decisions Decisions
	Once      Once
	Log       *slog.Logger
	Metrics   *observe.Metrics // nil: none
}

var _ httpx.Handler = (*Handler)(nil)

// stored is what the idempotency record keeps: the first answer, replayed to redeliveries.
type stored struct {
	Outcome string `json:"outcome"`
	Reason  string `json:"reason"`
}

// Handle implements httpx.Handler.
func (h *Handler) Handle(ctx context.Context, r httpx.Request) httpx.Outcome {
	log := h.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ev, err := stripeevents.Verify(r.Body, r.Header["stripe-signature"], h.Secrets, 0)
	if err != nil {
		log.WarnContext(ctx, "stripe delivery rejected", "error", err.Error())
		h.Metrics.Count(ctx, "SignatureRejected", 1)
		return httpx.Outcome{Kind: httpx.Invalid, Reason: verifyReason(err)}
	}
	log = log.With("event", ev.ID, "type", ev.Type)
	if ev.Livemode != h.Live {
		log.InfoContext(ctx, "stripe event of the other mode ignored", "livemode", ev.Livemode)
		h.Metrics.Count(ctx, "IgnoredOtherMode", 1)
		return httpx.Outcome{Kind: httpx.Ignored, Reason: "event of the other Stripe mode"}
	}
	decide, err := h.decision(ev)
	if errors.Is(err, errUnhandled) {
		return httpx.Outcome{Kind: httpx.Ignored, Reason: "event type " + ev.Type + " is not handled"}
	}
	// The object is decoded inside the work: a redelivery (duplicate) is answered from the
	// idempotency record without decoding it again. A malformed one releases the lock it took,
	// so it leaves nothing behind.
	res, err := h.Once.Do(ctx, "stripe#"+ev.ID, r.Body, func(ctx context.Context) ([]byte, error) {
		out, err := decide(ctx)
		if err != nil {
			return nil, err
		}
		return json.Marshal(stored{Outcome: string(out.Outcome), Reason: out.Reason})
	})
	switch {
	case errors.Is(err, errMalformed):
		log.WarnContext(ctx, "stripe event malformed", "error", err.Error())
		return httpx.Outcome{Kind: httpx.Invalid, Reason: "data.object does not match the event type"}
	case errors.Is(err, idempotency.ErrInProgress):
		return httpx.Outcome{Kind: httpx.Transient, Reason: "the same event is being processed; retry later"}
	case errors.Is(err, idempotency.ErrPayloadMismatch):
		return httpx.Outcome{Kind: httpx.Invalid, Reason: "event id reused with a different body"}
	case errors.Is(err, referrals.ErrInProgress):
		// Expected when a customer's event and its checkout's arrive together: not an error.
		log.InfoContext(ctx, "stripe event waits for another delivery creating the same lead", "error", err.Error())
		return httpx.Outcome{Kind: httpx.Transient, Reason: "another delivery is creating the same lead; retry later"}
	case errors.Is(err, referrals.ErrUnqualifyInProgress):
		// Expected when a refund races its own payment's qualification: not an error.
		log.InfoContext(ctx, "stripe event waits for another delivery unqualifying the same lead", "error", err.Error())
		return httpx.Outcome{Kind: httpx.Transient, Reason: "another delivery is unqualifying the same lead; retry later"}
	case errors.Is(err, referrals.ErrCancelPending):
		// Expected when a renewal or a won dispute comes while the sweep cancels the lead's
		// reward of its refund: not an error.
		log.InfoContext(ctx, "stripe event waits for the sweep's cancel of the lead's reward", "error", err.Error())
		return httpx.Outcome{Kind: httpx.Transient, Reason: "a reward of this lead is being canceled; retry later"}
	case err != nil:
		log.ErrorContext(ctx, "stripe event failed; Stripe will retry", "error", err.Error())
		h.Metrics.Count(ctx, "TransientFailure", 1)
		return httpx.Outcome{Kind: httpx.Transient, Reason: "temporary failure; retry later"}
	}
	var s stored
	if err := json.Unmarshal(res.Data, &s); err != nil {
		return httpx.Outcome{Kind: httpx.Transient, Reason: "stored result unreadable; retry later"}
	}
	log.InfoContext(ctx, "stripe event handled", "outcome", s.Outcome, "reason", s.Reason, "replayed", res.Replayed)
	outcome := s.Outcome
	if res.Replayed {
		outcome = "duplicate"
	}
	h.Metrics.Count(ctx, "Events", 1, observe.Dimension{Name: "EventType", Value: ev.Type}, observe.Dimension{Name: "Outcome", Value: outcome})
	if why := notAttributed(ev.Type, s); why != "" && !res.Replayed {
		h.Metrics.Count(ctx, "SignupNotAttributed", 1, observe.Dimension{Name: "Reason", Value: why})
	}
	if res.Replayed {
		return httpx.Outcome{Kind: httpx.Duplicate, Reason: "event already processed: " + s.Outcome}
	}
	kind := httpx.Processed
	switch referrals.Outcome(s.Outcome) {
	case referrals.Ignored, referrals.Unmatched, referrals.Refused:
		kind = httpx.Ignored
	case referrals.Duplicate:
		kind = httpx.Duplicate
	}
	return httpx.Outcome{Kind: kind, Reason: s.Outcome + ": " + s.Reason}
}

var (
	errUnhandled = errors.New("event type not handled")
	// errMalformed wraps a data.object that does not decode as its event type says.
	errMalformed = errors.New("malformed data.object")
)

// notAttributed is the reason a signup carrying a referral code was not attributed
// (existing_referrer, self_referral, unknown_referral_code, rf_refused, lead_gone,
// invalid_signup: referrals.NotAttributed), "" for anything else: operators watch these apart
// from Events, whose Outcome says only refused, unmatched or ignored.
func notAttributed(eventType string, s stored) string {
	switch eventType {
	case stripeevents.TypeCheckoutSessionComplete, stripeevents.TypeCustomerCreated, stripeevents.TypeCustomerUpdated:
		return referrals.NotAttributed(referrals.Outcome(s.Outcome), s.Reason)
	}
	return ""
}

// decision returns the decision to run once for the event's type: it decodes the event's
// object (a failure wraps errMalformed) and decides. errUnhandled for a type refbridge ignores.
func (h *Handler) decision(ev stripeevents.Event) (func(context.Context) (referrals.Result, error), error) {
	switch ev.Type {
	case stripeevents.TypeInvoicePaid:
		return decoded(ev, stripeevents.DecodeInvoice, func(ctx context.Context, inv stripeevents.Invoice) (referrals.Result, error) {
			return h.Decisions.InvoicePaid(ctx, inv, ev.Created)
		}), nil
	case stripeevents.TypeChargeRefunded:
		return decoded(ev, stripeevents.DecodeCharge, func(ctx context.Context, ch stripeevents.Charge) (referrals.Result, error) {
			return h.Decisions.ChargeRefunded(ctx, ch, ev.Created)
		}), nil
	case stripeevents.TypeDisputeCreated:
		return decoded(ev, stripeevents.DecodeDispute, func(ctx context.Context, d stripeevents.Dispute) (referrals.Result, error) {
			return h.Decisions.DisputeCreated(ctx, d, ev.Created)
		}), nil
	case stripeevents.TypeDisputeClosed:
		return decoded(ev, stripeevents.DecodeDispute, func(ctx context.Context, d stripeevents.Dispute) (referrals.Result, error) {
			return h.Decisions.DisputeClosed(ctx, d, ev.Created)
		}), nil
	case stripeevents.TypeCheckoutSessionComplete:
		return decoded(ev, stripeevents.DecodeCheckoutSession, h.Decisions.Signup), nil
	case stripeevents.TypeCustomerCreated, stripeevents.TypeCustomerUpdated:
		decode := stripeevents.DecodeCustomer
		if ev.Type == stripeevents.TypeCustomerUpdated {
			decode = func(raw json.RawMessage) (stripeevents.Signup, error) {
				s, err := stripeevents.DecodeCustomer(raw)
				// An update that changed neither the email nor the code is not decided again.
				s.Changes = stripeevents.ChangesOf(ev.PreviousAttributes)
				return s, err
			}
		}
		return decoded(ev, decode, h.Decisions.Signup), nil
	}
	return nil, errUnhandled
}

// decoded decodes the event's object with decode before deciding with decide.
func decoded[T any](ev stripeevents.Event, decode func(json.RawMessage) (T, error),
	decide func(context.Context, T) (referrals.Result, error)) func(context.Context) (referrals.Result, error) {
	return func(ctx context.Context) (referrals.Result, error) {
		v, err := decode(ev.Object)
		if err != nil {
			return referrals.Result{}, fmt.Errorf("%w: %w", errMalformed, err)
		}
		return decide(ctx, v)
	}
}

// verifyReason says what was wrong without echoing anything the sender sent.
func verifyReason(err error) string {
	switch {
	case errors.Is(err, stripeevents.ErrNoSecrets):
		return "no webhook secret configured"
	case errors.Is(err, stripeevents.ErrMalformed):
		return "malformed event"
	default:
		return "invalid Stripe-Signature: " + err.Error()
	}
}
