package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/sweep"
	"github.com/refbridge/refbridge/shared/wiring"
)

// env is the local configuration of a test: the simulator as RF, in-memory state, no hold.
func env(sim *rfsimtest.Sim, extra map[string]string) func(string) string {
	vars := map[string]string{
		"RF_API_URL": sim.URL, "RF_API_TOKEN": sim.Token, "RF_CAMPAIGN_IDS": "1",
		"RF_WEBHOOK_SECRET": "local-secret", "REWARD_HOLD_DAYS": "0", "AWS_REGION": "us-east-1",
	}
	for k, v := range extra {
		vars[k] = v
	}
	return func(k string) string { return vars[k] }
}

func post(t *testing.T, url string, hdr map[string]string, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", url, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestServerRoutes(t *testing.T) {
	sim := rfsimtest.New(t)
	sim.SeedDemo(t)
	d, err := wiring.Local(t.Context(), env(sim, nil), logtest.Writer(t), config.Need{RFAPIToken: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(routes(d))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()

	// RF's webhook, through the same handler as the Lambda: the secret is checked.
	lead := `{"id": 5, "email": "erin@example.com"}`
	if status, _ := post(t, srv.URL+"/rf/webhook/lead-created", nil, lead); status != 401 {
		t.Fatalf("no secret: %d", status)
	}
	status, body := post(t, srv.URL+"/rf/webhook/lead-created", map[string]string{"X-Webhook-Secret": "local-secret", "Content-Type": "application/json"}, lead)
	if status != 200 || !strings.Contains(string(body), `"processed"`) {
		t.Fatalf("lead-created: %d %s", status, body)
	}
	// Stripe's route answers bad signatures as the Lambda does.
	if status, _ := post(t, srv.URL+"/stripe/webhook", nil, `{}`); status != 400 {
		t.Fatalf("unsigned stripe event: %d", status)
	}

	// POST /sweep runs the same sweep as the Lambda: a dry run first, then for real.
	status, body = post(t, srv.URL+"/sweep", nil, `{"dry_run": true}`)
	var sum sweep.Summary
	if err := json.Unmarshal(body, &sum); status != 200 || err != nil || !sum.DryRun || sum.WouldIssue != 2 || sum.Issued != 0 {
		t.Fatalf("dry sweep: %d %s", status, body)
	}
	status, body = post(t, srv.URL+"/sweep", nil, "")
	if err := json.Unmarshal(body, &sum); status != 200 || err != nil || sum.Issued != 2 || !sum.Complete {
		t.Fatalf("sweep: %d %s", status, body)
	}
	if status, body := post(t, srv.URL+"/sweep", nil, `{"dry_run": "yes"`); status != 400 || !strings.Contains(string(body), "error") {
		t.Fatalf("malformed body: %d %s", status, body)
	}
	if status, _ := post(t, srv.URL+"/nowhere", nil, ""); status != 404 {
		t.Fatalf("unknown path: %d", status)
	}
}

func TestSweepCommand(t *testing.T) {
	sim := rfsimtest.New(t)
	sim.SeedDemo(t)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"sweep", "-dry-run"}, env(sim, nil), &out, io.MultiWriter(&errb, logtest.Writer(t))); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var sum sweep.Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil || !sum.DryRun || sum.WouldIssue != 2 || sum.Listed != 2 {
		t.Fatalf("summary %s (%v)", out.String(), err)
	}
	if n := len(sim.Server.IssuedRewards("amount")) + len(sim.Server.IssuedRewards("coupon")); n != 1 {
		t.Fatalf("a dry run changed RF: %d issued rewards, the seed has 1", n)
	}

	for _, tt := range []struct {
		args []string
		env  map[string]string
		code int
		want string
	}{
		{nil, nil, 2, "usage"},
		{[]string{"launch"}, nil, 2, "unknown command"},
		{[]string{"sweep", "-bogus"}, nil, 2, "bogus"},
		{[]string{"sweep", "extra"}, nil, 2, "unexpected arguments"},
		{[]string{"sweep"}, map[string]string{"RF_API_TOKEN": ""}, 1, "RF_API_TOKEN"},
		{[]string{"sweep"}, map[string]string{"REWARD_HOLD_DAYS": "soon"}, 1, "REWARD_HOLD_DAYS"},
	} {
		out.Reset()
		errb.Reset()
		if code := run(context.Background(), tt.args, env(sim, tt.env), &out, &errb); code != tt.code || !strings.Contains(errb.String(), tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args, code, errb.String(), tt.code, tt.want)
		}
	}
}

// serve -rf-sim: the simulator's own webhooks reach the server, and send delivers samples.
func TestServeWithSimulatorAndSend(t *testing.T) {
	getenv := func(k string) string {
		return map[string]string{"STRIPE_WEBHOOK_SECRETS": "whsec_local_test", "AWS_REGION": "us-east-1"}[k]
	}
	s, err := startServer(t.Context(), "127.0.0.1:0", true, getenv, logtest.Writer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serveOn(ctx, s.ln, routes(s.deps)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + s.ln.Addr().String()
	var banner bytes.Buffer
	s.banner(&banner)
	if !strings.Contains(banner.String(), s.sim.URL) || !strings.Contains(banner.String(), base+"/stripe/webhook") {
		t.Fatalf("banner:\n%s", banner.String())
	}

	// A lead created in the simulator: its lead-created webhook reaches refbridge, which records it.
	gus, err := s.sim.CreateUser(rfsim.NewUser{CampaignID: 1, FirstName: "Gus", Email: "gus@example.com",
		Referrer: &rfsim.ReferrerRef{Field: "code", Value: "aLiCeRef"}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	if err := s.sim.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	if l, err := s.deps.Ledger.LeadByID(t.Context(), int64(gus.ID)); err != nil || l.ReferrerID != 1 {
		t.Fatalf("the simulator's webhook did not record Gus: %+v %v", l, err)
	}
	for _, d := range s.sim.Deliveries() {
		if d.Status != 200 {
			t.Fatalf("delivery %+v", d)
		}
	}

	// send signs a Stripe sample with the configured secret; Erin is matched by email in RF.
	sendEnv := func(k string) string {
		return map[string]string{"STRIPE_WEBHOOK_SECRETS": "whsec_local_test", "RF_WEBHOOK_SECRET": s.deps.Config.RFWebhookSecrets[0]}[k]
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"send", "-url", base, "../../events/stripe/invoice.paid.2024-06-20.json"}, 0, "qualified"},
		{[]string{"send", "-url", base, "../../events/stripe/invoice.paid.2024-06-20.json"}, 0, "duplicate"},
		{[]string{"send", "-url", base, "-new-id", "../../events/stripe/invoice.paid.2024-06-20.json"}, 0, "invoice already counted"}, // a new event, the same invoice
		// Fay checks out with Alice's code: her lead is created in the signup campaign (the
		// first of RF_CAMPAIGN_IDS); her customer's own event then finds it known.
		{[]string{"send", "-url", base, "../../events/stripe/checkout.session.completed.2024-06-20.json"}, 0, `"processed","reason":"created: lead`},
		{[]string{"send", "-url", base, "../../events/stripe/customer.created.2024-06-20.json"}, 0, `"processed","reason":"already_known`},
		{[]string{"send", "-url", base, "../../events/rf/lead-qualified.form"}, 0, "POST /rf/webhook/lead-qualified → 200"},
		{[]string{"send", "-url", base, "../../events/sweep/dry-run.json"}, 0, `"dry_run":true`},
		{[]string{"send", "-url", base, "../../go.mod"}, 2, ""},
		{[]string{"send", "-url", base}, 2, ""},
	} {
		var out, errb bytes.Buffer
		code := run(t.Context(), tt.args, sendEnv, &out, &errb)
		if code != tt.code || !strings.Contains(out.String(), tt.want) {
			t.Errorf("%v: exit %d\n%s%s", tt.args[3:], code, out.String(), errb.String())
		}
	}
	// Without the secret, send refuses before sending anything.
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"send", "-url", base, "../../events/stripe/invoice.paid.2024-06-20.json"},
		func(string) string { return "" }, &out, &errb); code != 1 || !strings.Contains(errb.String(), "STRIPE_WEBHOOK_SECRETS") {
		t.Errorf("no secret: exit %d %s", code, errb.String())
	}
}

// The demo tells the whole story and ends in the right state: the refunded referral's reward
// canceled, every other one issued after its hold, nothing issued twice.
func TestDemo(t *testing.T) {
	var out, errb bytes.Buffer
	// -v: refbridge's logs go to stderr, and so to the suite's log scan.
	if code := run(t.Context(), []string{"demo", "-v"}, func(string) string { return "" }, &out, io.MultiWriter(&errb, logtest.Writer(t))); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	text := out.String()
	for _, want := range []string{
		"POST /stripe/webhook → 200 processed: created: lead 6 created in campaign 1, credited to referrer 1",
		"POST /rf/webhook/lead-created → 200 processed",
		"POST /stripe/webhook → 200 processed: qualified",
		"POST /stripe/webhook → 200 processed: unqualified",
		"sweep: 5 due rewards listed, 0 issued, 1 canceled",
		"sweep: 4 due rewards listed, 4 issued, 0 canceled",
		"Fay   Alice     pending               qualified, then reversed",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
	rows := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[0], "#") {
			rows[f[0]] = line
		}
	}
	for id, want := range map[string]string{"#1": "Issued", "#3": "Issued", "#4": "Issued", "#5": "Issued", "#6": "Canceled"} {
		if !strings.Contains(rows[id], want) {
			t.Errorf("reward %s: %q, want %s", id, rows[id], want)
		}
	}
	if strings.Contains(errb.String(), "@example.com") {
		t.Errorf("the demo printed an email on stderr")
	}
	if t.Failed() {
		t.Log(text)
	}
}

// A webhook secret the user configured is never printed; one serve made up for the session is.
func TestBannerNeverPrintsAConfiguredSecret(t *testing.T) {
	getenv := func(k string) string {
		return map[string]string{"RF_WEBHOOK_SECRET": "users-own-webhook-secret", "AWS_REGION": "us-east-1"}[k]
	}
	s, err := startServer(t.Context(), "127.0.0.1:0", true, getenv, logtest.Writer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var banner bytes.Buffer
	s.banner(&banner)
	if strings.Contains(banner.String(), "users-own-webhook-secret") || !strings.Contains(banner.String(), "your RF_WEBHOOK_SECRET") {
		t.Fatalf("banner:\n%s", banner.String())
	}
}
