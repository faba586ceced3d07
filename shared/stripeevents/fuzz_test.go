package stripeevents

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v79/webhook"
)

// fixtures are the Stripe samples in events/stripe, the fuzz targets' seed corpus.
func fixtures(f *testing.F) [][]byte {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "events", "stripe", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no fixtures: %v", err)
	}
	var out [][]byte
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzVerify signs the fuzzed body as Stripe would (now, with the second of two configured
// secrets, as during a rotation) and verifies it: a correctly signed body is an event or
// ErrMalformed, never a signature error; the event's object goes through the decoder its type
// names; and the same body with one byte changed, signed with another secret, or signed too long
// ago, is refused with stripe-go's sentinel.
func FuzzVerify(f *testing.F) {
	for _, b := range fixtures(f) {
		f.Add(b, uint16(7))
	}
	f.Add([]byte(`{"id":"evt_1","type":"invoice.paid","data":{"object":null}}`), uint16(0))
	f.Add([]byte(`{"id":"evt_1","type":"x","data":{"object":[]}}`), uint16(3))
	f.Add([]byte(`{"id":"evt_1","type":"invoice.paid","livemode":"no","data":{"object":{}}}`), uint16(1))
	f.Add([]byte{}, uint16(0))
	secrets := []string{"whsec_new", secret}
	f.Fuzz(func(t *testing.T, payload []byte, flip uint16) {
		now := time.Now()
		ev, err := Verify(payload, sign(payload, secret, now), secrets, 0)
		switch {
		case err == nil:
			if ev.ID == "" || ev.Type == "" || len(ev.Object) == 0 {
				t.Fatalf("verified an event without id, type or object: %+v", ev)
			}
			decodeByType(t, ev)
		case !errors.Is(err, ErrMalformed):
			t.Fatalf("a correctly signed body: %v, want an event or ErrMalformed", err)
		}
		if len(payload) > 0 {
			tampered := append([]byte(nil), payload...)
			tampered[int(flip)%len(tampered)] ^= 1 + byte(flip>>8)%255
			if _, err := Verify(tampered, sign(payload, secret, now), secrets, 0); !errors.Is(err, webhook.ErrNoValidSignature) {
				t.Fatalf("a changed body: %v, want ErrNoValidSignature", err)
			}
		}
		if _, err := Verify(payload, sign(payload, "whsec_other", now), secrets, 0); !errors.Is(err, webhook.ErrNoValidSignature) {
			t.Fatalf("another secret: %v, want ErrNoValidSignature", err)
		}
		if _, err := Verify(payload, sign(payload, secret, now.Add(-DefaultTolerance-time.Second)), secrets, 0); !errors.Is(err, webhook.ErrTooOld) {
			t.Fatalf("an old signature: %v, want ErrTooOld", err)
		}
	})
}

// decodeByType decodes a verified event's object as the stripe-webhook handler does.
func decodeByType(t *testing.T, ev Event) {
	t.Helper()
	var err error
	switch ev.Type {
	case TypeInvoicePaid:
		_, err = DecodeInvoice(ev.Object)
	case TypeChargeRefunded:
		_, err = DecodeCharge(ev.Object)
	case TypeDisputeCreated, TypeDisputeClosed:
		_, err = DecodeDispute(ev.Object)
	case TypeCheckoutSessionComplete:
		_, err = DecodeCheckoutSession(ev.Object)
	case TypeCustomerCreated, TypeCustomerUpdated:
		_, err = DecodeCustomer(ev.Object)
	}
	if err != nil && !errors.Is(err, ErrMalformed) {
		t.Fatalf("%s: %v, want ErrMalformed", ev.Type, err)
	}
}

// FuzzDecodeObject feeds arbitrary data.object bytes to every decoder: each returns its object
// (with an id, of the object type it reads) or ErrMalformed, and never panics.
func FuzzDecodeObject(f *testing.F) {
	for _, b := range fixtures(f) {
		var ev struct {
			Data struct {
				Object json.RawMessage `json:"object"`
			} `json:"data"`
		}
		if err := json.Unmarshal(b, &ev); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(ev.Data.Object))
	}
	for _, s := range []string{`{"object":"invoice","id":"in_1","customer":{"id":"cus_1"},"parent":{"subscription_details":{"metadata":{"rf_code":"x"},"subscription":{"id":"sub_1"}}}}`,
		`{"object":"charge","id":"ch_1","refunds":{"data":[{"id":"re_1","amount":5,"status":null}]}}`,
		`{"object":"customer","id":"cus_1","email":null,"metadata":{"a":"b"}}`,
		`{"object":"checkout.session","id":"cs_1","customer_details":{"email":"A@b.c"},"client_reference_id":" x "}`,
		`{"object":"dispute","id":"dp_1","charge":{"id":"ch_1"},"amount":1e2}`, `null`, `[]`, `"x"`, `{"customer":[]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		check := func(what string, id string, err error) {
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: %v, want ErrMalformed", what, err)
			}
			if err == nil && id == "" {
				t.Fatalf("%s decoded without an id", what)
			}
		}
		inv, err := DecodeInvoice(raw)
		check("invoice", inv.ID, err)
		ch, err := DecodeCharge(raw)
		check("charge", ch.ID, err)
		d, err := DecodeDispute(raw)
		check("dispute", d.ID, err)
		cs, err := DecodeCheckoutSession(raw)
		check("checkout session", cs.ID, err)
		if err == nil && cs.Source != ObjectCheckoutSession {
			t.Fatalf("checkout session read from a %q", cs.Source)
		}
		cus, err := DecodeCustomer(raw)
		check("customer", cus.ID, err)
		if err == nil && (cus.Source != ObjectCustomer || cus.CustomerID != cus.ID) {
			t.Fatalf("customer %+v", cus)
		}
		s, err := DecodeSignup(raw)
		check("signup", s.ID, err)
		if err == nil && s.Source != ObjectCheckoutSession && s.Source != ObjectCustomer {
			t.Fatalf("signup read from a %q", s.Source)
		}
		if cs.ClientReferenceID != strings.TrimSpace(cs.ClientReferenceID) {
			t.Fatalf("client_reference_id %q is not trimmed", cs.ClientReferenceID)
		}
	})
}

// TestDecodingIsBounded: the worst bodies an attacker can get signed-looking up to the 1 MiB
// limit (the signature is checked first, so only Stripe can make a body reach the decoders; this
// bounds what a buggy or compromised sender costs) allocate at most a fixed multiple of their
// size in Verify and the decoders together, and deep nesting stops at encoding/json's depth limit
// instead of recursing.
func TestDecodingIsBounded(t *testing.T) {
	const maxBody = 1 << 20
	wrap := func(object string) []byte {
		return []byte(`{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":` + object + `}}`)
	}
	fill := func(prefix, unit, suffix string) string {
		n := (maxBody - len(prefix) - len(suffix) - 100) / len(unit)
		return prefix + strings.TrimSuffix(strings.Repeat(unit, n), ",") + suffix
	}
	cases := map[string][]byte{
		"deep arrays":          wrap(strings.Repeat("[", maxBody/2-100) + strings.Repeat("]", maxBody/2-100)),
		"deep objects":         wrap(strings.Repeat(`{"a":`, maxBody/6-40) + "1" + strings.Repeat("}", maxBody/6-40)),
		"many metadata keys":   wrap(fill(`{"object":"invoice","id":"in_1","metadata":{`, `"k0000000":"v",`, `}}`)),
		"many refunds":         wrap(fill(`{"object":"charge","id":"ch_1","refunds":{"data":[`, `{"id":"re_1","amount":1},`, `]}}`)),
		"one long string":      wrap(`{"object":"invoice","id":"in_1","customer_email":"` + strings.Repeat("x", maxBody-200) + `"}`),
		"many small numbers":   wrap(fill(`{"object":"invoice","id":"in_1","lines":[`, `1,`, `]}`)),
		"escaped unicode":      wrap(`{"object":"customer","id":"cus_1","name":"` + strings.Repeat(`\u00e9`, (maxBody-200)/6) + `"}`),
		"many empty objects":   wrap(fill(`{"object":"invoice","id":"in_1","lines":[`, `{},`, `]}`)),
		"many empty arrays":    wrap(fill(`{"object":"invoice","id":"in_1","lines":[`, `[],`, `]}`)),
		"many nulls in a map":  wrap(fill(`{"object":"invoice","id":"in_1","lines":{`, `"":null,`, `}}`)),
		"many expanded fields": wrap(fill(`{"object":"invoice","id":"in_1","lines":[`, `{"customer":{"id":"c"}},`, `]}`)),
	}
	for name, payload := range cases {
		if len(payload) > maxBody {
			t.Fatalf("%s: %d bytes, over the limit", name, len(payload))
		}
		header := sign(payload, secret, time.Now())
		allocated := allocatedBy(func() {
			if ev, err := Verify(payload, header, []string{secret}, 0); err == nil {
				_, _ = DecodeInvoice(ev.Object)
				_, _ = DecodeCharge(ev.Object)
				_, _ = DecodeSignup(ev.Object)
			}
		})
		// stripe-go decodes data.object into a map too (generic values cost ~40 B per byte of
		// "[]"-style input); 64× the body, 64 MiB at the limit, is the bound Lambda's memory has
		// to hold for one delivery.
		if limit := uint64(64 * len(payload)); allocated > limit {
			t.Errorf("%s: %d bytes allocated for a %d-byte body, over %d", name, allocated, len(payload), limit)
		}
		t.Logf("%s: %.1f× the body", name, float64(allocated)/float64(len(payload)))
	}
}

// allocatedBy is the bytes allocated on the heap while fn runs.
func allocatedBy(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
