package stripewebhook

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/lease"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/sweep"
)

// The signup fixtures: Fay (checkout with Alice's code in client_reference_id, and her
// customer.created with it in metadata), Hana (checkout, Bob's code in metadata, basil), Gus
// (customer.created, Carol's code, basil), Ivan (customer.updated gaining Carol's code).
const (
	fayCheckout = "checkout.session.completed.2024-06-20.json"
	fayCustomer = "customer.created.2024-06-20.json"
	fayEmail    = "fay@example.com"
	fayCus      = "cus_RbFayDemo00001"
	alice       = 1 // aLiCeRef
	bob         = 2 // bObbYRef
	carol       = 3 // cArOlRef
)

// createBody is the body of POST /users as the simulator logged it.
type createBody struct {
	CampaignID int64  `json:"campaign_id"`
	FirstName  string `json:"first_name"`
	Email      string `json:"email"`
	Notify     *bool  `json:"notify"`
	Referrer   *struct {
		Field string          `json:"field"`
		Value json.RawMessage `json:"value"`
	} `json:"referrer"`
}

func creates(t *testing.T, sim *rfsimtest.Sim) []createBody {
	t.Helper()
	var out []createBody
	for _, c := range sim.Server.Calls() {
		if c.Method == "POST" && c.Path == "/api/v2/users" {
			var b createBody
			if err := json.Unmarshal([]byte(c.Body), &b); err != nil {
				t.Fatalf("POST /users body %q: %v", c.Body, err)
			}
			out = append(out, b)
		}
	}
	return out
}

// simUsers are the simulator's users with the email.
func simUsers(sim *rfsimtest.Sim, email string) []rfsim.User {
	var out []rfsim.User
	for _, u := range sim.Server.Users() {
		if strings.EqualFold(u.Email, email) {
			out = append(out, u)
		}
	}
	return out
}

// oneLead checks that the simulator has exactly one user with the email, a lead of referrer,
// and that the ledger has it (mapped to customer, when given).
func oneLead(t *testing.T, e env, email string, referrer int, customer string) rfsim.User {
	t.Helper()
	users := simUsers(e.sim, email)
	if len(users) != 1 {
		t.Fatalf("%d RF users with the email, want 1", len(users))
	}
	u := users[0]
	if u.Type != "person_invited" || u.ReferrerID == nil || *u.ReferrerID != referrer || u.CampaignID != 1 {
		t.Fatalf("RF user %+v, want a lead of %d in campaign 1", u, referrer)
	}
	ctx := context.Background()
	leads, err := e.ledger.LeadsByEmail(ctx, ledger.HashEmail(email))
	if err != nil || len(leads) != 1 || leads[0].ID != int64(u.ID) || leads[0].ReferrerID != int64(referrer) || leads[0].CampaignID != 1 {
		t.Fatalf("ledger leads of the email %+v %v", leads, err)
	}
	if customer != "" {
		l, err := e.ledger.LeadByCustomer(ctx, customer)
		if err != nil || l.ID != int64(u.ID) {
			t.Fatalf("customer %s maps to %+v %v, want lead %d", customer, l, err, u.ID)
		}
	}
	return u
}

// signupEvent is a signup fixture as another event (id), its object changed by edit.
func signupEvent(t *testing.T, file, id string, edit func(obj map[string]any)) []byte {
	return withEventID(t, fixture(t, file), id, func(m map[string]any) {
		if edit != nil {
			edit(m["data"].(map[string]any)["object"].(map[string]any))
		}
	})
}

func expect(t *testing.T, e env, payload []byte, wantStatus, wantReason string) answer {
	t.Helper()
	status, a := call(t, e, signed(payload))
	if status != 200 || a.Status != wantStatus || !strings.HasPrefix(a.Reason, wantReason) {
		t.Fatalf("%d %+v, want 200 %s %q…", status, a, wantStatus, wantReason)
	}
	return a
}

func decisions(t *testing.T, e env, subject string) []ledger.Decision {
	t.Helper()
	d, err := e.ledger.Decisions(context.Background(), subject)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSignupCreatesALeadOfTheCodesOwner(t *testing.T) {
	for _, tt := range []struct {
		file, subject, email, customer, name string
		referrer                             int
		code                                 string
	}{
		{fayCheckout, "checkout#cs_test_RbFayCheckout01", fayEmail, fayCus, "Fay Lin", alice, "aLiCeRef"},
		{"checkout.session.completed.metadata.2025-03-31.basil.json", "checkout#cs_test_RbHanaCheckout01", "hana@example.com", "cus_RbHanaDemo00001", "Hana Ito", bob, "bObbYRef"},
		{fayCustomer, "customer#" + fayCus, fayEmail, fayCus, "Fay Lin", alice, "aLiCeRef"},
		{"customer.created.2025-03-31.basil.json", "customer#cus_RbGusDemo00001", "gus@example.com", "cus_RbGusDemo00001", "Gus Park", carol, "cArOlRef"},
		{"customer.updated.2024-06-20.json", "customer#cus_RbIvanDemo00001", "ivan@example.com", "cus_RbIvanDemo00001", "Ivan Kos", carol, "cArOlRef"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			both(t, false, func(t *testing.T, e env) {
				payload := fixture(t, tt.file)
				expect(t, e, payload, "processed", "created: lead ")
				posts := creates(t, e.sim)
				if len(posts) != 1 {
					t.Fatalf("%d POST /users, want 1", len(posts))
				}
				p := posts[0]
				// The referrer is named by the id of the code's owner (the user checked for the
				// campaign and for self-referral), not by the code.
				if p.CampaignID != 1 || p.Email != tt.email || p.FirstName != tt.name || p.Notify == nil || *p.Notify ||
					p.Referrer == nil || p.Referrer.Field != "id" || string(p.Referrer.Value) != strconv.Itoa(tt.referrer) {
					t.Fatalf("POST /users %+v (referrer %+v)", p, p.Referrer)
				}
				u := oneLead(t, e, tt.email, tt.referrer, tt.customer)
				l, _ := e.ledger.LeadByID(context.Background(), int64(u.ID))
				if l.Source != ledger.SourceSignup || l.Code != u.Code || l.StripeCustomerID != tt.customer {
					t.Fatalf("ledger lead %+v", l)
				}
				d := decisions(t, e, tt.subject)
				if len(d) != 1 || d[0].Outcome != "created" || d[0].Inputs["code"] != tt.code || d[0].Inputs["referrer"] == "" ||
					strings.Contains(d[0].Inputs["email"], tt.email) {
					t.Fatalf("decision log %+v", d)
				}
				var ev struct{ Type string }
				_ = json.Unmarshal(payload, &ev)
				if !metricLine(e.logs.String(), `"Events":1`, `"EventType":"`+ev.Type+`"`, `"Outcome":"created"`) {
					t.Fatal("no Events metric with outcome created")
				}
				// Stripe redelivers the event: replayed, no RF call.
				before := len(e.sim.Server.Calls())
				expect(t, e, payload, "duplicate", "event already processed: created")
				if n := len(e.sim.Server.Calls()) - before; n != 0 {
					t.Fatalf("the redelivery made %d RF calls", n)
				}
				if logs := strings.ToLower(e.logs.String()); strings.Contains(logs, tt.email) {
					t.Fatalf("an email in the logs:\n%s", logs)
				}
			})
		})
	}
}

// Metadata wins over client_reference_id, the key is configurable, and RF_SIGNUP_NOTIFY reaches RF.
func TestSignupSettings(t *testing.T) {
	bothWith(t, false, func(s *referrals.Settings) { s.ReferralMetadataKey, s.SignupNotify = "ref", true }, func(t *testing.T, e env) {
		payload := signupEvent(t, fayCheckout, "evt_fay_ref", func(obj map[string]any) {
			obj["metadata"] = map[string]any{"ref": " bObbYRef ", "rf_referrer_code": "cArOlRef"}
			obj["customer_details"].(map[string]any)["name"] = nil // first_name falls back to the email's local part
		})
		expect(t, e, payload, "processed", "created")
		p := creates(t, e.sim)[0]
		if string(p.Referrer.Value) != strconv.Itoa(bob) || p.Notify == nil || !*p.Notify || p.FirstName != "fay" {
			t.Fatalf("POST /users %+v %+v", p, p.Referrer)
		}
		oneLead(t, e, fayEmail, bob, fayCus)
		if c := e.sim.Server.Counters(); c.Notifications != 1 {
			t.Fatalf("notifications %d, want 1", c.Notifications)
		}
	})
}

func TestSignupSameEventTenTimesAtOnce(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		payload := fixture(t, fayCheckout)
		var wg sync.WaitGroup
		var ok, busy atomic.Int32
		for range 10 {
			wg.Go(func() {
				resp, err := e.invoke(context.Background(), signed(payload))
				switch {
				case err != nil:
					t.Error(err)
				case resp.StatusCode == 200:
					ok.Add(1)
				case resp.StatusCode == 503: // the same event in progress: Stripe retries it
					busy.Add(1)
				default:
					t.Errorf("status %d %s", resp.StatusCode, resp.Body)
				}
			})
		}
		wg.Wait()
		if ok.Load() == 0 || len(creates(t, e.sim)) != 1 {
			t.Fatalf("%d ok, %d busy, %d POST /users", ok.Load(), busy.Load(), len(creates(t, e.sim)))
		}
		oneLead(t, e, fayEmail, alice, fayCus)
		// Stripe's retries of the busy ones are duplicates.
		expect(t, e, payload, "duplicate", "event already processed: created")
	})
}

// deliverUntilOK delivers payload until it is answered 200 (Stripe retries 503s).
func deliverUntilOK(t *testing.T, e env, payload []byte) answer {
	for range 400 {
		resp, err := e.invoke(context.Background(), signed(payload))
		if err != nil {
			t.Error(err)
			return answer{}
		}
		var a answer
		_ = json.Unmarshal([]byte(resp.Body), &a)
		switch resp.StatusCode {
		case 200:
			return a
		case 503:
			time.Sleep(5 * time.Millisecond)
		default:
			t.Errorf("status %d %+v", resp.StatusCode, a)
			return a
		}
	}
	t.Error("still 503 after 400 deliveries")
	return answer{}
}

// customer.created and checkout.session.completed for one person (different event ids) make
// one lead, in either order and at the same time.
func TestSignupCustomerAndCheckoutOfOnePerson(t *testing.T) {
	t.Run("one after the other", func(t *testing.T) {
		both(t, false, func(t *testing.T, e env) {
			expect(t, e, fixture(t, fayCustomer), "processed", "created")
			before := len(e.sim.Server.Calls())
			// The checkout names the same customer (and spells the email differently).
			expect(t, e, fixture(t, fayCheckout), "processed", "already_known: lead ")
			if n := len(e.sim.Server.Calls()) - before; n != 0 {
				t.Fatalf("the checkout made %d RF calls", n)
			}
			oneLead(t, e, fayEmail, alice, fayCus)
		})
	})
	t.Run("at the same time", func(t *testing.T) {
		both(t, false, func(t *testing.T, e env) {
			var wg sync.WaitGroup
			answers := make(chan answer, 10)
			for i := range 10 {
				file := fayCustomer
				if i%2 == 1 {
					file = fayCheckout
				}
				payload := fixture(t, file)
				wg.Go(func() { answers <- deliverUntilOK(t, e, payload) })
			}
			wg.Wait()
			close(answers)
			for a := range answers {
				if a.Status != "processed" && a.Status != "duplicate" {
					t.Errorf("answer %+v", a)
				}
			}
			if n := len(creates(t, e.sim)); n != 1 {
				t.Fatalf("%d POST /users, want 1", n)
			}
			oneLead(t, e, fayEmail, alice, fayCus)
		})
	})
}

// Erin, already Bob's lead in RF, checks out with Alice's code: RF says the email exists, the
// search finds the lead, and it is adopted as it is (still Bob's).
func TestSignupAdoptsAnExistingLead(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		payload := signupEvent(t, fayCheckout, "evt_erin_checkout", func(obj map[string]any) {
			obj["id"], obj["customer"] = "cs_erin", "cus_RbErinDemo0001"
			obj["customer_details"].(map[string]any)["email"] = "Erin@Example.com "
		})
		expect(t, e, payload, "processed", "adopted: the email is already lead 5")
		if n := len(creates(t, e.sim)); n != 1 {
			t.Fatalf("%d POST /users, want 1 (answered 422)", n)
		}
		oneLead(t, e, "erin@example.com", bob, "cus_RbErinDemo0001")
		// Another event about her: known now, no RF call.
		before := len(e.sim.Server.Calls())
		expect(t, e, withEventID(t, payload, "evt_erin_again", nil), "processed", "already_known")
		if n := len(e.sim.Server.Calls()) - before; n != 0 {
			t.Fatalf("%d RF calls", n)
		}
	})
}

func TestSignupNeverConvertsAReferrer(t *testing.T) {
	t.Run("found in RF after its 422", func(t *testing.T) {
		both(t, false, func(t *testing.T, e env) {
			payload := signupEvent(t, fayCheckout, "evt_carol", func(obj map[string]any) {
				obj["customer_details"].(map[string]any)["email"] = "carol@example.com"
			})
			expect(t, e, payload, "ignored", "refused: existing_referrer: the email belongs to referrer 3")
			if u, _ := e.sim.Server.User(carol); u.Type != "person_referring" || u.ReferrerID != nil {
				t.Fatalf("Carol %+v", u)
			}
			// Recorded as a referrer (ReferrerID 0), not as a lead, and the customer not mapped
			// to it: the next event about the email is refused from the ledger.
			ctx := context.Background()
			if leads, _ := e.ledger.LeadsByEmail(ctx, ledger.HashEmail("carol@example.com")); len(leads) != 1 || leads[0].ID != carol || leads[0].ReferrerID != 0 {
				t.Fatalf("ledger %+v", leads)
			}
			if _, err := e.ledger.LeadByCustomer(ctx, fayCus); !errors.Is(err, ledger.ErrNotFound) {
				t.Fatalf("customer mapped: %v", err)
			}
			d := decisions(t, e, "checkout#cs_test_RbFayCheckout01")
			if len(d) != 1 || d[0].Outcome != "refused" || !strings.HasPrefix(d[0].Reason, "existing_referrer") {
				t.Fatalf("decisions %+v", d)
			}
			before := len(e.sim.Server.Calls())
			expect(t, e, withEventID(t, payload, "evt_carol_again", nil), "ignored", "refused: existing_referrer: the email belongs to referrer 3")
			if n := len(e.sim.Server.Calls()) - before; n != 0 {
				t.Fatalf("the second event made %d RF calls", n)
			}
		})
	})
	t.Run("known to the ledger", func(t *testing.T) {
		both(t, false, func(t *testing.T, e env) {
			bob := ledger.Lead{ID: 2, Code: "bObbYRef", CampaignID: 1, Source: ledger.SourceRFWebhook}
			bob.SetEmail("bob@example.com")
			if _, err := e.ledger.PutLead(context.Background(), bob); err != nil {
				t.Fatal(err)
			}
			payload := signupEvent(t, fayCheckout, "evt_bob", func(obj map[string]any) {
				obj["customer_details"].(map[string]any)["email"] = "BOB@example.com"
			})
			expect(t, e, payload, "ignored", "refused: existing_referrer")
			if n := len(e.sim.Server.Calls()); n != 0 {
				t.Fatalf("%d RF calls", n)
			}
		})
	})
}

func TestSignupUnknownReferralCode(t *testing.T) {
	for _, tt := range []struct {
		name, code string
		fault      *rfsim.Fault
		posts      int
	}{
		{"RF has no such user", "nOsUcHcD", nil, 0},
		{"a user id is not a code", "5", nil, 0},
		{"not a code at all (metadata holds an email)", "alice@example.com", nil, 0},
		{"POST /users refuses the referrer", "aLiCeRef", &rfsim.Fault{Match: "POST /api/v2/users", Status: 422, Count: 1,
			Body: `{"code":422,"message":"Validation errors in your request","errors":{"referrer":[{"field":"referrer","message":"The selected referrer is invalid."}]}}`}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			both(t, false, func(t *testing.T, e env) {
				if tt.fault != nil {
					if _, err := e.sim.Server.AddFault(*tt.fault); err != nil {
						t.Fatal(err)
					}
				}
				payload := signupEvent(t, fayCheckout, "evt_unknown_code", func(obj map[string]any) {
					obj["client_reference_id"] = nil
					obj["metadata"] = map[string]any{"rf_referrer_code": tt.code}
				})
				expect(t, e, payload, "ignored", "unmatched: unknown_referral_code")
				if n := len(creates(t, e.sim)); n != tt.posts {
					t.Fatalf("%d POST /users, want %d", n, tt.posts)
				}
				if len(simUsers(e.sim, fayEmail)) != 0 {
					t.Fatal("a user was created")
				}
				d := decisions(t, e, "checkout#cs_test_RbFayCheckout01")
				if len(d) != 1 || d[0].Outcome != "unmatched" || !strings.HasPrefix(d[0].Reason, "unknown_referral_code: ") ||
					strings.Contains(d[0].Inputs["code"], "@") {
					t.Fatalf("decisions %+v", d)
				}
				if !metricLine(e.logs.String(), `"EventType":"checkout.session.completed"`, `"Outcome":"unmatched"`) ||
					!metricLine(e.logs.String(), `"SignupNotAttributed":1`, `"Reason":"unknown_referral_code"`) {
					t.Fatal("no metrics")
				}
			})
		})
	}
}

func TestSignupSelfReferral(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		payload := signupEvent(t, fayCheckout, "evt_alice_self", func(obj map[string]any) {
			obj["customer_details"].(map[string]any)["email"] = " ALICE@Example.com"
		})
		expect(t, e, payload, "ignored", "refused: self_referral: the code belongs to user 1")
		if n := len(creates(t, e.sim)); n != 0 {
			t.Fatalf("%d POST /users", n)
		}
		d := decisions(t, e, "checkout#cs_test_RbFayCheckout01")
		if len(d) != 1 || d[0].Outcome != "refused" || d[0].Inputs["referrer"] != "1" {
			t.Fatalf("decisions %+v", d)
		}
		if !metricLine(e.logs.String(), `"SignupNotAttributed":1`, `"Reason":"self_referral"`) ||
			!metricLine(e.logs.String(), `"Events":1`, `"Outcome":"refused"`) {
			t.Fatal("no metrics")
		}
	})
}

// Policy: a "+tag" alias of the code owner's own address is the same mailbox, so it is a
// self-referral, not a new lead credited to the owner; a Unicode lookalike (Cyrillic а) is
// another mailbox, and becomes her lead.
func TestSignupSelfReferralThroughAPlusAlias(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		payload := signupEvent(t, fayCheckout, "evt_alice_alias", func(obj map[string]any) {
			obj["customer_details"].(map[string]any)["email"] = "alice+promo@example.com"
		})
		_, a := call(t, e, signed(payload))
		if !strings.HasPrefix(a.Reason, "refused: self_referral") || len(creates(t, e.sim)) != 0 {
			t.Fatalf("%+v; %d POST /users: Alice became her own lead", a, len(creates(t, e.sim)))
		}
		lookalike := signupEvent(t, fayCheckout, "evt_alice_lookalike", func(obj map[string]any) {
			obj["id"] = "cs_alice_lookalike"
			obj["customer_details"].(map[string]any)["email"] = "\u0430lice@example.com"
		})
		expect(t, e, lookalike, "processed", "created: lead ")
		if n := len(creates(t, e.sim)); n != 1 {
			t.Fatalf("%d POST /users, want the lookalike's", n)
		}
	})
}

// RF answers POST /users with a 5xx and has created nothing: no 5xx proves that (a gateway's
// 502/504 while the backend goes on, a 503 from a proxy, a 500 after the insert), so the intent
// stays pending like after a timeout: the redelivery searches, finds nothing and, while the
// attempt is recent, answers 503 again; once it is stale one delivery takes it over and posts.
func TestSignupRF5xxLeavesTheAttemptPending(t *testing.T) {
	for _, status := range []int{500, 502, 503, 504} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			both(t, false, func(t *testing.T, e env) {
				if _, err := e.sim.Server.AddFault(rfsim.Fault{Match: "POST /api/v2/users", Status: status, Count: 1}); err != nil {
					t.Fatal(err)
				}
				payload := fixture(t, fayCheckout)
				if status, a := call(t, e, signed(payload)); status != 503 || a.Error == "" {
					t.Fatalf("with RF failing: %d %+v", status, a)
				}
				if len(simUsers(e.sim, fayEmail)) != 0 {
					t.Fatal("RF created the user although it failed")
				}
				in, err := e.ledger.IntentOf(context.Background(), ledger.IntentCreateLead, ledger.LeadCreationTarget(1, ledger.HashEmail(fayEmail)))
				if err != nil || in.Status != ledger.IntentPending {
					t.Fatalf("intent %+v %v, want pending", in, err)
				}
				if status, a := call(t, e, signed(payload)); status != 503 || !strings.Contains(a.Error, "another delivery is creating the same lead") {
					t.Fatalf("redelivery while the attempt is recent: %d %+v", status, a)
				}
				e.clock.Advance(10 * time.Minute)
				expect(t, e, payload, "processed", "created: lead ")
				if n := len(creates(t, e.sim)); n != 2 {
					t.Fatalf("%d POST /users, want the failed one and the one that created", n)
				}
				oneLead(t, e, fayEmail, alice, fayCus)
			})
		})
	}
}

// A 504 from a gateway that gave up while RF was still creating the user: the redelivery finds
// the pending intent, searches, finds the lead and confirms it, without posting again.
func TestSignupGateway504IsReconciledBySearch(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		if _, err := e.sim.Server.AddFault(rfsim.Fault{Match: "POST /api/v2/users", Status: 504, Count: 1}); err != nil {
			t.Fatal(err)
		}
		payload := fixture(t, fayCheckout)
		if status, _ := call(t, e, signed(payload)); status != 503 {
			t.Fatalf("status %d", status)
		}
		made := e.sim.Lead(t, 1, "aLiCeRef", fayEmail) // the backend finishes after the gateway's 504
		e.clock.Advance(10 * time.Minute)
		expect(t, e, payload, "processed", "created: lead ")
		if n := len(creates(t, e.sim)); n != 1 {
			t.Fatalf("%d POST /users, want 1: the pending attempt is reconciled by search", n)
		}
		if u := oneLead(t, e, fayEmail, alice, fayCus); u.ID != made.ID {
			t.Fatalf("lead %d, want %d", u.ID, made.ID)
		}
	})
}

// RF creates the lead but its answer is lost: the search made at once finds it, nothing is
// posted again.
func TestSignupLostAnswerIsFoundBySearch(t *testing.T) {
	for _, fault := range []rfsim.Fault{
		{Match: "POST /api/v2/users", Status: 503, When: rfsim.WhenAfter, Count: 1},
		{Match: "POST /api/v2/users", Reset: true, When: rfsim.WhenAfter, Count: 1},
	} {
		t.Run(fault.Match+map[bool]string{true: " reset", false: " 503"}[fault.Reset], func(t *testing.T) {
			both(t, false, func(t *testing.T, e env) {
				if _, err := e.sim.Server.AddFault(fault); err != nil {
					t.Fatal(err)
				}
				expect(t, e, fixture(t, fayCheckout), "processed", "created: lead ")
				if n := len(creates(t, e.sim)); n != 1 {
					t.Fatalf("%d POST /users, want 1", n)
				}
				oneLead(t, e, fayEmail, alice, fayCus)
				in, err := e.ledger.IntentOf(context.Background(), ledger.IntentCreateLead, ledger.LeadCreationTarget(1, ledger.HashEmail(fayEmail)))
				if err != nil || in.Status != ledger.IntentDone {
					t.Fatalf("intent %+v %v", in, err)
				}
			})
		})
	}
}

// A crash after RF created the lead and before the intent was confirmed: the redelivery finds
// the pending intent, searches RF, finds the lead and confirms it; it never posts again.
func TestSignupCrashBetweenCreateAndConfirm(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		ctx := context.Background()
		target := ledger.LeadCreationTarget(1, ledger.HashEmail(fayEmail))
		if _, err := e.ledger.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentCreateLead, Target: target, Ref: "checkout#cs_test_RbFayCheckout01"}); err != nil {
			t.Fatal(err)
		}
		made := e.sim.Lead(t, 1, "aLiCeRef", fayEmail) // what the crashed attempt's POST did
		expect(t, e, fixture(t, fayCheckout), "processed", "created: lead ")
		if n := len(creates(t, e.sim)); n != 0 {
			t.Fatalf("%d POST /users after the crash, want 0", n)
		}
		if u := oneLead(t, e, fayEmail, alice, fayCus); u.ID != made.ID {
			t.Fatalf("lead %d, want %d", u.ID, made.ID)
		}
		if in, err := e.ledger.IntentOf(ctx, ledger.IntentCreateLead, target); err != nil || in.Status != ledger.IntentDone {
			t.Fatalf("intent %+v %v", in, err)
		}
	})
}

// A crash (or a reset connection) before RF created anything leaves the intent pending: a recent
// attempt may still be running, so the redelivery answers 503; once it is stale, one delivery
// takes it over, finds nothing in RF and posts.
func TestSignupStaleAttemptIsTakenOver(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		if _, err := e.sim.Server.AddFault(rfsim.Fault{Match: "POST /api/v2/users", Reset: true, Count: 1}); err != nil {
			t.Fatal(err)
		}
		payload := fixture(t, fayCheckout)
		if status, a := call(t, e, signed(payload)); status != 503 {
			t.Fatalf("reset connection: %d %+v", status, a)
		}
		status, a := call(t, e, signed(payload))
		if status != 503 || !strings.Contains(a.Error, "another delivery is creating the same lead") {
			t.Fatalf("redelivery during the attempt: %d %+v", status, a)
		}
		if n := len(creates(t, e.sim)); n != 1 {
			t.Fatalf("%d POST /users while the attempt may run, want 1", n)
		}
		e.clock.Advance(10 * time.Minute)
		expect(t, e, payload, "processed", "created: lead ")
		if n := len(creates(t, e.sim)); n != 2 {
			t.Fatalf("%d POST /users, want 2", n)
		}
		oneLead(t, e, fayEmail, alice, fayCus)
	})
}

// A paid invoice that arrived before its checkout (unmatched) is processed when the lead is created.
func TestSignupProcessesTheInvoiceThatWaited(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		inv := invoiceEvent(t, "in_fay_first", func(inv map[string]any) {
			inv["customer"], inv["customer_email"], inv["subscription"], inv["charge"] = fayCus, fayEmail, "sub_fay", "ch_fay_1"
		})
		expect(t, e, inv, "ignored", "unmatched")
		expect(t, e, fixture(t, fayCheckout), "processed", "created: lead ")
		expect(t, e, withEventID(t, fixture(t, fayCheckout), "evt_fay_again", nil), "processed", "already_known")
		u := oneLead(t, e, fayEmail, alice, fayCus)
		if u.QualifiedAt == nil {
			t.Fatal("the waiting invoice did not qualify the new lead")
		}
		w, err := e.ledger.UnmatchedInvoice(context.Background(), "in_fay_first")
		if err != nil || w.Status != ledger.UnmatchedMatched {
			t.Fatalf("unmatched record %+v %v", w, err)
		}
	})
}

func TestSignupDryRun(t *testing.T) {
	bothWith(t, false, func(s *referrals.Settings) { s.DryRun = true }, func(t *testing.T, e env) {
		expect(t, e, fixture(t, fayCheckout), "processed", "created: dry run: would create the lead in campaign 1, credited to referrer 1")
		if n := len(creates(t, e.sim)); n != 0 {
			t.Fatalf("%d POST /users in a dry run", n)
		}
		ctx := context.Background()
		if _, err := e.ledger.LeadByCustomer(ctx, fayCus); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("dry run stored a lead: %v", err)
		}
		if _, err := e.ledger.IntentOf(ctx, ledger.IntentCreateLead, ledger.LeadCreationTarget(1, ledger.HashEmail(fayEmail))); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("dry run began an intent: %v", err)
		}
		if d := decisions(t, e, "checkout#cs_test_RbFayCheckout01"); len(d) != 1 || d[0].Outcome != "created" {
			t.Fatalf("decisions %+v", d)
		}
		// A referrer's email is refused in a dry run as in a real one (it changes nothing).
		carol := signupEvent(t, fayCheckout, "evt_carol_dry", func(obj map[string]any) {
			obj["customer_details"].(map[string]any)["email"] = "carol@example.com"
		})
		expect(t, e, carol, "ignored", "refused: existing_referrer")
	})
}

func TestSignupWithoutACodeOrAnEmailIsIgnored(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		noCode := signupEvent(t, fayCheckout, "evt_no_code", func(obj map[string]any) { obj["client_reference_id"] = nil })
		expect(t, e, noCode, "ignored", "ignored: no referral code (metadata rf_referrer_code or client_reference_id)")
		noEmail := signupEvent(t, fayCheckout, "evt_no_email", func(obj map[string]any) {
			obj["customer_details"].(map[string]any)["email"] = nil
		})
		expect(t, e, noEmail, "ignored", "ignored: no email on the checkout.session")
		plain := signupEvent(t, "customer.updated.2024-06-20.json", "evt_plain_update", func(obj map[string]any) { obj["metadata"] = map[string]any{} })
		expect(t, e, plain, "ignored", "ignored: no referral code")
		if n := len(e.sim.Server.Calls()); n != 0 {
			t.Fatalf("%d RF calls", n)
		}
		// A checkout event whose object is a customer is malformed.
		wrong := withEventID(t, fixture(t, fayCustomer), "evt_wrong_object", func(m map[string]any) { m["type"] = "checkout.session.completed" })
		if status, a := call(t, e, signed(wrong)); status != 400 {
			t.Fatalf("%d %+v", status, a)
		}
		// The object is decoded under the event's idempotency lock, which it releases: the
		// redelivery is refused the same way, not held as in progress or replayed.
		if status, a := call(t, e, signed(wrong)); status != 400 || a.Error != "data.object does not match the event type" {
			t.Fatalf("redelivery: %d %+v", status, a)
		}
	})
}

// The full loop: a checkout with Alice's code creates Fay's lead; Fay's invoice.paid (her
// Stripe email drifted since) qualifies that lead by its RF id; Alice's $25 becomes due; a sweep
// with no hold issues it, once.
func TestSignupFullLoopToTheIssuedReward(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		ctx := context.Background()
		sw := &sweep.Sweeper{Ledger: e.ledger, RF: e.client, Lease: lease.NewMemory(), Rules: sweep.Rules{Hold: 0},
			Log: logtest.Logger(t, "reward-sweep")}
		// refbridge's first sweep, before Fay: what was due already (Alice's $25 for Dave, who
		// qualified before refbridge) has nothing behind it and goes out at once without a hold.
		if sum, err := sw.Run(ctx); err != nil || sum.Issued != 2 {
			t.Fatalf("first sweep: %+v %v", sum, err)
		}
		expect(t, e, fixture(t, fayCheckout), "processed", "created: lead ")
		fay := oneLead(t, e, fayEmail, alice, fayCus)
		inv := invoiceEvent(t, "in_fay_first", func(inv map[string]any) {
			inv["customer"], inv["customer_email"], inv["subscription"], inv["charge"] = fayCus, "fay.lin@work.example", "sub_fay", "ch_fay_1"
		})
		expect(t, e, inv, "processed", "qualified")
		var quals []string
		for _, c := range e.sim.Server.Calls() {
			if c.Method == "PUT" && c.Path == "/api/v2/users/qualification" {
				quals = append(quals, c.Body)
			}
		}
		var q struct {
			ID        int    `json:"id"`
			Email     string `json:"email"`
			Qualified bool   `json:"qualified"`
		}
		if len(quals) != 1 || json.Unmarshal([]byte(quals[0]), &q) != nil || q.ID != fay.ID || q.Email != "" || !q.Qualified {
			t.Fatalf("qualification calls %q, want one by id %d", quals, fay.ID)
		}
		var due int64
		for _, d := range e.sim.Server.DueRewards("amount") {
			if d.RecipientID == alice && d.ID != 1 { // reward 1 is Alice's for Dave, from before
				due = int64(d.ID)
			}
		}
		if due == 0 {
			t.Fatal("Alice's reward for Fay is not due")
		}
		for run := range 2 {
			// Alice's $25 and Fay's welcome coupon stand on Fay's qualification: issued on the
			// first run, never again.
			if sum, err := sw.Run(ctx); err != nil || sum.Issued != 2-2*run {
				t.Fatalf("sweep %d: %+v %v", run, sum, err)
			}
		}
		issues := 0
		for _, c := range e.sim.Server.Calls() {
			if c.Method == "POST" && c.Path == "/api/v2/rewards/issue/"+strconv.FormatInt(due, 10) {
				issues++
			}
		}
		rec, err := e.ledger.DueRewardRecord(ctx, due)
		if issues != 1 || err != nil || rec.State != ledger.RewardIssued || rec.Matched.LeadID != int64(fay.ID) {
			t.Fatalf("%d issue calls; ledger %+v %v", issues, rec, err)
		}
		var status string
		for _, r := range e.sim.Server.IssuedRewards("amount") {
			if int64(r.ID) == due {
				status = r.Status
			}
		}
		if status != rf.StatusIssued {
			t.Fatalf("RF status %q", status)
		}
	})
}

// customerUpdate is Ivan's customer.updated with data.previous_attributes replaced (nil: none).
func customerUpdate(t *testing.T, id string, previous map[string]any) []byte {
	return withEventID(t, fixture(t, "customer.updated.2024-06-20.json"), id, func(m map[string]any) {
		data := m["data"].(map[string]any)
		if previous == nil {
			delete(data, "previous_attributes")
		} else {
			data["previous_attributes"] = previous
		}
	})
}

// A customer.updated is decided again only when its previous_attributes name the email or the
// code's metadata key: refbridge's own rf_user_id/rf_code write-back, a card or an address costs
// no RF call and no ledger read. An update that does not say what changed is decided.
func TestSignupCustomerUpdatedActsOnlyOnTheEmailOrTheCode(t *testing.T) {
	t.Run("other attributes", func(t *testing.T) {
		both(t, false, func(t *testing.T, e env) {
			for i, prev := range []map[string]any{
				{"metadata": map[string]any{"rf_user_id": nil, "rf_code": nil}},
				{"address": nil, "invoice_settings": map[string]any{"default_payment_method": nil}},
				{"name": "Ivan"},
			} {
				expect(t, e, customerUpdate(t, "evt_ivan_other_"+strconv.Itoa(i), prev), "ignored",
					"ignored: the update changed neither the email nor metadata rf_referrer_code")
			}
			if n := len(e.sim.Server.Calls()); n != 0 {
				t.Fatalf("%d RF calls", n)
			}
			if d := decisions(t, e, "customer#cus_RbIvanDemo00001"); len(d) != 0 {
				t.Fatalf("decisions %+v", d)
			}
		})
	})
	for _, tt := range []struct {
		name string
		prev map[string]any
	}{
		{"the code added", map[string]any{"metadata": map[string]any{"rf_referrer_code": nil}}},
		{"the code changed", map[string]any{"metadata": map[string]any{"rf_referrer_code": "bObbYRef"}}},
		{"the email changed", map[string]any{"email": "ivan.kos@example.com"}},
		{"metadata that names no key", map[string]any{"metadata": nil}},
		{"no previous_attributes", nil},
		{"an empty previous_attributes", map[string]any{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			both(t, false, func(t *testing.T, e env) {
				expect(t, e, customerUpdate(t, "evt_ivan_code", tt.prev), "processed", "created: lead ")
				oneLead(t, e, "ivan@example.com", carol, "cus_RbIvanDemo00001")
			})
		})
	}
}

// A referrer whose own Stripe customer carries a code (Carol, with Alice's): the first
// customer.updated that adds the code asks RF (GET, the POST answered 422, a search) and records
// Carol as a referrer; the next ones are refused from the ledger, without an RF call, however
// often Stripe sends them.
func TestSignupReferrerCustomerUpdatesDoNotRepost(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		calls := 0
		for i, id := range []string{"evt_carol_upd_1", "evt_carol_upd_2", "evt_carol_upd_3"} {
			payload := signupEvent(t, "customer.updated.2024-06-20.json", id, func(obj map[string]any) {
				obj["email"], obj["id"] = "carol@example.com", "cus_carol"
				obj["metadata"] = map[string]any{"rf_referrer_code": "aLiCeRef"}
			})
			expect(t, e, payload, "ignored", "refused: existing_referrer")
			if n := len(creates(t, e.sim)); n != 1 {
				t.Fatalf("after %d customer.updated: %d POST /users", i+1, n)
			}
			if i == 0 {
				calls = len(e.sim.Server.Calls())
			} else if n := len(e.sim.Server.Calls()); n != calls {
				t.Fatalf("customer.updated %d made %d RF calls", i+1, n-calls)
			}
		}
	})
}

// RF refusing the new lead's body (a 422 a retry cannot fix) is acknowledged with 200 and
// counted: SignupNotAttributed{Reason=rf_refused}.
func TestSignupRFRefusalIsCounted(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		if _, err := e.sim.Server.AddFault(rfsim.Fault{Match: "POST /api/v2/users", Status: 422, Count: 1,
			Body: `{"code":422,"message":"Validation errors in your request","errors":{"first_name":[{"field":"first_name","message":"The first name may not be greater than 255 characters."}]}}`}); err != nil {
			t.Fatal(err)
		}
		expect(t, e, fixture(t, fayCheckout), "ignored", "ignored: rf_refused: Referral Factory refused the new lead")
		if !metricLine(e.logs.String(), `"SignupNotAttributed":1`, `"Reason":"rf_refused"`) {
			t.Fatal("no SignupNotAttributed for the refusal")
		}
	})
}

// RF refusing the signup campaign (deleted, or RF_SIGNUP_CAMPAIGN_ID wrong) is a configuration
// error: 503 so that Stripe retries for three days, and an ERROR line naming the setting; once
// the campaign is fixed, the retry creates the lead.
func TestSignupCampaignRefusedIsRetried(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		if _, err := e.sim.Server.AddFault(rfsim.Fault{Match: "POST /api/v2/users", Status: 422, Count: 1,
			Body: `{"code":422,"message":"Validation errors in your request","errors":{"campaign_id":[{"field":"campaign_id","message":"The selected campaign id is invalid."}]}}`}); err != nil {
			t.Fatal(err)
		}
		payload := fixture(t, fayCheckout)
		if status, a := call(t, e, signed(payload)); status != 503 {
			t.Fatalf("%d %+v, want 503", status, a)
		}
		if !metricLine(e.logs.String(), `"level":"ERROR"`, "RF_SIGNUP_CAMPAIGN_ID") {
			t.Fatalf("no ERROR line naming RF_SIGNUP_CAMPAIGN_ID")
		}
		expect(t, e, payload, "processed", "created: lead ")
		oneLead(t, e, fayEmail, alice, fayCus)
	})
}

// A signup the RF client cannot send (an email with an empty local part and no Stripe name: no
// first_name) is permanent: 200 ignored and counted, not 503 on every redelivery.
func TestSignupThatCannotBeSentIsIgnoredAndCounted(t *testing.T) {
	both(t, false, func(t *testing.T, e env) {
		payload := signupEvent(t, fayCheckout, "evt_no_local_part", func(obj map[string]any) {
			d := obj["customer_details"].(map[string]any)
			d["email"], d["name"] = "@example.com", nil
		})
		expect(t, e, payload, "ignored", "ignored: invalid_signup: ")
		if n := len(creates(t, e.sim)); n != 0 {
			t.Fatalf("%d POST /users", n)
		}
		if !metricLine(e.logs.String(), `"SignupNotAttributed":1`, `"Reason":"invalid_signup"`) {
			t.Fatal("no SignupNotAttributed")
		}
	})
}
