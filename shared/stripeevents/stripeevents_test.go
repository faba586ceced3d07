package stripeevents

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v79/webhook"
)

const secret = "whsec_test_refbridge"

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "events", "stripe", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sign(payload []byte, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: at}).Header
}

func TestVerify(t *testing.T) {
	payload := fixture(t, "invoice.paid.2024-06-20.json")
	basil := fixture(t, "invoice.paid.2025-03-31.basil.json")
	now := time.Now()
	tests := []struct {
		name    string
		payload []byte
		header  string
		secrets []string
		wantErr error
	}{
		{"valid", payload, sign(payload, secret, now), []string{secret}, nil},
		{"newer API version accepted", basil, sign(basil, secret, now), []string{secret}, nil},
		{"rotation: second secret matches", payload, sign(payload, secret, now), []string{"whsec_new", secret}, nil},
		{"wrong secret", payload, sign(payload, "whsec_other", now), []string{secret}, webhook.ErrNoValidSignature},
		{"no header", payload, "", []string{secret}, webhook.ErrNotSigned},
		{"garbage header", payload, "t=yesterday,v1=abc", []string{secret}, webhook.ErrInvalidHeader},
		{"header without timestamp", payload, "v1=abc", []string{secret}, webhook.ErrNoValidSignature},
		{"expired timestamp", payload, sign(payload, secret, now.Add(-10*time.Minute)), []string{secret}, webhook.ErrTooOld},
		{"body changed after signing", append([]byte(" "), payload...), sign(payload, secret, now), []string{secret}, webhook.ErrNoValidSignature},
		{"no secrets", payload, sign(payload, secret, now), nil, ErrNoSecrets},
		{"signed non-JSON", []byte("hello"), sign([]byte("hello"), secret, now), []string{secret}, ErrMalformed},
		{"signed JSON that is no event", []byte(`{"a":1}`), sign([]byte(`{"a":1}`), secret, now), []string{secret}, ErrMalformed},
		{"signed event with a null object", []byte(`{"id":"evt_1","type":"invoice.paid","data":{"object":null}}`),
			sign([]byte(`{"id":"evt_1","type":"invoice.paid","data":{"object":null}}`), secret, now), []string{secret}, ErrMalformed},
		{"signed event whose object is an array", []byte(`{"id":"evt_1","type":"invoice.paid","data":{"object":[1,2]}}`),
			sign([]byte(`{"id":"evt_1","type":"invoice.paid","data":{"object":[1,2]}}`), secret, now), []string{secret}, ErrMalformed},
		{"signed event with a string for created", []byte(`{"id":"evt_1","type":"invoice.paid","created":"now","data":{"object":{}}}`),
			sign([]byte(`{"id":"evt_1","type":"invoice.paid","created":"now","data":{"object":{}}}`), secret, now), []string{secret}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Verify(tt.payload, tt.header, tt.secrets, 0)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.ID == "" || ev.Type != TypeInvoicePaid || len(ev.Object) == 0 || ev.Created.IsZero() {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

func TestDecodeInvoiceBothShapes(t *testing.T) {
	tests := []struct {
		file                      string
		wantID, wantSub, wantCode string
		wantAmount                int64
		wantCharge                string
	}{
		{"invoice.paid.2024-06-20.json", "in_1RbErinFirst0001", "sub_1RbErinDemo0001", "", 4900, "ch_3RbErinDemo0001"},
		{"invoice.paid.2025-03-31.basil.json", "in_1RbErinRenewal001", "sub_1RbErinDemo0001", "eRiNlEad", 4900, ""},
		{"invoice.paid.zero.2024-06-20.json", "in_1RbErinTrial00001", "sub_1RbErinDemo0001", "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			payload := fixture(t, tt.file)
			ev, err := Verify(payload, sign(payload, secret, time.Now()), []string{secret}, 0)
			if err != nil {
				t.Fatal(err)
			}
			inv, err := DecodeInvoice(ev.Object)
			if err != nil {
				t.Fatal(err)
			}
			if inv.ID != tt.wantID || inv.SubscriptionID != tt.wantSub || inv.AmountPaid != tt.wantAmount ||
				inv.ChargeID != tt.wantCharge || inv.SubscriptionMetadata["rf_code"] != tt.wantCode {
				t.Errorf("decoded %+v", inv)
			}
			if inv.CustomerID != "cus_RbErinDemo0001" || inv.Currency != "usd" || inv.CustomerEmail != "erin@example.com" || inv.Livemode {
				t.Errorf("decoded %+v", inv)
			}
		})
	}
}

func TestDecodeOthers(t *testing.T) {
	ch, err := DecodeCharge(objectOf(t, "charge.refunded.2024-06-20.json"))
	if err != nil || ch.AmountRefunded != 4900 || ch.InvoiceID != "in_1RbErinFirst0001" || len(ch.Refunds) != 1 || ch.Refunds[0].ID != "re_3RbErinDemo0001" {
		t.Errorf("charge %+v %v", ch, err)
	}
	pc, err := DecodeCharge(objectOf(t, "charge.refunded.partial.2025-03-31.basil.json"))
	if err != nil || pc.AmountRefunded != 1000 || pc.InvoiceID != "" || pc.CustomerID != "cus_RbErinDemo0001" {
		t.Errorf("basil charge %+v %v", pc, err)
	}
	for file, status := range map[string]string{"charge.dispute.created.2024-06-20.json": "needs_response",
		"charge.dispute.closed.won.2024-06-20.json": "won", "charge.dispute.closed.lost.2024-06-20.json": "lost"} {
		d, err := DecodeDispute(objectOf(t, file))
		if err != nil || d.Status != status || d.ChargeID != "ch_3RbErinDemo0001" || d.Amount != 4900 {
			t.Errorf("%s: %+v %v", file, d, err)
		}
	}
}

// TestDecodeSignups reads every signup fixture, of both API versions: the fields attribution
// reads are the same in 2024-06-20 and 2025-03-31.basil.
func TestDecodeSignups(t *testing.T) {
	tests := []struct {
		file   string
		decode func(json.RawMessage) (Signup, error)
		want   Signup
	}{
		{"checkout.session.completed.2024-06-20.json", DecodeCheckoutSession, Signup{Source: ObjectCheckoutSession,
			ID: "cs_test_RbFayCheckout01", CustomerID: "cus_RbFayDemo00001", Email: "Fay@Example.com", Name: "Fay Lin",
			ClientReferenceID: "aLiCeRef"}},
		{"checkout.session.completed.metadata.2025-03-31.basil.json", DecodeCheckoutSession, Signup{Source: ObjectCheckoutSession,
			ID: "cs_test_RbHanaCheckout01", CustomerID: "cus_RbHanaDemo00001", Email: "hana@example.com", Name: "Hana Ito",
			Metadata: map[string]string{"rf_referrer_code": "bObbYRef"}}},
		{"customer.created.2024-06-20.json", DecodeCustomer, Signup{Source: ObjectCustomer, ID: "cus_RbFayDemo00001",
			CustomerID: "cus_RbFayDemo00001", Email: "fay@example.com", Name: "Fay Lin", Metadata: map[string]string{"rf_referrer_code": "aLiCeRef"}}},
		{"customer.created.2025-03-31.basil.json", DecodeCustomer, Signup{Source: ObjectCustomer, ID: "cus_RbGusDemo00001",
			CustomerID: "cus_RbGusDemo00001", Email: "gus@example.com", Name: "Gus Park", Metadata: map[string]string{"rf_referrer_code": "cArOlRef"}}},
		{"customer.updated.2024-06-20.json", DecodeCustomer, Signup{Source: ObjectCustomer, ID: "cus_RbIvanDemo00001",
			CustomerID: "cus_RbIvanDemo00001", Email: "ivan@example.com", Name: "Ivan Kos", Metadata: map[string]string{"rf_referrer_code": "cArOlRef"}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := tt.decode(objectOf(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(tt.want.Metadata) == 0 && len(got.Metadata) == 0 {
				got.Metadata = nil
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decoded %+v\nwant    %+v", got, tt.want)
			}
			if generic, err := DecodeSignup(objectOf(t, tt.file)); err != nil || generic.ID != tt.want.ID {
				t.Errorf("DecodeSignup: %+v %v", generic, err)
			}
		})
	}
	// Stripe may expand customer; customer_email stands in when customer_details has no email;
	// a null client_reference_id, name or email reads as "".
	s, err := DecodeCheckoutSession([]byte(`{"object":"checkout.session","id":"cs_1","customer":{"id":"cus_9","object":"customer"},
		"customer_email":"pre@example.com","customer_details":{"email":null,"name":null},"client_reference_id":"  aLiCeRef  "}`))
	if err != nil || s.CustomerID != "cus_9" || s.Email != "pre@example.com" || s.Name != "" || s.ClientReferenceID != "aLiCeRef" {
		t.Errorf("expanded: %+v %v", s, err)
	}
	s, err = DecodeCheckoutSession([]byte(`{"object":"checkout.session","id":"cs_2","customer":null,"client_reference_id":null,"customer_details":null}`))
	if err != nil || s.CustomerID != "" || s.Email != "" || s.ClientReferenceID != "" {
		t.Errorf("guest checkout: %+v %v", s, err)
	}
}

func objectOf(t *testing.T, file string) []byte {
	t.Helper()
	payload := fixture(t, file)
	ev, err := Verify(payload, sign(payload, secret, time.Now()), []string{secret}, 0)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return ev.Object
}

func TestDecodeRejectsOtherObjects(t *testing.T) {
	charge := objectOf(t, "charge.refunded.2024-06-20.json")
	if _, err := DecodeInvoice(charge); !errors.Is(err, ErrMalformed) {
		t.Errorf("invoice from a charge: %v", err)
	}
	if _, err := DecodeDispute(charge); !errors.Is(err, ErrMalformed) {
		t.Errorf("dispute from a charge: %v", err)
	}
	if _, err := DecodeSignup(charge); !errors.Is(err, ErrMalformed) {
		t.Errorf("signup from a charge: %v", err)
	}
	// The object must be the one the event type names.
	if _, err := DecodeCustomer(objectOf(t, "checkout.session.completed.2024-06-20.json")); !errors.Is(err, ErrMalformed) {
		t.Errorf("customer from a checkout session: %v", err)
	}
	if _, err := DecodeCheckoutSession(objectOf(t, "customer.created.2024-06-20.json")); !errors.Is(err, ErrMalformed) {
		t.Errorf("checkout session from a customer: %v", err)
	}
	if _, err := DecodeCustomer([]byte(`{"object":"customer","id":""}`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("customer without an id: %v", err)
	}
	if _, err := DecodeCharge([]byte(`{"object":"charge","id":"ch_1","customer":{"id":"cus_9"},"amount":"x"}`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad amount: %v", err)
	}
	c, err := DecodeCharge([]byte(`{"object":"charge","id":"ch_1","customer":{"id":"cus_9","object":"customer"}}`))
	if err != nil || c.CustomerID != "cus_9" {
		t.Errorf("expanded customer: %+v %v", c, err)
	}
}

// A customer.updated says what changed in data.previous_attributes: Verify keeps it, ChangesOf
// reads it. Metadata names the keys that changed (an added key with null); a metadata value that
// names no key cannot rule any out.
func TestChangesOfAnUpdate(t *testing.T) {
	payload := fixture(t, "customer.updated.2024-06-20.json")
	ev, err := Verify(payload, sign(payload, secret, time.Now()), []string{secret}, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := ChangesOf(ev.PreviousAttributes)
	if c == nil || !c.MetadataKey("rf_referrer_code") || c.MetadataKey("rf_user_id") || c.Attribute("email") || !c.Attribute("metadata") {
		t.Fatalf("changes %+v", c)
	}
	created := fixture(t, "customer.created.2024-06-20.json")
	ev, err = Verify(created, sign(created, secret, time.Now()), []string{secret}, 0)
	if err != nil || ev.PreviousAttributes != nil || ChangesOf(ev.PreviousAttributes) != nil {
		t.Fatalf("customer.created: %+v %v", ev.PreviousAttributes, err)
	}
	if ChangesOf(map[string]any{}) != nil {
		t.Error("an empty previous_attributes says nothing")
	}
	for _, md := range []any{nil, map[string]any{}, "x"} {
		if !ChangesOf(map[string]any{"metadata": md}).MetadataKey("rf_referrer_code") {
			t.Errorf("metadata %#v rules the key out", md)
		}
	}
	c = ChangesOf(map[string]any{"email": "old@example.com", "address": nil})
	if !c.Attribute("email") || c.MetadataKey("rf_referrer_code") {
		t.Errorf("email change: %+v", c)
	}
}
