package stripeevents

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// ref is an expandable Stripe field: an id string, an object with an id, or null.
type ref string

func (r *ref) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*r = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*r = ref(s)
	default:
		var obj struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(b, &obj); err != nil {
			return fmt.Errorf("expandable field: %w", err)
		}
		*r = ref(obj.ID)
	}
	return nil
}

// Invoice is what refbridge reads of a Stripe invoice, in either API shape.
type Invoice struct {
	ID             string
	CustomerID     string
	CustomerEmail  string
	Currency       string // lower-case ISO code
	AmountPaid     int64  // minor units
	BillingReason  string
	Status         string
	Livemode       bool
	SubscriptionID string
	// Metadata is the invoice's own; SubscriptionMetadata is the subscription's snapshot
	// (subscription_details.metadata, under parent since basil).
	Metadata             map[string]string
	SubscriptionMetadata map[string]string
	// ChargeID and PaymentIntentID exist only before basil.
	ChargeID        string
	PaymentIntentID string
}

type subscriptionDetails struct {
	Metadata     map[string]string `json:"metadata"`
	Subscription ref               `json:"subscription"`
}

// DecodeInvoice reads an invoice of API version 2024-06-20 or of basil and later.
func DecodeInvoice(raw json.RawMessage) (Invoice, error) {
	var w struct {
		Object              string               `json:"object"`
		ID                  string               `json:"id"`
		Customer            ref                  `json:"customer"`
		CustomerEmail       *string              `json:"customer_email"`
		Currency            string               `json:"currency"`
		AmountPaid          int64                `json:"amount_paid"`
		BillingReason       *string              `json:"billing_reason"`
		Status              *string              `json:"status"`
		Livemode            bool                 `json:"livemode"`
		Metadata            map[string]string    `json:"metadata"`
		Subscription        ref                  `json:"subscription"`         // before basil
		SubscriptionDetails *subscriptionDetails `json:"subscription_details"` // before basil
		Parent              *struct {
			SubscriptionDetails *subscriptionDetails `json:"subscription_details"`
		} `json:"parent"` // basil and later
		Charge        ref `json:"charge"`
		PaymentIntent ref `json:"payment_intent"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return Invoice{}, fmt.Errorf("%w: invoice: %v", ErrMalformed, err)
	}
	if w.Object != "invoice" || w.ID == "" {
		return Invoice{}, fmt.Errorf("%w: data.object is not an invoice", ErrMalformed)
	}
	inv := Invoice{
		ID: w.ID, CustomerID: string(w.Customer), CustomerEmail: deref(w.CustomerEmail), Currency: w.Currency,
		AmountPaid: w.AmountPaid, BillingReason: deref(w.BillingReason), Status: deref(w.Status), Livemode: w.Livemode,
		SubscriptionID: string(w.Subscription), Metadata: w.Metadata,
		ChargeID: string(w.Charge), PaymentIntentID: string(w.PaymentIntent),
	}
	details := w.SubscriptionDetails
	if w.Parent != nil && w.Parent.SubscriptionDetails != nil {
		details = w.Parent.SubscriptionDetails
	}
	if details != nil {
		inv.SubscriptionMetadata = details.Metadata
		if inv.SubscriptionID == "" {
			inv.SubscriptionID = string(details.Subscription)
		}
	}
	return inv, nil
}

// Refund is one refund of a charge.
type Refund struct {
	ID     string
	Amount int64
	Status string
}

// Charge is what refbridge reads of a refunded charge.
type Charge struct {
	ID              string
	CustomerID      string
	InvoiceID       string // only before basil
	PaymentIntentID string
	Currency        string
	Amount          int64
	AmountRefunded  int64 // cumulative
	Livemode        bool
	// Refunds lists the refunds included in the event (Stripe may include only some).
	Refunds []Refund
}

// DecodeCharge reads a charge of either API shape.
func DecodeCharge(raw json.RawMessage) (Charge, error) {
	var w struct {
		Object         string `json:"object"`
		ID             string `json:"id"`
		Customer       ref    `json:"customer"`
		Invoice        ref    `json:"invoice"`
		PaymentIntent  ref    `json:"payment_intent"`
		Currency       string `json:"currency"`
		Amount         int64  `json:"amount"`
		AmountRefunded int64  `json:"amount_refunded"`
		Livemode       bool   `json:"livemode"`
		Refunds        *struct {
			Data []struct {
				ID     string  `json:"id"`
				Amount int64   `json:"amount"`
				Status *string `json:"status"`
			} `json:"data"`
		} `json:"refunds"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return Charge{}, fmt.Errorf("%w: charge: %v", ErrMalformed, err)
	}
	if w.Object != "charge" || w.ID == "" {
		return Charge{}, fmt.Errorf("%w: data.object is not a charge", ErrMalformed)
	}
	c := Charge{ID: w.ID, CustomerID: string(w.Customer), InvoiceID: string(w.Invoice), PaymentIntentID: string(w.PaymentIntent),
		Currency: w.Currency, Amount: w.Amount, AmountRefunded: w.AmountRefunded, Livemode: w.Livemode}
	if w.Refunds != nil {
		for _, r := range w.Refunds.Data {
			c.Refunds = append(c.Refunds, Refund{ID: r.ID, Amount: r.Amount, Status: deref(r.Status)})
		}
	}
	return c, nil
}

// Dispute is what refbridge reads of a dispute.
type Dispute struct {
	ID              string
	ChargeID        string
	PaymentIntentID string
	Currency        string
	Amount          int64
	Status          string // needs_response, under_review, won, lost, ...
	Reason          string
	Livemode        bool
}

// DecodeDispute reads a dispute.
func DecodeDispute(raw json.RawMessage) (Dispute, error) {
	var w struct {
		Object        string `json:"object"`
		ID            string `json:"id"`
		Charge        ref    `json:"charge"`
		PaymentIntent ref    `json:"payment_intent"`
		Currency      string `json:"currency"`
		Amount        int64  `json:"amount"`
		Status        string `json:"status"`
		Reason        string `json:"reason"`
		Livemode      bool   `json:"livemode"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return Dispute{}, fmt.Errorf("%w: dispute: %v", ErrMalformed, err)
	}
	if w.Object != "dispute" || w.ID == "" {
		return Dispute{}, fmt.Errorf("%w: data.object is not a dispute", ErrMalformed)
	}
	return Dispute{ID: w.ID, ChargeID: string(w.Charge), PaymentIntentID: string(w.PaymentIntent), Currency: w.Currency,
		Amount: w.Amount, Status: w.Status, Reason: w.Reason, Livemode: w.Livemode}, nil
}

// Signup is a new customer that may carry a referral code: a completed checkout session or a
// created/updated customer. Only what attribution needs is read, and none of these fields
// differs between API versions 2024-06-20 and 2025-03-31.basil (or later: newer versions add
// customer_details.individual_name/business_name beside name, and keep name).
type Signup struct {
	Source     string // ObjectCheckoutSession or ObjectCustomer
	ID         string // the session or customer id
	CustomerID string // "" for a checkout that created no customer (payment mode, customer_creation if_required)
	Email      string // as Stripe has it: callers normalise it
	Name       string
	// ClientReferenceID is the checkout session's client_reference_id (empty for a customer).
	ClientReferenceID string
	Metadata          map[string]string
	Livemode          bool
	// Changes is what a customer.updated changed (ChangesOf its previous_attributes); nil for
	// other events, and for an update that does not say (no previous_attributes): act on it.
	Changes *Changes
}

// Changes is what an *.updated event's data.previous_attributes names: the attributes that
// changed, each with its value before the event. For a hash such as metadata, Stripe names the
// keys that changed (an added key with null); its value is read leniently (see MetadataKey).
type Changes struct {
	previous map[string]any
}

// ChangesOf reads data.previous_attributes (Event.PreviousAttributes); nil when there is none,
// or it is empty: nothing is known about what changed.
func ChangesOf(previous map[string]any) *Changes {
	if len(previous) == 0 {
		return nil
	}
	return &Changes{previous: previous}
}

// Attribute reports whether a top-level attribute (e.g. "email") changed.
func (c *Changes) Attribute(name string) bool {
	_, ok := c.previous[name]
	return ok
}

// MetadataKey reports whether metadata[key] may have changed: previous_attributes.metadata names
// the key, or is not an object naming keys (null, empty or another shape: it cannot rule the key
// out). False when metadata did not change, or only other keys did.
func (c *Changes) MetadataKey(key string) bool {
	raw, ok := c.previous["metadata"]
	if !ok {
		return false
	}
	md, isObject := raw.(map[string]any)
	if !isObject || len(md) == 0 {
		return true
	}
	_, ok = md[key]
	return ok
}

// The objects a Signup is read from.
const (
	ObjectCheckoutSession = "checkout.session"
	ObjectCustomer        = "customer"
)

// DecodeCheckoutSession reads the session of checkout.session.completed: the email and name
// from customer_details (what the buyer typed), else customer_email (what the integration
// passed in), the customer, client_reference_id and metadata.
func DecodeCheckoutSession(raw json.RawMessage) (Signup, error) {
	return decodeSignup(raw, ObjectCheckoutSession)
}

// DecodeCustomer reads the customer of customer.created and customer.updated.
func DecodeCustomer(raw json.RawMessage) (Signup, error) {
	return decodeSignup(raw, ObjectCustomer)
}

// DecodeSignup reads a checkout session or a customer, whichever data.object is.
func DecodeSignup(raw json.RawMessage) (Signup, error) { return decodeSignup(raw, "") }

func decodeSignup(raw json.RawMessage, want string) (Signup, error) {
	var w struct {
		Object            string            `json:"object"`
		ID                string            `json:"id"`
		Customer          ref               `json:"customer"`
		CustomerEmail     *string           `json:"customer_email"`
		ClientReferenceID *string           `json:"client_reference_id"`
		Email             *string           `json:"email"`
		Name              *string           `json:"name"`
		Metadata          map[string]string `json:"metadata"`
		Livemode          bool              `json:"livemode"`
		CustomerDetails   *struct {
			Email *string `json:"email"`
			Name  *string `json:"name"`
		} `json:"customer_details"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return Signup{}, fmt.Errorf("%w: signup: %v", ErrMalformed, err)
	}
	if want != "" && w.Object != want {
		return Signup{}, fmt.Errorf("%w: data.object is not a %s", ErrMalformed, want)
	}
	s := Signup{Source: w.Object, ID: w.ID, Metadata: w.Metadata, Livemode: w.Livemode}
	switch w.Object {
	case ObjectCheckoutSession:
		s.CustomerID = string(w.Customer)
		s.ClientReferenceID = strings.TrimSpace(deref(w.ClientReferenceID))
		s.Email = deref(w.CustomerEmail)
		if d := w.CustomerDetails; d != nil {
			if e := deref(d.Email); e != "" {
				s.Email = e
			}
			s.Name = deref(d.Name)
		}
	case ObjectCustomer:
		s.CustomerID, s.Email, s.Name = w.ID, deref(w.Email), deref(w.Name)
	default:
		return Signup{}, fmt.Errorf("%w: data.object is neither a checkout session nor a customer", ErrMalformed)
	}
	if s.ID == "" {
		return Signup{}, fmt.Errorf("%w: %s without an id", ErrMalformed, w.Object)
	}
	return s, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
