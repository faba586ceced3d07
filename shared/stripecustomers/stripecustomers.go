// Package stripecustomers reads and writes the Stripe customer metadata refbridge uses when
// STRIPE_API_KEY is set: rf_user_id / rf_code on a customer match its payments to a Referral
// Factory lead by id, even after the customer's email drifts from the lead's.
package stripecustomers

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/stripe/stripe-go/v79"
	"github.com/stripe/stripe-go/v79/client"
)

// Client reads and updates customers through stripe-go.
type Client struct {
	api *client.API
}

// New returns a client for the Stripe API with key; baseURL overrides the API host (stripe-mock
// or a test server), "" for Stripe itself.
func New(key, baseURL string) *Client {
	cfg := &stripe.BackendConfig{MaxNetworkRetries: stripe.Int64(2), LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelError}}
	if baseURL != "" {
		cfg.URL = stripe.String(baseURL)
	}
	return &Client{api: client.New(key, &stripe.Backends{
		API:     stripe.GetBackendWithConfig(stripe.APIBackend, cfg),
		Connect: stripe.GetBackendWithConfig(stripe.ConnectBackend, cfg),
		Uploads: stripe.GetBackendWithConfig(stripe.UploadsBackend, cfg),
	})}
}

// Metadata returns a customer's metadata.
func (c *Client) Metadata(ctx context.Context, customerID string) (map[string]string, error) {
	p := &stripe.CustomerParams{}
	p.Context = ctx
	cus, err := c.api.Customers.Get(customerID, p)
	var se *stripe.Error
	if errors.As(err, &se) && se.HTTPStatusCode == 404 {
		return nil, nil // deleted or unknown: no metadata to match by; retrying cannot change that
	}
	if err != nil {
		return nil, fmt.Errorf("stripe: read customer %s: %w", customerID, err)
	}
	return cus.Metadata, nil
}

// ChargeCustomer returns the customer a charge belongs to ("" when none or unknown). Disputes
// name only the charge, and since API version 2025-03-31.basil invoices no longer name theirs.
func (c *Client) ChargeCustomer(ctx context.Context, chargeID string) (string, error) {
	p := &stripe.ChargeParams{}
	p.Context = ctx
	ch, err := c.api.Charges.Get(chargeID, p)
	var se *stripe.Error
	if errors.As(err, &se) && se.HTTPStatusCode == 404 {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("stripe: read charge %s: %w", chargeID, err)
	}
	if ch.Customer == nil {
		return "", nil
	}
	return ch.Customer.ID, nil
}

// FindByEmail returns the ids of the customers with this email (Stripe compares it
// case-sensitively, so callers pass the normalised address).
func (c *Client) FindByEmail(ctx context.Context, email string) ([]string, error) {
	p := &stripe.CustomerListParams{Email: stripe.String(email)}
	p.Context = ctx
	p.Limit = stripe.Int64(10)
	var ids []string
	it := c.api.Customers.List(p)
	for it.Next() && len(ids) < 10 {
		ids = append(ids, it.Customer().ID)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("stripe: find customers by email: %w", err)
	}
	return ids, nil
}

// WriteReferralLink stores a referrer's RF code and referral link in the customer's metadata,
// so it can be shown on invoices and in the product.
func (c *Client) WriteReferralLink(ctx context.Context, customerID string, rfUserID int64, rfCode, url string) error {
	id := strconv.FormatInt(rfUserID, 10)
	p := &stripe.CustomerParams{}
	p.Context = ctx
	p.IdempotencyKey = stripe.String("refbridge-rf-referrer-" + customerID + "-" + id)
	p.AddMetadata("rf_user_id", id)
	p.AddMetadata("rf_code", rfCode)
	if url != "" {
		p.AddMetadata("rf_referral_url", url)
	}
	if _, err := c.api.Customers.Update(customerID, p); err != nil {
		return fmt.Errorf("stripe: write referral link to customer %s: %w", customerID, err)
	}
	return nil
}

// WriteBack stores the lead's RF id and code in the customer's metadata. The idempotency key
// names the customer and the lead, so Stripe applies a retried write once.
func (c *Client) WriteBack(ctx context.Context, customerID string, rfUserID int64, rfCode string) error {
	id := strconv.FormatInt(rfUserID, 10)
	p := &stripe.CustomerParams{}
	p.Context = ctx
	p.IdempotencyKey = stripe.String("refbridge-rf-link-" + customerID + "-" + id)
	p.AddMetadata("rf_user_id", id)
	if rfCode != "" {
		p.AddMetadata("rf_code", rfCode)
	}
	if _, err := c.api.Customers.Update(customerID, p); err != nil {
		return fmt.Errorf("stripe: write RF link to customer %s: %w", customerID, err)
	}
	return nil
}
