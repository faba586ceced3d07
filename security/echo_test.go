package security

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stripe/stripe-go/v79/webhook"

	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/rfevents"
)

// refusals are every error answer the two functions give to a request refused before any work:
// fixed texts, or the field names the RF admin configured (none here), nothing from the request.
func refusals() []string {
	var out []string
	for _, err := range []error{webhook.ErrNotSigned, webhook.ErrInvalidHeader, webhook.ErrNoValidSignature, webhook.ErrTooOld} {
		out = append(out, "invalid Stripe-Signature: "+err.Error())
	}
	_, noIdentity := rfevents.Parse([]byte(`{}`), "application/json", nil)
	return append(out, "malformed event", "data.object does not match the event type", "body over 1 MiB", "body is not valid base64",
		"unauthorized", "unknown webhook kind: use referrer-joined, lead-created, lead-qualified or reward-issued",
		rfevents.ErrMalformedJSON.Error(), rfevents.ErrMalformedForm.Error(), noIdentity.Error(),
		"reward-issued without the issued reward's id (reward_issued_id)")
}

// canary marks what a sender put in a request; canaryEmail is an address nobody has.
const (
	canary      = "CANARY7f3e9a"
	canaryEmail = "canary.person7f3e9a@example.com"
)

// TestErrorAnswersEchoNoInput sends a request refused at every place an error answer is made,
// with a canary (and an email) in the header, path, content type, field names and values or
// the malformed bytes themselves: no answer may hold any of them. An answer says what was wrong
// in refbridge's words (the contract's reason), never in the sender's: input may carry a secret
// pasted in the wrong place, or someone's address.
func TestErrorAnswersEchoNoInput(t *testing.T) {
	invoice := fixture(t, "stripe/invoice.paid.2024-06-20.json")
	auth := map[string]string{"X-Webhook-Secret": rfSecret}
	stripe := func(body, sig string) events.LambdaFunctionURLRequest { return stripeRequest(body, sig) }
	signedNow := func(body string) events.LambdaFunctionURLRequest {
		return stripeRequest(body, sign([]byte(body), stripeSecret, time.Now()))
	}
	b64 := func(ev events.LambdaFunctionURLRequest) events.LambdaFunctionURLRequest {
		ev.IsBase64Encoded = true
		return ev
	}
	stripeCases := map[string]events.LambdaFunctionURLRequest{
		"canary in the signature's parts":      stripe(string(invoice), "t="+canary+",v1="+canary),
		"canary as the signature":              stripe(string(invoice), canary),
		"canary email as the signature":        stripe(string(invoice), canaryEmail),
		"unsigned body with an email":          stripe(`{"id":"evt_`+canary+`","email":"`+canaryEmail+`"}`, ""),
		"signed, truncated, with the canary":   signedNow(`{"id":"evt_` + canary + `","type":"invoice.paid","data":{"object":{"email":"` + canaryEmail),
		"signed, a bad value naming canary":    signedNow(`{"id":"evt_1","object":"event","type":"invoice.paid","livemode":"` + canary + `","data":{"object":{}}}`),
		"signed, an object that is no invoice": signedNow(`{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":{"object":"` + canary + `","id":"` + canaryEmail + `"}}}`),
		"signed, a bad field in the invoice":   signedNow(`{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":{"object":"invoice","id":"in_1","customer_email":["` + canaryEmail + `"],"amount_paid":"` + canary + `"}}}`),
		"invalid base64 with the canary":       b64(stripe(canary+"!!!"+canaryEmail, "t=1,v1=00")),
		"over 1 MiB of canaries":               stripe(strings.Repeat(canary, httpx.MaxBody/len(canary)+1), ""),
	}
	rfCases := map[string]events.LambdaFunctionURLRequest{
		"canary as the secret":                rfRequest("lead-created", "application/json", `{"code":"x"}`, map[string]string{"X-Webhook-Secret": canary}),
		"canary email as the secret":          rfRequest("lead-created", "application/json", `{"code":"x"}`, map[string]string{"X-Webhook-Secret": canaryEmail}),
		"canary as the kind":                  rfRequest(canary, "application/json", `{"code":"x"}`, auth),
		"canary where JSON expects a value":   rfRequest("lead-created", "application/json", `{"code": `+canary+`}`, auth),
		"canary in a bad string escape":       rfRequest("lead-created", "application/json", `{"code":"\`+canary+`"}`, auth),
		"canary after a bad percent-encoding": rfRequest("lead-created", "application/x-www-form-urlencoded", "code=%zz"+canary+"&email="+canaryEmail, auth),
		"canary in names refbridge skips":     rfRequest("lead-created", "application/json", `{"data":{"user":{"code":"`+canary+`","email":"`+canaryEmail+`"}},"`+canary+`":"`+canaryEmail+`"}`, auth),
		"canary as the content type":          rfRequest("lead-created", "application/"+canary, `{`+canary, auth),
		"canary as the reward id":             rfRequest("reward-issued", "application/json", `{"code":"`+canary+`","email":"`+canaryEmail+`","reward_issued_id":"`+canary+`"}`, auth),
		"invalid base64 with the canary":      b64(rfRequest("lead-created", "application/json", canary+"!!!"+canaryEmail, auth)),
		"over 1 MiB of canaries":              rfRequest("lead-created", "application/json", strings.Repeat(canary, httpx.MaxBody/len(canary)+1), auth),
	}
	w := newWorld(t)
	seq := w.lastCall()
	before := w.snapshot(t)
	check := func(name string, invoke func(context.Context, events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error), ev events.LambdaFunctionURLRequest) {
		resp, err := invoke(context.Background(), ev)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if resp.StatusCode < 400 {
			t.Errorf("%s: %d %s, want an error answer", name, resp.StatusCode, resp.Body)
		}
		var body struct{ Error string }
		if err := json.Unmarshal([]byte(resp.Body), &body); err != nil || !slices.Contains(refusals(), body.Error) {
			t.Errorf("%s: %s is not one of refbridge's own refusals", name, resp.Body)
		}
		low := strings.ToLower(resp.Body)
		if strings.Contains(low, strings.ToLower(canary)) || strings.Contains(low, "canary") || strings.Contains(resp.Body, "@") {
			t.Errorf("%s: the answer echoes the input: %s", name, resp.Body)
		}
	}
	for name, ev := range stripeCases {
		check("stripe: "+name, w.stripe, ev)
	}
	for name, ev := range rfCases {
		check("rf: "+name, w.rf, ev)
	}
	if calls := w.calls(seq); len(calls) != 0 {
		t.Errorf("refused requests called RF: %v", calls)
	}
	if diff := changed(before, w.snapshot(t)); len(diff) != 0 {
		t.Errorf("refused requests wrote %v", diff)
	}
	if logs := strings.ToLower(w.logs.String()); strings.Contains(logs, "canary.person") {
		t.Errorf("the logs hold the canary email unmasked")
	}
}
