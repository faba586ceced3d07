package referrals

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/stripecustomers"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

const (
	fayEmail = "fay@example.com"
	fayCus   = "cus_RbFayDemo00001"
)

func signupSettings() Settings {
	set := settings()
	set.SignupCampaignID = 1
	return set
}

// fayCheckout is Fay's checkout with Alice's code (client_reference_id).
func fayCheckout() stripeevents.Signup {
	return stripeevents.Signup{Source: stripeevents.ObjectCheckoutSession, ID: "cs_fay", CustomerID: fayCus,
		Email: "Fay@Example.com", Name: "Fay Lin", ClientReferenceID: "aLiCeRef"}
}

func creates(f fixture) int {
	n := 0
	for _, c := range f.sim.Server.Calls() {
		if c.Method == "POST" && c.Path == "/api/v2/users" {
			n++
		}
	}
	return n
}

func mustSignup(t *testing.T, f fixture, su stripeevents.Signup, want Outcome, reasonPrefix string) Result {
	t.Helper()
	res, err := f.svc.Signup(context.Background(), su)
	if err != nil || res.Outcome != want || !strings.HasPrefix(res.Reason, reasonPrefix) {
		t.Fatalf("signup %s: %+v %v, want %s %q…", su.ID, res, err, want, reasonPrefix)
	}
	return res
}

// With STRIPE_API_KEY the new lead's id and code go to the Stripe customer; the customer.updated
// that write causes comes back with the code still in metadata and costs no RF call.
func TestSignupWritesTheLeadToTheStripeCustomer(t *testing.T) {
	stores(t, signupSettings(), func(t *testing.T, f fixture) {
		fs, url := newFakeStripe(t, map[string]map[string]string{fayCus: {}})
		f.svc.WithCustomers(stripecustomers.New("sk_test_refbridge", url))
		res := mustSignup(t, f, fayCheckout(), Created, "lead ")
		w := fs.writes()
		if len(w) != 1 || w[0].customer != fayCus || w[0].metadata["rf_user_id"] != strconv.FormatInt(res.LeadID, 10) || w[0].metadata["rf_code"] == "" {
			t.Fatalf("write-backs %+v", w)
		}
		calls := len(f.sim.Server.Calls())
		echo := stripeevents.Signup{Source: stripeevents.ObjectCustomer, ID: fayCus, CustomerID: fayCus, Email: fayEmail,
			Metadata: map[string]string{"rf_referrer_code": "aLiCeRef", "rf_user_id": w[0].metadata["rf_user_id"], "rf_code": w[0].metadata["rf_code"]}}
		mustSignup(t, f, echo, AlreadyKnown, "lead ")
		if n := len(f.sim.Server.Calls()) - calls; n != 0 || len(fs.writes()) != 1 {
			t.Fatalf("the echo made %d RF calls and %d write-backs", n, len(fs.writes())-1)
		}
	})
}

// A lead the ledger knows by email (from RF's lead-created webhook) gets the signup's customer
// mapped and written back, and nothing is created.
func TestSignupOfALeadKnownByEmailMapsTheCustomer(t *testing.T) {
	stores(t, signupSettings(), func(t *testing.T, f fixture) {
		ctx := context.Background()
		erin := ledger.Lead{ID: erinID, Code: "eRiNlEad", ReferrerID: 2, CampaignID: 1, Source: ledger.SourceRFWebhook}
		erin.SetEmail(erinEmail)
		if _, err := f.ledger.PutLead(ctx, erin); err != nil {
			t.Fatal(err)
		}
		fs, url := newFakeStripe(t, map[string]map[string]string{erinCus: {}})
		f.svc.WithCustomers(stripecustomers.New("sk_test_refbridge", url))
		su := fayCheckout()
		su.Email, su.CustomerID = " ERIN@example.com", erinCus
		mustSignup(t, f, su, AlreadyKnown, "lead 5 already known by its email (referrer 2); nothing to create; Stripe customer mapped to it")
		if l, err := f.ledger.LeadByCustomer(ctx, erinCus); err != nil || l.ID != erinID {
			t.Fatalf("mapping %+v %v", l, err)
		}
		if len(f.sim.Server.Calls()) != 0 || len(fs.writes()) != 1 {
			t.Fatalf("%d RF calls, %d write-backs", len(f.sim.Server.Calls()), len(fs.writes()))
		}
	})
}

// Several deliveries find one stale attempt that RF shows no lead for: exactly one takes it over
// and posts; the others wait (ErrInProgress) or find its lead.
func TestSignupStaleAttemptIsTakenOverByOne(t *testing.T) {
	stores(t, signupSettings(), func(t *testing.T, f fixture) {
		ctx := context.Background()
		target := ledger.LeadCreationTarget(1, ledger.HashEmail(fayEmail))
		f.clock.Advance(-10 * time.Minute) // the crashed attempt began ten minutes ago
		if _, err := f.ledger.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentCreateLead, Target: target, Ref: "crashed"}); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(10 * time.Minute)
		var wg sync.WaitGroup
		results := make(chan error, 6)
		for i := range 6 {
			su := fayCheckout()
			su.ID = "cs_fay_" + strconv.Itoa(i)
			wg.Go(func() {
				_, err := f.svc.Signup(ctx, su)
				results <- err
			})
		}
		wg.Wait()
		close(results)
		for err := range results {
			if err != nil && !errors.Is(err, ErrInProgress) {
				t.Errorf("signup: %v", err)
			}
		}
		if n := creates(f); n != 1 {
			t.Fatalf("%d POST /users, want 1", n)
		}
		if in, err := f.ledger.IntentOf(ctx, ledger.IntentCreateLead, target); err != nil || in.Status != ledger.IntentDone || in.Attempts != 2 {
			t.Fatalf("intent %+v %v", in, err)
		}
	})
}

// RF refusals a retry cannot fix are acknowledged (the intent fails, so a later signup may try
// again); those it can fix are errors.
func TestSignupRFRefusals(t *testing.T) {
	target := ledger.LeadCreationTarget(1, ledger.HashEmail(fayEmail))
	t.Run("422 on another field", func(t *testing.T) {
		stores(t, signupSettings(), func(t *testing.T, f fixture) {
			if _, err := f.sim.Server.AddFault(rfsim.Fault{Match: "POST /api/v2/users", Status: 422, Count: 1,
				Body: `{"code":422,"message":"Validation errors in your request","errors":{"first_name":[{"field":"first_name","message":"The first name may not be greater than 255 characters."}]}}`}); err != nil {
				t.Fatal(err)
			}
			mustSignup(t, f, fayCheckout(), Ignored, "Referral Factory refused the new lead: Validation errors in your request (first_name)")
			if in, err := f.ledger.IntentOf(context.Background(), ledger.IntentCreateLead, target); err != nil || in.Status != ledger.IntentFailed {
				t.Fatalf("intent %+v %v", in, err)
			}
			mustSignup(t, f, fayCheckout(), Created, "lead ")
		})
	})
	t.Run("429 until the client gives up", func(t *testing.T) {
		stores(t, signupSettings(), func(t *testing.T, f fixture) {
			if _, err := f.sim.Server.AddFault(rfsim.Fault{Match: "POST /api/v2/users", Status: 429, Count: 2}); err != nil {
				t.Fatal(err)
			}
			if res, err := f.svc.Signup(context.Background(), fayCheckout()); err == nil {
				t.Fatalf("%+v, want an error", res)
			}
			if in, err := f.ledger.IntentOf(context.Background(), ledger.IntentCreateLead, target); err != nil || in.Status != ledger.IntentFailed {
				t.Fatalf("intent %+v %v (a 429 is answered before RF handles the call)", in, err)
			}
			mustSignup(t, f, fayCheckout(), Created, "lead ")
			if n := creates(f); n != 3 {
				t.Fatalf("%d POST /users", n)
			}
		})
	})
	t.Run("no signup campaign", func(t *testing.T) {
		set := signupSettings()
		set.SignupCampaignID = 0
		stores(t, set, func(t *testing.T, f fixture) {
			mustSignup(t, f, fayCheckout(), Ignored, "no signup campaign configured")
			if n := len(f.sim.Server.Calls()); n != 0 {
				t.Fatalf("%d RF calls", n)
			}
		})
	})
}

// A code of another campaign is unknown in the signup campaign: RF would refuse it as referrer.
func TestSignupCodeOfAnotherCampaign(t *testing.T) {
	stores(t, signupSettings(), func(t *testing.T, f fixture) {
		d := f.sim.Server.State()
		c2 := d.Campaigns[0]
		c2.ID, c2.Code, c2.Rewards = 2, "OTHER2026", nil
		d.Campaigns = append(d.Campaigns, c2)
		d.Users = append(d.Users, rfsim.SeedUser{ID: 40, CampaignID: 2, Code: "zOeOthEr", FirstName: "Zoe", Email: "zoe@example.com"})
		f.sim.MustSeed(t, d)
		su := fayCheckout()
		su.ClientReferenceID = "zOeOthEr"
		mustSignup(t, f, su, Unmatched, ReasonUnknownReferralCode+": the code belongs to a user of campaign 2")
		if n := creates(f); n != 0 {
			t.Fatalf("%d POST /users", n)
		}
	})
}

// The signup campaign's leads are matched to payments even when RF_CAMPAIGN_IDS does not list it:
// by the email index, and by RF's search.
func TestSignupCampaignIsMatchedLikeTheConfiguredOnes(t *testing.T) {
	set := signupSettings()
	set.CampaignIDs = []int64{7} // the signup campaign, 1, is not among them
	t.Run("email index", func(t *testing.T) {
		stores(t, set, func(t *testing.T, f fixture) {
			erin := ledger.Lead{ID: erinID, Code: "eRiNlEad", ReferrerID: 2, CampaignID: 1, Source: ledger.SourceSignup}
			erin.SetEmail(erinEmail)
			if _, err := f.ledger.PutLead(context.Background(), erin); err != nil {
				t.Fatal(err)
			}
			inv := invoice("in_signup_campaign", 4900)
			inv.CustomerID = "cus_other"
			if res := mustPay(t, f, inv, Qualified); res.Rule != RuleEmailIndex {
				t.Fatalf("%+v", res)
			}
		})
	})
	t.Run("RF search", func(t *testing.T) {
		stores(t, set, func(t *testing.T, f fixture) {
			if res := mustPay(t, f, invoice("in_signup_campaign_rf", 4900), Qualified); res.Rule != RuleRFEmail {
				t.Fatalf("%+v", res)
			}
		})
	})
}
