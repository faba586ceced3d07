package referrals

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe/logtest"
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
			mustSignup(t, f, fayCheckout(), Ignored, ReasonRFRefused+": Referral Factory refused the new lead: Validation errors in your request (first_name)")
			if in, err := f.ledger.IntentOf(context.Background(), ledger.IntentCreateLead, target); err != nil || in.Status != ledger.IntentFailed {
				t.Fatalf("intent %+v %v", in, err)
			}
			mustSignup(t, f, fayCheckout(), Created, "lead ")
		})
	})
	// The signup campaign deleted (or RF_SIGNUP_CAMPAIGN_ID wrong): an error (503, Stripe
	// retries for three days) with an ERROR line naming the setting; nothing was created, so
	// the intent fails and the retry, once the campaign is fixed, posts.
	t.Run("422 on campaign_id", func(t *testing.T) {
		stores(t, signupSettings(), func(t *testing.T, f fixture) {
			if _, err := f.sim.Server.AddFault(rfsim.Fault{Match: "POST /api/v2/users", Status: 422, Count: 1,
				Body: `{"code":422,"message":"Validation errors in your request","errors":{"campaign_id":[{"field":"campaign_id","message":"The selected campaign id is invalid."}]}}`}); err != nil {
				t.Fatal(err)
			}
			var logs strings.Builder
			f.svc.log = slog.New(slog.NewTextHandler(&logs, nil))
			if res, err := f.svc.Signup(context.Background(), fayCheckout()); err == nil || !strings.Contains(err.Error(), "RF_SIGNUP_CAMPAIGN_ID") {
				t.Fatalf("%+v %v, want an error naming RF_SIGNUP_CAMPAIGN_ID", res, err)
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "RF_SIGNUP_CAMPAIGN_ID") {
				t.Fatalf("no ERROR line naming RF_SIGNUP_CAMPAIGN_ID:\n%s", logs.String())
			}
			if in, err := f.ledger.IntentOf(context.Background(), ledger.IntentCreateLead, target); err != nil || in.Status != ledger.IntentFailed {
				t.Fatalf("intent %+v %v", in, err)
			}
			mustSignup(t, f, fayCheckout(), Created, "lead ")
		})
	})
	// An email with an empty local part and no Stripe name leaves no first_name: the client
	// refuses to send it (ErrInvalidInput). It would be refused on every redelivery: ignored,
	// with its reason, not an error.
	t.Run("the client refuses the input", func(t *testing.T) {
		stores(t, signupSettings(), func(t *testing.T, f fixture) {
			su := fayCheckout()
			su.Email, su.Name = "@example.com", ""
			mustSignup(t, f, su, Ignored, ReasonInvalidSignup+": the signup cannot be sent to Referral Factory: ")
			if n := creates(f); n != 0 {
				t.Fatalf("%d POST /users", n)
			}
			if in, err := f.ledger.IntentOf(context.Background(), ledger.IntentCreateLead, ledger.LeadCreationTarget(1, ledger.HashEmail("@example.com"))); err != nil || in.Status != ledger.IntentFailed {
				t.Fatalf("intent %+v %v", in, err)
			}
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

// An invoice.paid maps Fay's customer to an older lead (Erin, matched by email) while Fay's
// signup is between its ledger lookup and PutLead: the new lead is stored without the customer
// (the first mapping wins), and the Stripe customer must not get the new lead's rf_user_id —
// metadata comes first when payments are matched, so it would credit every later payment to
// the new lead against the ledger's mapping. Waiting invoices are then looked up by email only.
func TestSignupMappingRaceDoesNotWriteTheNewLeadToTheCustomer(t *testing.T) {
	stores(t, signupSettings(), func(t *testing.T, f fixture) {
		ctx := context.Background()
		erin := ledger.Lead{ID: erinID, Code: "eRiNlEad", ReferrerID: 2, CampaignID: 1, Source: ledger.SourceRFWebhook}
		erin.SetEmail(erinEmail)
		if _, err := f.ledger.PutLead(ctx, erin); err != nil {
			t.Fatal(err)
		}
		fs, url := newFakeStripe(t, map[string]map[string]string{fayCus: {}})
		spy := &unmatchedSpy{Store: f.ledger}
		svc := New(raceLedger{Store: spy, cus: fayCus, lead: erinID}, f.svc.rf, signupSettings(), f.clock.Now, logtest.Logger(t, "referrals"))
		svc.WithCustomers(stripecustomers.New("sk_test_refbridge", url))
		res, err := svc.Signup(ctx, fayCheckout())
		if err != nil || res.Outcome != Created || !strings.Contains(res.Reason, "the Stripe customer stays mapped to another lead") {
			t.Fatalf("%+v %v", res, err)
		}
		if l, err := f.ledger.LeadByCustomer(ctx, fayCus); err != nil || l.ID != erinID {
			t.Fatalf("mapping %+v %v", l, err)
		}
		if l, err := f.ledger.LeadByID(ctx, res.LeadID); err != nil || l.StripeCustomerID != "" {
			t.Fatalf("new lead %+v %v", l, err)
		}
		if w := fs.writes(); len(w) != 0 {
			t.Fatalf("customer mapped to lead %d written to: %+v (new lead %d)", erinID, w, res.LeadID)
		}
		if len(spy.customers) != 1 || spy.customers[0] != "" {
			t.Fatalf("waiting invoices looked up by customer %q, want by email only", spy.customers)
		}
	})
}

// raceLedger maps the signup's customer to another lead just before the create_lead intent
// begins: what a concurrent invoice.paid (matched by email to an older lead) does.
type raceLedger struct {
	ledger.Store
	cus  string
	lead int64
}

func (r raceLedger) BeginIntent(ctx context.Context, in ledger.Intent) (ledger.Intent, error) {
	if in.Kind == ledger.IntentCreateLead {
		if _, err := r.Store.MapCustomer(ctx, r.cus, r.lead, "email_index"); err != nil {
			return ledger.Intent{}, err
		}
	}
	return r.Store.BeginIntent(ctx, in)
}

// unmatchedSpy records the customers UnmatchedFor is asked about.
type unmatchedSpy struct {
	ledger.Store
	customers []string
}

func (u *unmatchedSpy) UnmatchedFor(ctx context.Context, customerID, emailHash string) ([]ledger.Unmatched, error) {
	u.customers = append(u.customers, customerID)
	return u.Store.UnmatchedFor(ctx, customerID, emailHash)
}

// The create_lead intent is done (an earlier delivery created or adopted the lead) but the
// ledger's email lookup does not show the lead: RF is searched; a lead found there is adopted
// (nothing posted), and one RF no longer has is not created again (lead_gone).
func TestSignupIntentDoneButTheLedgerHasNoLead(t *testing.T) {
	begin := func(t *testing.T, f fixture) {
		ctx := context.Background()
		target := ledger.LeadCreationTarget(1, ledger.HashEmail(fayEmail))
		if _, err := f.ledger.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentCreateLead, Target: target, Ref: "earlier"}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.ledger.FinishIntent(ctx, ledger.IntentCreateLead, target, ledger.IntentDone, ""); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("RF has it", func(t *testing.T) {
		stores(t, signupSettings(), func(t *testing.T, f fixture) {
			begin(t, f)
			made := f.sim.Lead(t, 1, "aLiCeRef", fayEmail)
			res := mustSignup(t, f, fayCheckout(), Adopted, "the email is already lead ")
			if res.LeadID != int64(made.ID) || creates(f) != 0 {
				t.Fatalf("%+v; %d POST /users", res, creates(f))
			}
			if l, err := f.ledger.LeadByCustomer(context.Background(), fayCus); err != nil || l.ID != int64(made.ID) || l.ReferrerID != 1 {
				t.Fatalf("ledger %+v %v", l, err)
			}
		})
	})
	t.Run("RF no longer has it", func(t *testing.T) {
		stores(t, signupSettings(), func(t *testing.T, f fixture) {
			begin(t, f)
			mustSignup(t, f, fayCheckout(), Ignored, ReasonLeadGone+": ")
			if n := creates(f); n != 0 {
				t.Fatalf("%d POST /users", n)
			}
			d, err := f.ledger.Decisions(context.Background(), "checkout#cs_fay")
			if err != nil || len(d) != 1 || !strings.HasPrefix(d[0].Reason, ReasonLeadGone) {
				t.Fatalf("decisions %+v %v", d, err)
			}
		})
	})
}

// A Stripe name longer than RF's 255 characters is cut to 255 (runes, not bytes), not refused.
func TestSignupLongNameIsCut(t *testing.T) {
	stores(t, signupSettings(), func(t *testing.T, f fixture) {
		su := fayCheckout()
		su.Name = strings.Repeat("Ø", 300)
		mustSignup(t, f, su, Created, "lead ")
		for _, c := range f.sim.Server.Calls() {
			if c.Method == "POST" && c.Path == "/api/v2/users" {
				var body struct {
					FirstName string `json:"first_name"`
				}
				if err := json.Unmarshal([]byte(c.Body), &body); err != nil || body.FirstName != strings.Repeat("Ø", 255) {
					t.Fatalf("first_name of %d runes (%v)", utf8.RuneCountInString(body.FirstName), err)
				}
			}
		}
	})
}

// The self-referral check compares mailboxes, not strings.
func TestSameMailbox(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		same bool
	}{
		{"alice@example.com", " ALICE@Example.com ", true},
		{"alice@example.com", "alice+promo@example.com", true},
		{"alice+old@example.com", "alice+new@example.com", true},
		{"alice@example.com", "a.lice@example.com", false}, // dots count outside Gmail
		{"alice@gmail.com", "A.Li.Ce+x@gmail.com", true},
		{"alice@gmail.com", "a.lice@googlemail.com", true},
		{"alice@example.com", "alice@example.org", false},
		{"alice@example.com", "\u0430lice@example.com", false}, // Cyrillic а: a lookalike is another mailbox
		{"+one@example.com", "+two@example.com", false},        // nothing before the tag: kept whole
		{"alice@example.com", "alice", false},
	} {
		if got := sameMailbox(tt.a, tt.b); got != tt.same {
			t.Errorf("sameMailbox(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
}

func TestPlausibleCode(t *testing.T) {
	for code, want := range map[string]bool{
		"eRiNlEad": true, "a": true, "A-b_9": true, strings.Repeat("x", 64): true,
		"": false, strings.Repeat("x", 65): false, "erin@example.com": false, "has space": false,
		"jörg": false, "a\n": false, "a.b": false, "%41": false,
	} {
		if got := plausibleCode(code); got != want {
			t.Errorf("plausibleCode(%q) = %v, want %v", code, got, want)
		}
	}
}
