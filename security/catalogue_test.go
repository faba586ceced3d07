package security

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stripe/stripe-go/v79/webhook"

	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/ledger"
)

// answer is the shape a row's response must have: the status, and the contract's body —
// {"status","reason"} for 200 (status names the outcome), {"error"} for the rest.
type answer struct {
	code     int
	status   string // 200: processed, ignored or duplicate
	contains string // in the reason or error
}

func ok(status, contains string) answer { return answer{200, status, contains} }
func fail(code int, contains string) answer {
	return answer{code: code, contains: contains}
}

// row is one hostile (or merely unusual) delivery. Unless it says otherwise it must change no
// state and make no RF call. A row whose input is valid after all (a mixed-case email, a
// duplicate key) states what it may call and write, and checks that it did exactly that.
type row struct {
	name  string
	setup func(t *testing.T, w *world) // before the snapshot: what the row needs in place
	req   func(t *testing.T, w *world) events.LambdaFunctionURLRequest
	fn    string // "stripe" or "rf"
	want  answer
	// What a valid input legitimately does: the RF calls ("METHOD path", in order), the
	// prefixes of the item ids it writes (each written at least once, nothing else), and more.
	rfCalls []string
	writes  []string
	check   func(t *testing.T, w *world)
}

func stripeRow(name string, req func(t *testing.T, w *world) events.LambdaFunctionURLRequest, want answer) row {
	return row{name: "stripe: " + name, fn: "stripe", req: req, want: want}
}

func rfRow(name string, req func(t *testing.T, w *world) events.LambdaFunctionURLRequest, want answer) row {
	return row{name: "rf: " + name, fn: "rf", req: req, want: want}
}

// fixed is a request that needs nothing from the world.
func fixed(ev events.LambdaFunctionURLRequest) func(*testing.T, *world) events.LambdaFunctionURLRequest {
	return func(*testing.T, *world) events.LambdaFunctionURLRequest { return ev }
}

func (r row) with(f func(*row)) row { f(&r); return r }

// processInvoice delivers Erin's first invoice (it qualifies her: one search, one qualify call).
func processInvoice(t *testing.T, w *world) {
	t.Helper()
	resp, err := w.stripe(context.Background(), signed(fixture(t, "stripe/invoice.paid.2024-06-20.json")))
	if err != nil || resp.StatusCode != 200 || !strings.Contains(resp.Body, "qualified") {
		t.Fatalf("setup: %d %s %v", resp.StatusCode, resp.Body, err)
	}
}

// nested is depth levels of JSON arrays.
func nested(depth int) string { return strings.Repeat("[", depth) + strings.Repeat("]", depth) }

// nestedObject is depth levels of {"a": …} around "x".
func nestedObject(depth int) string {
	return strings.Repeat(`{"a":`, depth) + `"x"` + strings.Repeat("}", depth)
}

func catalogue(t *testing.T) []row {
	invoice := fixture(t, "stripe/invoice.paid.2024-06-20.json")
	now := time.Now()
	rfAuth := map[string]string{"X-Webhook-Secret": rfSecret}
	rfJSON := func(kind, body string, headers map[string]string) func(*testing.T, *world) events.LambdaFunctionURLRequest {
		return fixed(rfRequest(kind, "application/json", body, headers))
	}
	rfForm := func(kind, body string) func(*testing.T, *world) events.LambdaFunctionURLRequest {
		return fixed(rfRequest(kind, "application/x-www-form-urlencoded", body, rfAuth))
	}
	// signedAt signs when the row runs, age before it (negative: ahead of it).
	signedAt := func(payload []byte, secret string, age time.Duration) func(*testing.T, *world) events.LambdaFunctionURLRequest {
		return func(*testing.T, *world) events.LambdaFunctionURLRequest {
			return stripeRequest(string(payload), sign(payload, secret, time.Now().Add(-age)))
		}
	}
	signedNow := func(payload []byte) func(*testing.T, *world) events.LambdaFunctionURLRequest {
		return signedAt(payload, stripeSecret, 0)
	}
	signedEdit := func(file string, edit func(ev, obj map[string]any)) func(*testing.T, *world) events.LambdaFunctionURLRequest {
		return func(t *testing.T, _ *world) events.LambdaFunctionURLRequest { return signed(edited(t, file, edit)) }
	}
	hmacHex := func(payload []byte, at time.Time) string {
		return hex.EncodeToString(webhook.ComputeSignature(at, payload, stripeSecret))
	}
	big := `{"id":"evt_big","object":"event","type":"invoice.paid","padding":"` + strings.Repeat("x", httpx.MaxBody) + `"}`
	deep := []byte(`{"id":"evt_deep","object":"event","type":"invoice.paid","livemode":false,"data":{"object":` + nested(100_000) + `}}`)
	unknownType := edited(t, "invoice.paid.2024-06-20.json", func(ev, _ map[string]any) {
		ev["id"], ev["type"] = "evt_future", "payment_intent.succeeded"
	})
	lookedFor := "looked for id (id, user_id"

	rows := []row{
		// ----- Stripe: the signature -----
		stripeRow("no Stripe-Signature header", fixed(stripeRequest(string(invoice), "")), fail(400, "no Stripe-Signature header")),
		stripeRow("Stripe-Signature of spaces", fixed(stripeRequest(string(invoice), "   ")), fail(400, "invalid Stripe-Signature header")),
		stripeRow("malformed Stripe-Signature (t=yesterday)", fixed(stripeRequest(string(invoice), "t=yesterday,v1=abc")), fail(400, "invalid Stripe-Signature header")),
		stripeRow("a valid v1 without its timestamp", fixed(stripeRequest(string(invoice), "v1="+hmacHex(invoice, time.Unix(0, 0)))), fail(400, "tolerance")),
		stripeRow("only a v0 signature (a scheme Stripe does not use for this)", func(*testing.T, *world) events.LambdaFunctionURLRequest {
			now := time.Now()
			return stripeRequest(string(invoice), "t="+unix(now)+",v0="+hmacHex(invoice, now))
		}, fail(400, "no valid signature")),
		stripeRow("signed with another secret", signedAt(invoice, "whsec_attacker_guess", 0), fail(400, "no valid signature")),
		stripeRow("the signing secret itself as Stripe-Signature", fixed(stripeRequest(string(invoice), stripeSecret)), fail(400, "invalid Stripe-Signature header")),
		stripeRow("body changed after signing (amount raised)", func(*testing.T, *world) events.LambdaFunctionURLRequest {
			return stripeRequest(strings.Replace(string(invoice), "4900", "990000", 1), sign(invoice, stripeSecret, time.Now()))
		}, fail(400, "no valid signature")),
		stripeRow("signature an hour old (expired)", signedAt(invoice, stripeSecret, time.Hour), fail(400, "tolerance")),
		stripeRow("replay of a processed event, signed 301 s ago (past the 300 s tolerance)", signedAt(invoice, stripeSecret, 301*time.Second),
			fail(400, "tolerance")).with(func(r *row) { r.setup = processInvoice }),
		stripeRow("replay of a processed event, signed 299 s ago (inside the tolerance): a duplicate", signedAt(invoice, stripeSecret, 299*time.Second),
			ok("duplicate", "already processed")).with(func(r *row) { r.setup = processInvoice }),
		stripeRow("future-dated signature (an hour ahead) with another secret", signedAt(invoice, "whsec_attacker_guess", -time.Hour),
			fail(400, "no valid signature")),
		// stripe-go bounds only a signature's age, as Stripe's own libraries do: a timestamp
		// ahead of the clock needs the secret to sign, so it is no way in (docs/security.md).
		stripeRow("future-dated signature (an hour ahead) with the secret: accepted, as stripe-go does", signedAt(unknownType, stripeSecret, -time.Hour),
			ok("ignored", "not handled")),
		stripeRow("signed with the newer secret during a rotation: accepted", signedAt(unknownType, stripeSecretNew, 0), ok("ignored", "not handled")),

		// ----- Stripe: the body -----
		stripeRow("empty body, unsigned", fixed(stripeRequest("", "")), fail(400, "Stripe-Signature")),
		stripeRow("empty body, signed", signedNow(nil), fail(400, "malformed event")),
		stripeRow("truncated JSON, signed", signedNow(invoice[:len(invoice)/2]), fail(400, "malformed event")),
		stripeRow("invalid JSON, signed", signedNow([]byte(`{'id': 'evt_1', 'type': 'invoice.paid'}`)), fail(400, "malformed event")),
		stripeRow("signed JSON that is no event", signedNow([]byte(`{"a":1}`)), fail(400, "malformed event")),
		stripeRow("deeply nested JSON (100 000 levels), signed", signedNow(deep), fail(400, "malformed event")),
		stripeRow("deeply nested value (5 000 levels) in a known field, signed", signedEdit("invoice.paid.2024-06-20.json", func(ev, obj map[string]any) {
			obj["metadata"] = json.RawMessage(nestedObject(5_000))
		}), fail(400, "data.object does not match")),
		stripeRow("over 1 MiB", fixed(stripeRequest(big, sign([]byte(big), stripeSecret, now))), fail(413, "1 MiB")),
		stripeRow("over 1 MiB, base64", fixed(base64Request(stripeRequest(big, sign([]byte(big), stripeSecret, now)))), fail(413, "1 MiB")),
		stripeRow("invalid base64", fixed(func() events.LambdaFunctionURLRequest {
			ev := signed(invoice)
			ev.Body, ev.IsBase64Encoded = "eyJpZCI6!!!not*base64", true
			return ev
		}()), fail(400, "base64")),
		stripeRow("base64 body signed over its encoded text", fixed(func() events.LambdaFunctionURLRequest {
			enc := base64.StdEncoding.EncodeToString(invoice)
			ev := stripeRequest(enc, sign([]byte(enc), stripeSecret, now))
			ev.IsBase64Encoded = true
			return ev
		}()), fail(400, "no valid signature")),
		stripeRow("wrong type: amount_paid is a string", signedEdit("invoice.paid.2024-06-20.json", func(_, obj map[string]any) {
			obj["amount_paid"] = "4900"
		}), fail(400, "data.object does not match")),
		stripeRow("wrong type: customer is a number", signedEdit("invoice.paid.2024-06-20.json", func(_, obj map[string]any) {
			obj["customer"] = 42
		}), fail(400, "data.object does not match")),
		stripeRow("wrong type: livemode is a string", signedEdit("invoice.paid.2024-06-20.json", func(ev, _ map[string]any) {
			ev["livemode"] = "false"
		}), fail(400, "malformed event")),
		stripeRow("wrong type: the event id is a number", signedEdit("invoice.paid.2024-06-20.json", func(ev, _ map[string]any) {
			ev["id"] = 12345
		}), fail(400, "malformed event")),
		stripeRow("wrong type: data.object is an array", signedEdit("invoice.paid.2024-06-20.json", func(ev, _ map[string]any) {
			ev["data"] = map[string]any{"object": []any{1, 2}}
		}), fail(400, "malformed event")),
		stripeRow("an invoice.paid whose object is a charge", signedEdit("invoice.paid.2024-06-20.json", func(ev, _ map[string]any) {
			ev["data"] = map[string]any{"object": map[string]any{"object": "charge", "id": "ch_1"}}
		}), fail(400, "data.object does not match")),
		stripeRow("unknown event type", signedNow(unknownType), ok("ignored", "not handled")),
		stripeRow("an invoice of the other mode (livemode in a test deployment)", signedEdit("invoice.paid.2024-06-20.json", func(ev, obj map[string]any) {
			ev["livemode"], obj["livemode"] = true, true
		}), ok("ignored", "other Stripe mode")),
		stripeRow("a processed event's id reused with another body", signedEdit("invoice.paid.2024-06-20.json", func(_, obj map[string]any) {
			obj["amount_paid"] = 990000
		}), fail(400, "event id reused")).with(func(r *row) { r.setup = processInvoice }),
		stripeRow("a referral code that cannot be a code (an email) on a checkout with a mixed-case email",
			signedEdit("checkout.session.completed.2024-06-20.json", func(_, obj map[string]any) {
				obj["client_reference_id"] = "Alice@Example.com"
				obj["customer_details"].(map[string]any)["email"] = "FAY.Lin@EXAMPLE.com"
			}), ok("ignored", "unknown_referral_code")).with(func(r *row) {
			r.writes = []string{"idem#stripe#evt_1RbCheckoutDone01", "decision#checkout#cs_test_RbFayCheckout01"}
		}),

		// ----- RF: the shared secret -----
		rfRow("no X-Webhook-Secret", rfJSON("lead-created", `{"referral_code":"eRiNlEad"}`, nil), fail(401, "unauthorized")),
		rfRow("empty X-Webhook-Secret", rfJSON("lead-created", `{"referral_code":"eRiNlEad"}`, map[string]string{"X-Webhook-Secret": ""}), fail(401, "unauthorized")),
		rfRow("wrong secret", rfJSON("lead-created", `{"referral_code":"eRiNlEad"}`, map[string]string{"X-Webhook-Secret": "guess"}), fail(401, "unauthorized")),
		rfRow("the secret upper-cased", rfJSON("lead-created", `{"referral_code":"eRiNlEad"}`, map[string]string{"X-Webhook-Secret": strings.ToUpper(rfSecret)}), fail(401, "unauthorized")),
		rfRow("the secret as a prefix of the value", rfJSON("lead-created", `{"referral_code":"eRiNlEad"}`, map[string]string{"X-Webhook-Secret": rfSecret + "x"}), fail(401, "unauthorized")),
		rfRow("a prefix of the secret", rfJSON("lead-created", `{"referral_code":"eRiNlEad"}`, map[string]string{"X-Webhook-Secret": rfSecret[:len(rfSecret)-1]}), fail(401, "unauthorized")),
		rfRow("two values, the right one second (a repeated header, joined)", rfJSON("lead-created", `{"referral_code":"eRiNlEad"}`,
			map[string]string{"X-Webhook-Secret": "guess," + rfSecret}), fail(401, "unauthorized")),
		rfRow("the secret in Authorization: Bearer", rfJSON("lead-created", `{"referral_code":"eRiNlEad"}`, map[string]string{"Authorization": "Bearer " + rfSecret}), fail(401, "unauthorized")),
		rfRow("the secret in another header (X-Webhook-Token)", rfJSON("lead-created", `{"referral_code":"eRiNlEad"}`, map[string]string{"X-Webhook-Token": rfSecret}), fail(401, "unauthorized")),
		rfRow("the secret in the query string", fixed(func() events.LambdaFunctionURLRequest {
			ev := rfRequest("lead-created", "application/json", `{"referral_code":"eRiNlEad"}`, nil)
			ev.RawQueryString, ev.QueryStringParameters = "secret="+rfSecret, map[string]string{"secret": rfSecret}
			return ev
		}()), fail(401, "unauthorized")),
		rfRow("the secret in the body", rfJSON("lead-created", `{"referral_code":"eRiNlEad","secret":"`+rfSecret+`","x-webhook-secret":"`+rfSecret+`"}`, nil), fail(401, "unauthorized")),
		rfRow("the Stripe secret as the RF secret", rfJSON("lead-created", `{"referral_code":"eRiNlEad"}`, map[string]string{"X-Webhook-Secret": stripeSecret}), fail(401, "unauthorized")),

		// ----- RF: the path -----
		rfRow("unknown kind, with the secret", rfJSON("lead-deleted", `{"referral_code":"eRiNlEad"}`, rfAuth), fail(404, "unknown webhook kind")),
		rfRow("unknown kind, without the secret", rfJSON("lead-deleted", `{"referral_code":"eRiNlEad"}`, nil), fail(404, "unknown webhook kind")),
		rfRow("a kind in another case", rfJSON("Lead-Created", `{"referral_code":"eRiNlEad"}`, rfAuth), fail(404, "unknown webhook kind")),

		// ----- RF: the body -----
		rfRow("empty body", rfJSON("lead-created", ``, rfAuth), fail(400, "malformed JSON body")),
		rfRow("truncated JSON", rfJSON("lead-created", `{"referral_code":"eRiN`, rfAuth), fail(400, "malformed JSON body")),
		rfRow("invalid JSON", rfJSON("lead-created", `{referral_code: eRiNlEad}`, rfAuth), fail(400, "malformed JSON body")),
		rfRow("a JSON array", rfJSON("lead-created", `[{"referral_code":"eRiNlEad"}]`, rfAuth), fail(400, "malformed JSON body")),
		rfRow("deeply nested JSON (100 000 levels)", rfJSON("lead-created", `{"data":`+nested(100_000)+`}`, rfAuth), fail(400, "malformed JSON body")),
		rfRow("the identity nested deeper than data or user", rfJSON("lead-created", `{"data":{"user":{"referral_code":"eRiNlEad"}}}`, rfAuth), fail(400, lookedFor)),
		rfRow("over 1 MiB, without the secret (the size is checked first)", rfJSON("lead-created", big, nil), fail(413, "1 MiB")),
		rfRow("invalid base64", fixed(func() events.LambdaFunctionURLRequest {
			ev := rfRequest("lead-created", "application/json", "eyJpZCI6!!!", rfAuth)
			ev.IsBase64Encoded = true
			return ev
		}()), fail(400, "base64")),
		rfRow("wrong types: id true, code an array, email an object", rfJSON("lead-created", `{"id":true,"code":["eRiNlEad"],"email":{"a":"erin@example.com"}}`, rfAuth), fail(400, lookedFor)),
		rfRow("an id that is not a number", rfJSON("lead-created", `{"id":"5; DROP TABLE users"}`, rfAuth), fail(400, lookedFor)),
		rfRow("a negative id", rfJSON("lead-created", `{"id":-5}`, rfAuth), fail(400, lookedFor)),
		rfRow("an id beyond int64", rfJSON("lead-created", `{"id":99999999999999999999999}`, rfAuth), fail(400, lookedFor)),
		rfRow("reward-issued whose reward_issued_id is beyond int64", rfJSON("reward-issued", `{"referral_code":"aLiCeRef","reward_issued_id":9223372036854775808}`, rfAuth), fail(400, "reward_issued_id")),
		rfRow("reward-issued whose reward_issued_id is not a number", rfJSON("reward-issued", `{"referral_code":"aLiCeRef","reward_issued_id":"five"}`, rfAuth), fail(400, "reward_issued_id")),
		rfRow("a form body sent as JSON", rfJSON("lead-created", `referral_code=eRiNlEad`, rfAuth), fail(400, "malformed JSON body")),
		rfRow("a JSON body sent as a form", rfForm("lead-created", `{"referral_code":"eRiNlEad"}`), fail(400, lookedFor)),
		rfRow("a form with invalid percent-encoding", rfForm("lead-created", `referral_code=%zz`), fail(400, "malformed form body")),
		rfRow("a form with a duplicate key whose last value is empty", rfForm("lead-created", `referral_code=eRiNlEad&referral_code=`), fail(400, lookedFor)),
		// Valid, so RF is asked: a key given twice counts once, with its last value, in a form
		// as in JSON (encoding/json keeps the last), so both encodings name the same user.
		rfRow("a form with a duplicate key: the last value counts", rfForm("lead-created", `referral_code=eRiNlEad&referral_code=aLiCeRef`),
			ok("processed", "user recorded")).with(func(r *row) {
			r.rfCalls = []string{"GET /api/v2/users/aLiCeRef"}
			r.writes = []string{"lead#1", "code#aLiCeRef", "email#" + ledger.HashEmail("alice@example.com"), "idem#rf#lead-created#1#"}
		}),
		rfRow("JSON with a duplicate key: the last value counts", rfJSON("lead-created", `{"referral_code":"eRiNlEad","referral_code":"aLiCeRef"}`, rfAuth),
			ok("processed", "user recorded")).with(func(r *row) {
			r.rfCalls = []string{"GET /api/v2/users/aLiCeRef"}
			r.writes = []string{"lead#1", "code#aLiCeRef", "email#" + ledger.HashEmail("alice@example.com"), "idem#rf#lead-created#1#"}
		}),

		// ----- Emails in another case or script -----
		// Valid: RF knows Erin in lower case; the re-read finds her, and the ledger keys her by
		// the hash of the normalised address, never the address.
		rfRow("a mixed-case email RF knows in lower case", rfJSON("lead-created", `{"email":"  ERIN@Example.COM "}`, rfAuth),
			ok("processed", "lead recorded")).with(func(r *row) {
			r.rfCalls = []string{"POST /api/v2/users/search"}
			r.writes = []string{"lead#5", "code#eRiNlEad", "email#" + ledger.HashEmail("erin@example.com"), "idem#rf#lead-created#5#"}
			r.check = func(t *testing.T, w *world) {
				leads, err := w.ledger.LeadsByEmail(context.Background(), ledger.HashEmail("Erin@example.com"))
				if err != nil || len(leads) != 1 || leads[0].ID != 5 {
					t.Errorf("leads by the normalised email: %+v %v", leads, err)
				}
			}
		}),
		rfRow("a unicode email RF does not know", rfJSON("lead-created", `{"email":"Érin.Müller@Exämple.com"}`, rfAuth),
			ok("ignored", "unknown or ambiguous user")).with(func(r *row) { r.rfCalls = []string{"POST /api/v2/users/search"} }),
		// Valid: a payment by a customer refbridge has never seen, whose Stripe email differs
		// from RF's in case only; RF's search is by the normalised address.
		stripeRow("an invoice whose customer email is Erin's in another case", signedEdit("invoice.paid.2024-06-20.json", func(_, obj map[string]any) {
			obj["customer"], obj["customer_email"] = "cus_NeverSeen0001", "  ERIN@Example.COM "
		}), ok("processed", "qualified")).with(func(r *row) {
			r.rfCalls = []string{"POST /api/v2/users/search", "PUT /api/v2/users/qualification"}
			r.writes = []string{"idem#stripe#", "lead#5", "code#eRiNlEad", "email#" + ledger.HashEmail("erin@example.com"), "customer#cus_NeverSeen0001",
				"charge#", "spend", "invoice#", "qual#5", "recipient#", "intent#qualify#", "decision#invoice#"}
			r.check = func(t *testing.T, w *world) {
				if u, _ := w.sim.Server.User(5); u.QualifiedAt == nil {
					t.Error("Erin is not qualified in RF")
				}
			}
		}),
		stripeRow("an invoice whose customer email is in another script and unknown", signedEdit("invoice.paid.2024-06-20.json", func(_, obj map[string]any) {
			obj["customer"], obj["customer_email"] = "cus_NeverSeen0002", "Jörg.Müller@Exämple.com"
		}), ok("ignored", "unmatched")).with(func(r *row) {
			r.rfCalls = []string{"POST /api/v2/users/search"}
			r.writes = []string{"idem#stripe#", "unmatched#in_1RbErinFirst0001", "decision#invoice#in_1RbErinFirst0001"}
			r.check = func(t *testing.T, w *world) {
				u, err := w.ledger.UnmatchedInvoice(context.Background(), "in_1RbErinFirst0001")
				if err != nil || u.EmailHash != ledger.HashEmail("jörg.müller@exämple.com") {
					t.Errorf("unmatched record %+v %v: want the normalised email's hash", u, err)
				}
			}
		}),
	}
	return rows
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func base64Request(ev events.LambdaFunctionURLRequest) events.LambdaFunctionURLRequest {
	ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString([]byte(ev.Body)), true
	return ev
}

// TestHostileInputCatalogue runs every row through the real handlers behind the Function URL
// adapter, on DynamoDB Local and the RF simulator, each row in a world of its own: the answer
// must be the documented status with the contract's body; the table (a consistent scan) must be
// unchanged, and the simulator must have logged no call, unless the row is valid input and says
// what it does instead; and no secret or email may appear in the answer, no email in the table,
// no secret or unmasked email in the logs.
func TestHostileInputCatalogue(t *testing.T) {
	rows := catalogue(t)
	if len(rows) < 30 {
		t.Fatalf("%d rows; the catalogue needs at least 30", len(rows))
	}
	names := map[string]bool{}
	for _, r := range rows {
		if names[r.name] {
			t.Fatalf("two rows named %q", r.name)
		}
		names[r.name] = true
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			if r.setup != nil {
				r.setup(t, w)
			}
			ev := r.req(t, w)
			before, seq := w.snapshot(t), w.lastCall()
			invoke := w.stripe
			if r.fn == "rf" {
				invoke = w.rf
			}
			resp, err := invoke(context.Background(), ev)
			if err != nil {
				t.Fatalf("the adapter returned an error: %v", err)
			}
			checkAnswer(t, resp, r.want)

			if got := w.calls(seq); !slices.Equal(got, r.rfCalls) {
				t.Errorf("RF calls %q, want %q", got, r.rfCalls)
			}
			after := w.snapshot(t)
			checkWrites(t, changed(before, after), r.writes)
			if r.check != nil {
				r.check(t, w)
			}
			checkNoLeaks(t, w, ev, resp.Body, after)
		})
	}
}

func checkAnswer(t *testing.T, resp events.LambdaFunctionURLResponse, want answer) {
	t.Helper()
	if resp.StatusCode != want.code {
		t.Errorf("status %d, want %d (body %s)", resp.StatusCode, want.code, resp.Body)
	}
	if resp.Headers["Content-Type"] != "application/json" {
		t.Errorf("Content-Type %q", resp.Headers["Content-Type"])
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
		t.Fatalf("body %q is not the contract's JSON: %v", resp.Body, err)
	}
	text := body["reason"]
	if want.code == 200 {
		if body["status"] != want.status || len(body) > 2 || (len(body) == 2 && body["reason"] == "") {
			t.Errorf("body %s, want {\"status\":%q,\"reason\":…}", resp.Body, want.status)
		}
	} else {
		text = body["error"]
		if len(body) != 1 || text == "" {
			t.Errorf("body %s, want {\"error\":…}", resp.Body)
		}
	}
	if !strings.Contains(text, want.contains) {
		t.Errorf("body %s, want it to say %q", resp.Body, want.contains)
	}
}

// checkWrites: every item written starts with one of the prefixes, and every prefix was written.
func checkWrites(t *testing.T, keys, prefixes []string) {
	t.Helper()
	used := map[string]bool{}
	for _, k := range keys {
		i := slices.IndexFunc(prefixes, func(p string) bool { return strings.HasPrefix(k, p) })
		if i < 0 {
			t.Errorf("wrote %s", k)
			continue
		}
		used[prefixes[i]] = true
	}
	for _, p := range prefixes {
		if !used[p] {
			t.Errorf("wrote no item %s…, which this input should write", p)
		}
	}
}

// checkNoLeaks: the answer holds no secret and no email; the table no email the request carried
// (in any case); the logs no secret and none of those emails unmasked.
func checkNoLeaks(t *testing.T, w *world, ev events.LambdaFunctionURLRequest, body string, after snapshot) {
	t.Helper()
	logs := w.logs.String()
	for _, s := range allSecrets(w) {
		if strings.Contains(body, s) {
			t.Errorf("the answer holds the secret %q: %s", s, body)
		}
		if strings.Contains(logs, s) {
			t.Errorf("the logs hold the secret %q", s)
		}
	}
	if m := anyEmail.FindString(body); m != "" {
		t.Errorf("the answer holds the email %q: %s", m, body)
	}
	text := ev.Body
	if un, err := url.QueryUnescape(text); err == nil {
		text += "\n" + un
	}
	table := strings.ToLower(after.dump())
	lowerLogs := strings.ToLower(logs)
	for _, e := range anyEmail.FindAllString(text, -1) {
		e = strings.ToLower(strings.Trim(e, `"' `))
		if strings.Contains(table, e) {
			t.Errorf("the table holds the email %q", e)
		}
		local, _, _ := strings.Cut(e, "@")
		if len([]rune(local)) > 1 && strings.Contains(lowerLogs, local+"@") {
			t.Errorf("the logs hold the email %q unmasked", e)
		}
	}
}
