package referrals

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/refbridge/refbridge/shared/stripecustomers"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

// fakeStripe is a small stateful stand-in for Stripe's customer API, enough to check what
// refbridge reads and writes through stripe-go (GET and POST /v1/customers/{id}).
type fakeStripe struct {
	mu       sync.Mutex
	metadata map[string]map[string]string
	updates  []update
}

type update struct {
	customer, idempotencyKey string
	metadata                 map[string]string
}

func newFakeStripe(t *testing.T, customers map[string]map[string]string) (*fakeStripe, string) {
	f := &fakeStripe{metadata: customers}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if ch, ok := strings.CutPrefix(r.URL.Path, "/v1/charges/"); ok {
			_ = json.NewEncoder(w).Encode(map[string]any{"id": ch, "object": "charge", "customer": erinCus})
			return
		}
		id := strings.TrimPrefix(r.URL.Path, "/v1/customers/")
		md, ok := f.metadata[id]
		if !ok || r.Header.Get("Authorization") != "Bearer sk_test_refbridge" {
			w.WriteHeader(404)
			_, _ = w.Write([]byte(`{"error":{"type":"invalid_request_error","message":"No such customer"}}`))
			return
		}
		if r.Method == http.MethodPost {
			_ = r.ParseForm()
			u := update{customer: id, idempotencyKey: r.Header.Get("Idempotency-Key"), metadata: map[string]string{}}
			for k, v := range r.PostForm {
				if name, ok := strings.CutPrefix(k, "metadata["); ok {
					name = strings.TrimSuffix(name, "]")
					md[name], u.metadata[name] = v[0], v[0]
				}
			}
			f.updates = append(f.updates, u)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "object": "customer", "metadata": md})
	}))
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeStripe) writes() []update {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]update(nil), f.updates...)
}

func TestCustomerMetadataMatchesAndIsWrittenBack(t *testing.T) {
	t.Run("customer metadata names the lead", func(t *testing.T) {
		stores(t, settings(), func(t *testing.T, f fixture) {
			fs, url := newFakeStripe(t, map[string]map[string]string{erinCus: {"rf_code": "eRiNlEad"}})
			f.svc.WithCustomers(stripecustomers.New("sk_test_refbridge", url))
			inv := invoice("in_cusmeta", 4900)
			inv.CustomerEmail = "erin.new-address@example.com" // drifted from RF's
			res := mustPay(t, f, inv, Qualified)
			if res.Rule != RuleMetadata || len(fs.writes()) != 0 {
				t.Fatalf("%+v, %d write-backs", res, len(fs.writes()))
			}
		})
	})
	t.Run("an email match is written back once", func(t *testing.T) {
		stores(t, settings(), func(t *testing.T, f fixture) {
			fs, url := newFakeStripe(t, map[string]map[string]string{erinCus: {}})
			f.svc.WithCustomers(stripecustomers.New("sk_test_refbridge", url))
			res := mustPay(t, f, invoice("in_email", 4900), Qualified)
			w := fs.writes()
			if res.Rule != RuleRFEmail || len(w) != 1 || w[0].metadata["rf_user_id"] != "5" || w[0].metadata["rf_code"] != "eRiNlEad" ||
				!strings.Contains(w[0].idempotencyKey, erinCus) {
				t.Fatalf("%+v, write-backs %+v", res, w)
			}
			mustPay(t, f, invoice("in_email_2", 4900), Counted)
			if len(fs.writes()) != 1 {
				t.Fatalf("%d write-backs after a renewal", len(fs.writes()))
			}
		})
	})
	t.Run("a customer Stripe no longer has does not block matching", func(t *testing.T) {
		stores(t, settings(), func(t *testing.T, f fixture) {
			_, url := newFakeStripe(t, map[string]map[string]string{}) // every customer is a 404
			f.svc.WithCustomers(stripecustomers.New("sk_test_refbridge", url))
			if res := mustPay(t, f, invoice("in_gone_cus", 4900), Qualified); res.Rule != RuleRFEmail {
				t.Fatalf("%+v", res)
			}
		})
	})
	t.Run("dry run writes nothing to Stripe", func(t *testing.T) {
		set := settings()
		set.DryRun = true
		stores(t, set, func(t *testing.T, f fixture) {
			fs, url := newFakeStripe(t, map[string]map[string]string{erinCus: {}})
			f.svc.WithCustomers(stripecustomers.New("sk_test_refbridge", url))
			mustPay(t, f, invoice("in_dry_cus", 4900), Counted)
			if len(fs.writes()) != 0 {
				t.Fatalf("%d write-backs in a dry run", len(fs.writes()))
			}
		})
	})
}

// On basil and later, invoices name no charge: a dispute's lead is found through the charge's
// customer, read from Stripe. Without the key it is held (a refund of the charge, found by its
// customer, would place it), and the reason says what is missing.
func TestDisputeLeadFromStripeWhenTheChargeIsUnmapped(t *testing.T) {
	stores(t, settings(), func(t *testing.T, f fixture) {
		ctx := context.Background()
		mustPay(t, f, invoice("in_basil", 4900), Qualified) // no ChargeID, as in basil
		d := stripeevents.Dispute{ID: "dp_basil", ChargeID: "ch_basil", Currency: "usd", Amount: 4900, Status: "needs_response"}
		res, err := f.svc.DisputeCreated(ctx, d, paidAt)
		if err != nil || res.Outcome != Held || !strings.Contains(res.Reason, "STRIPE_API_KEY") {
			t.Fatalf("without a key: %+v %v", res, err)
		}
		_, url := newFakeStripe(t, map[string]map[string]string{erinCus: {}})
		f.svc.WithCustomers(stripecustomers.New("sk_test_refbridge", url))
		res, err = f.svc.DisputeCreated(ctx, d, paidAt)
		if err != nil || res.Outcome != Unqualified {
			t.Fatalf("with a key: %+v %v", res, err)
		}
	})
}
