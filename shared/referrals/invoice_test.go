package referrals

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

// Erin (RF user 5, code eRiNlEad, referred by Bob, pending) is the demo seed's lead.
const (
	erinID    = 5
	erinEmail = "erin@example.com"
	erinCus   = "cus_RbErinDemo0001"
)

var paidAt = time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	svc    *Service
	ledger ledger.Store
	sim    *rfsimtest.Sim
	clock  *testClock // the ledger's and the decisions' clock: the real time, moved by Advance
}

type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// stores runs a test with the memory ledger and the DynamoDB ledger, each against a fresh
// simulator seeded with the demo campaign.
func stores(t *testing.T, set Settings, test func(t *testing.T, f fixture)) {
	for _, name := range []string{"memory", "dynamodb"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clock := &testClock{}
			var l ledger.Store = ledger.NewMemory(ledger.WithClock(clock.Now))
			if name == "dynamodb" {
				db, table := ddbtest.Table(t)
				l = ledger.NewDynamo(db, table, ledger.WithClock(clock.Now))
			}
			sim := rfsimtest.New(t)
			sim.SeedDemo(t)
			client, err := rf.New(sim.URL, sim.Token, rf.WithLimiter(nil),
				rf.WithRetryPolicy(rf.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, MaxRetryAfter: time.Second}))
			if err != nil {
				t.Fatal(err)
			}
			test(t, fixture{svc: New(l, client, set, clock.Now, logtest.Logger(t, "referrals")), ledger: l, sim: sim, clock: clock})
		})
	}
}

func settings() Settings {
	th, _ := config.ParseThreshold("usd:2000")
	return Settings{CampaignIDs: []int64{1}, Threshold: th, UnmatchedRetry: 72 * time.Hour}
}

func invoice(id string, amount int64) stripeevents.Invoice {
	return stripeevents.Invoice{ID: id, CustomerID: erinCus, CustomerEmail: erinEmail, Currency: "usd", AmountPaid: amount,
		Status: "paid", Metadata: map[string]string{}, SubscriptionMetadata: map[string]string{}}
}

func qualificationCalls(sim *rfsimtest.Sim) int {
	n := 0
	for _, c := range sim.Server.Calls() {
		if c.Method == http.MethodPut && c.Path == "/api/v2/users/qualification" {
			n++
		}
	}
	return n
}

func mustPay(t *testing.T, f fixture, inv stripeevents.Invoice, want Outcome) Result {
	t.Helper()
	res, err := f.svc.InvoicePaid(context.Background(), inv, paidAt)
	if err != nil {
		t.Fatalf("invoice %s: %v", inv.ID, err)
	}
	if res.Outcome != want {
		t.Fatalf("invoice %s: %+v, want %s", inv.ID, res, want)
	}
	return res
}

func erinQualifiedInRF(t *testing.T, f fixture) bool {
	u, ok := f.sim.Server.User(erinID)
	if !ok {
		t.Fatal("Erin is gone from the simulator")
	}
	return u.QualifiedAt != nil
}

func TestEachMatchingRuleQualifies(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, f fixture)
		inv   func() stripeevents.Invoice
		rule  string
	}{
		{"code in subscription metadata (basil)", nil, func() stripeevents.Invoice {
			inv := invoice("in_meta", 4900)
			inv.CustomerEmail, inv.SubscriptionMetadata["rf_code"] = "someone-else@example.com", "eRiNlEad"
			return inv
		}, RuleMetadata},
		{"user id in invoice metadata", nil, func() stripeevents.Invoice {
			inv := invoice("in_meta_id", 4900)
			inv.Metadata["rf_user_id"] = "5"
			return inv
		}, RuleMetadata},
		{"stored customer mapping", func(t *testing.T, f fixture) {
			if _, err := f.ledger.PutLead(context.Background(), ledger.Lead{ID: erinID, Code: "eRiNlEad", ReferrerID: 2, CampaignID: 1, Source: ledger.SourceRFWebhook}); err != nil {
				t.Fatal(err)
			}
			if _, err := f.ledger.MapCustomer(context.Background(), erinCus, erinID, "signup"); err != nil {
				t.Fatal(err)
			}
		}, func() stripeevents.Invoice { inv := invoice("in_map", 4900); inv.CustomerEmail = ""; return inv }, RuleCustomerMap},
		{"lead index by email", func(t *testing.T, f fixture) {
			l := ledger.Lead{ID: erinID, Code: "eRiNlEad", ReferrerID: 2, CampaignID: 1, Source: ledger.SourceRFWebhook}
			l.SetEmail(" ERIN@example.com")
			if _, err := f.ledger.PutLead(context.Background(), l); err != nil {
				t.Fatal(err)
			}
		}, func() stripeevents.Invoice { return invoice("in_idx", 4900) }, RuleEmailIndex},
		{"email looked up in RF", nil, func() stripeevents.Invoice { return invoice("in_rf", 4900) }, RuleRFEmail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stores(t, settings(), func(t *testing.T, f fixture) {
				if tt.setup != nil {
					tt.setup(t, f)
				}
				res := mustPay(t, f, tt.inv(), Qualified)
				if res.LeadID != erinID || res.Rule != tt.rule {
					t.Fatalf("result %+v, want lead %d by %s", res, erinID, tt.rule)
				}
				if !erinQualifiedInRF(t, f) || qualificationCalls(f.sim) != 1 {
					t.Fatalf("RF: qualified %v after %d calls", erinQualifiedInRF(t, f), qualificationCalls(f.sim))
				}
				q, err := f.ledger.StandingQualification(context.Background(), erinID)
				if err != nil || q.Rule != tt.rule || q.ReferrerID != 2 || q.Origin != ledger.OriginRefbridge {
					t.Fatalf("ledger qualification %+v %v", q, err)
				}
				// The next payment of the same customer matches without RF and costs no call.
				before := len(f.sim.Server.Calls())
				mustPay(t, f, invoice(tt.inv().ID+"_renewal", 4900), Counted)
				if after := len(f.sim.Server.Calls()); after != before {
					t.Fatalf("a renewal made %d RF calls", after-before)
				}
			})
		})
	}
}

func TestPaymentsThatDoNotQualify(t *testing.T) {
	stores(t, settings(), func(t *testing.T, f fixture) {
		ctx := context.Background()
		// $0 trial: nothing recorded, no RF call.
		mustPay(t, f, invoice("in_zero", 0), Ignored)
		// A stranger: unmatched, recorded for retries, no qualification call.
		stranger := invoice("in_stranger", 9900)
		stranger.CustomerID, stranger.CustomerEmail = "cus_nobody", "nobody@example.com"
		res := mustPay(t, f, stranger, Unmatched)
		if strings.Contains(res.Reason, "nobody@example.com") {
			t.Fatalf("reason leaks the email: %q", res.Reason)
		}
		u, err := f.ledger.UnmatchedInvoice(ctx, "in_stranger")
		if err != nil || u.Status != ledger.UnmatchedWaiting || u.AmountMinor != 9900 || u.EmailHash != ledger.HashEmail("nobody@example.com") {
			t.Fatalf("unmatched record %+v %v", u, err)
		}
		// Below the threshold, then a second invoice crossing it.
		mustPay(t, f, invoice("in_small_1", 1500), Counted)
		if erinQualifiedInRF(t, f) {
			t.Fatal("qualified below the threshold")
		}
		// The same invoice again, even in another event: counted once.
		mustPay(t, f, invoice("in_small_1", 1500), Duplicate)
		if sp, _ := f.ledger.SpendOf(ctx, erinID); sp.Net["usd"] != 1500 {
			t.Fatalf("net after a duplicate: %v", sp.Net)
		}
		// Another currency does not add up with dollars.
		eur := invoice("in_eur", 1900)
		eur.Currency = "EUR"
		mustPay(t, f, eur, Counted)
		mustPay(t, f, invoice("in_small_2", 500), Qualified)
		if qualificationCalls(f.sim) != 1 {
			t.Fatalf("%d qualification calls", qualificationCalls(f.sim))
		}
	})
}

func TestOutsideTheWindow(t *testing.T) {
	set := settings()
	set.Window = 10 * 24 * time.Hour // Erin signed up on 2026-01-12; the payment is on 2026-02-01
	stores(t, set, func(t *testing.T, f fixture) {
		res := mustPay(t, f, invoice("in_late", 4900), Ignored)
		if !strings.Contains(res.Reason, "window") || erinQualifiedInRF(t, f) {
			t.Fatalf("%+v", res)
		}
	})
}

func TestDryRunChangesNothingInRF(t *testing.T) {
	set := settings()
	set.DryRun = true
	stores(t, set, func(t *testing.T, f fixture) {
		res := mustPay(t, f, invoice("in_dry", 4900), Counted)
		if !strings.Contains(res.Reason, "dry run") || qualificationCalls(f.sim) != 0 || erinQualifiedInRF(t, f) {
			t.Fatalf("dry run: %+v, %d calls", res, qualificationCalls(f.sim))
		}
		ds, err := f.ledger.Decisions(context.Background(), "invoice#in_dry")
		if err != nil || len(ds) == 0 || ds[len(ds)-1].Outcome != string(Qualified) {
			t.Fatalf("decision log %+v %v", ds, err)
		}
	})
}

func TestRFFailureIsTransientAndTheRetrySucceeds(t *testing.T) {
	stores(t, settings(), func(t *testing.T, f fixture) {
		ctx := context.Background()
		if _, err := f.sim.Server.AddFault(rfsim.Fault{Match: "PUT /api/v2/users/qualification", Status: 500, Count: 2}); err != nil {
			t.Fatal(err)
		}
		_, err := f.svc.InvoicePaid(ctx, invoice("in_flaky", 4900), paidAt)
		if err == nil || !rf.IsRetryable(err) {
			t.Fatalf("err = %v, want a retryable failure", err)
		}
		if _, err := f.ledger.StandingQualification(ctx, erinID); err == nil {
			t.Fatal("qualification recorded although RF failed")
		}
		in, err := f.ledger.IntentOf(ctx, ledger.IntentQualify, ledger.QualificationTarget(erinID, 1))
		if err != nil || in.Status != ledger.IntentFailed {
			t.Fatalf("intent %+v %v", in, err)
		}
		// Stripe redelivers: the invoice is already counted, the qualification is finished.
		res := mustPay(t, f, invoice("in_flaky", 4900), Qualified)
		if res.LeadID != erinID || !erinQualifiedInRF(t, f) {
			t.Fatalf("redelivery %+v", res)
		}
	})
}

// A crash after the intent and the RF call, before the confirmation: the redelivery finds the
// intent pending, reads RF (already qualified) and does not call again.
func TestPendingIntentIsReconciledByReadingRF(t *testing.T) {
	stores(t, settings(), func(t *testing.T, f fixture) {
		ctx := context.Background()
		if _, err := f.ledger.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentQualify, Target: ledger.QualificationTarget(erinID, 1), Ref: "crashed"}); err != nil {
			t.Fatal(err)
		}
		f.sim.Qualify(t, erinID) // the crashed attempt's call did reach RF
		res := mustPay(t, f, invoice("in_after_crash", 4900), Qualified)
		if res.LeadID != erinID || qualificationCalls(f.sim) != 0 {
			t.Fatalf("%+v after %d qualification calls", res, qualificationCalls(f.sim))
		}
		in, err := f.ledger.IntentOf(ctx, ledger.IntentQualify, ledger.QualificationTarget(erinID, 1))
		if err != nil || in.Status != ledger.IntentDone {
			t.Fatalf("intent %+v %v", in, err)
		}
	})
}

// A customer pays before RF tells refbridge about the lead: the invoice waits as unmatched, and
// once the lead is known it is counted and qualifies.
func TestRetryUnmatchedAfterTheLeadAppears(t *testing.T) {
	set := settings()
	set.CampaignIDs = nil // no RF email search: only the ledger can match
	stores(t, set, func(t *testing.T, f fixture) {
		ctx := context.Background()
		mustPay(t, f, invoice("in_early", 4900), Unmatched)
		u, err := f.ledger.UnmatchedInvoice(ctx, "in_early")
		if err != nil {
			t.Fatal(err)
		}
		if res, err := f.svc.RetryUnmatched(ctx, u); err != nil || res.Outcome != Unmatched {
			t.Fatalf("before the lead is known: %+v %v", res, err)
		}
		l := ledger.Lead{ID: erinID, Code: "eRiNlEad", ReferrerID: 2, CampaignID: 1, Source: ledger.SourceRFWebhook}
		l.SetEmail(erinEmail)
		if _, err := f.ledger.PutLead(ctx, l); err != nil {
			t.Fatal(err)
		}
		res, err := f.svc.RetryUnmatched(ctx, u)
		if err != nil || res.Outcome != Qualified || res.Rule != RuleEmailIndex || !erinQualifiedInRF(t, f) {
			t.Fatalf("after: %+v %v", res, err)
		}
		if u, _ := f.ledger.UnmatchedInvoice(ctx, "in_early"); u.Status != ledger.UnmatchedMatched {
			t.Fatalf("unmatched record %+v", u)
		}
	})
}
