package rfwebhook

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/refbridge/refbridge/shared/stripecustomers"
)

// stripeStub answers Stripe's customer search by email and records metadata updates.
type stripeStub struct {
	mu      sync.Mutex
	byEmail map[string]string // email → customer id
	updates map[string]map[string]string
}

func newStripeStub(t *testing.T, byEmail map[string]string) (*stripeStub, string) {
	s := &stripeStub{byEmail: byEmail, updates: map[string]map[string]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if r.Method == http.MethodGet && r.URL.Path == "/v1/customers" {
			var data []map[string]any
			if id, ok := s.byEmail[r.URL.Query().Get("email")]; ok {
				data = append(data, map[string]any{"id": id, "object": "customer"})
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data, "has_more": false, "url": "/v1/customers"})
			return
		}
		id := strings.TrimPrefix(r.URL.Path, "/v1/customers/")
		_ = r.ParseForm()
		md := map[string]string{}
		for k, v := range r.PostForm {
			if name, ok := strings.CutPrefix(k, "metadata["); ok {
				md[strings.TrimSuffix(name, "]")] = v[0]
			}
		}
		s.updates[id] = md
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "object": "customer", "metadata": md})
	}))
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func (s *stripeStub) update(id string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updates[id]
}

func TestStripeCustomersAreLinked(t *testing.T) {
	stub, url := newStripeStub(t, map[string]string{"yan@example.com": "cus_yan", "zoe@example.com": "cus_zoe"})
	bothWith(t, func(h *Handler) { h.Customers = stripecustomers.New("sk_test_refbridge", url) }, func(t *testing.T, e env) {
		e.hook(t, "lead_created", "lead-created", "json", 0)
		e.hook(t, "referrer_joined", "referrer-joined", "json", 0)
		ref := e.sim.Referrer(t, 1, "zoe@example.com")
		lead := e.sim.Lead(t, 1, ref.Code, "Yan@Example.com")
		e.sim.WaitIdle(t)
		got, err := e.ledger.LeadByCustomer(context.Background(), "cus_yan")
		if err != nil || got.ID != int64(lead.ID) {
			t.Fatalf("customer mapping %+v %v", got, err)
		}
		if md := stub.update("cus_yan"); md["rf_code"] != lead.Code || md["rf_user_id"] == "" {
			t.Fatalf("lead write-back %v", md)
		}
		if md := stub.update("cus_zoe"); md["rf_code"] != ref.Code || !strings.Contains(md["rf_referral_url"], ref.Code) {
			t.Fatalf("referrer write-back %v", md)
		}
	})
}
