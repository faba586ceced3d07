package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stripe/stripe-go/v79/webhook"

	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/lambdaruntime"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/sweep"
)

// The secrets the functions are given; none may ever reach a log.
const (
	stripeSecret = "whsec_refbridge_runtime_test"
	rfHookSecret = "rf-runtime-webhook-secret-3f9a"
)

// timeout is a generous invocation timeout for the tests that are not about deadlines.
const timeout = 30 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	lambdaruntime.RemoveBuilds()
	os.Exit(code)
}

// world is what a function runs against: a fresh DynamoDB Local table and a simulator seeded
// with the demo campaign, and the environment that points a function at them.
type world struct {
	sim    *rfsimtest.Sim
	ledger ledger.Store
	env    map[string]string
}

func newWorld(t *testing.T) world {
	t.Helper()
	db, table := ddbtest.Table(t)
	sim := rfsimtest.New(t)
	sim.SeedDemo(t)
	return world{sim: sim, ledger: ledger.NewDynamo(db, table), env: map[string]string{
		"STATE_TABLE": table,
		// The SDK's own endpoint variable, as a deployment would set it; ddbtest keeps tests
		// on loopback.
		"AWS_ENDPOINT_URL_DYNAMODB": os.Getenv(ddbtest.EndpointEnv),
		"AWS_ACCESS_KEY_ID":         "local",
		"AWS_SECRET_ACCESS_KEY":     "local",
		"AWS_REGION":                "us-east-1",
		"RF_API_URL":                sim.URL,
		"RF_API_TOKEN":              sim.Token,
		"RF_CAMPAIGN_IDS":           "1",
		"STRIPE_WEBHOOK_SECRETS":    stripeSecret,
		"RF_WEBHOOK_SECRET":         rfHookSecret,
		"RF_WEBHOOK_FIELDS":         "code=referral_code",
	}}
}

// start runs a function's bootstrap with env changed by extra (an empty value removes a
// setting). When the test ends the process is stopped and its logs checked (checkLogs).
func start(t *testing.T, fn string, env map[string]string, extra map[string]string) *lambdaruntime.Runtime {
	t.Helper()
	vars := map[string]string{}
	for _, m := range []map[string]string{env, extra} {
		for k, v := range m {
			vars[k] = v
		}
	}
	rt := lambdaruntime.Start(t, lambdaruntime.Build(t, "./functions/"+fn), vars)
	secrets := []string{stripeSecret, rfHookSecret, env["RF_API_TOKEN"]}
	t.Cleanup(func() {
		rt.Stop()
		checkLogs(t, fn, rt.Logs(), secrets)
	})
	return rt
}

// checkLogs requires a function's whole log to be JSON lines — slog records (time, level, msg),
// aws-lambda-go's error reports and the SDK's warnings included, or EMF metric lines (_aws) —
// holding no secret and no email address (every fixture's emails are @example.com).
func checkLogs(t *testing.T, fn, logs string, secrets []string) {
	t.Helper()
	if logs != "" && !strings.HasSuffix(logs, "\n") {
		logs += "\n"
	}
	_, _ = io.WriteString(logtest.Writer(t), logs) // and the suite's log scan reads them too
	if strings.TrimSpace(logs) == "" {
		t.Errorf("%s logged nothing", fn)
	}
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		var rec struct {
			Time  *time.Time     `json:"time"`
			Level string         `json:"level"`
			Msg   *string        `json:"msg"`
			EMF   map[string]any `json:"_aws"`
		}
		err := json.Unmarshal([]byte(line), &rec)
		if err != nil || (rec.EMF == nil && (rec.Time == nil || rec.Level == "" || rec.Msg == nil)) {
			t.Errorf("%s log line %d is neither slog JSON nor an EMF line: %s", fn, n, line)
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				t.Errorf("%s log line %d holds a secret: %s", fn, n, line)
			}
		}
		if strings.Contains(line, "@example.com") {
			t.Errorf("%s log line %d holds an email address: %s", fn, n, line)
		}
	}
}

// urlEvent is a Lambda Function URL event, as Lambda delivers an HTTP request to a function.
func urlEvent(t *testing.T, path string, headers map[string]string, body []byte) []byte {
	t.Helper()
	now := time.Now()
	h := map[string]string{
		"content-type":      "application/json",
		"host":              "abcdefghij.lambda-url.us-east-1.on.aws",
		"x-forwarded-proto": "https",
		"x-forwarded-for":   "203.0.113.7",
	}
	for k, v := range headers {
		h[strings.ToLower(k)] = v
	}
	ev := events.LambdaFunctionURLRequest{
		Version: "2.0",
		RawPath: path,
		Headers: h,
		Body:    string(body),
		RequestContext: events.LambdaFunctionURLRequestContext{
			AccountID:  "anonymous",
			RequestID:  "3c1f4e2a-0b7d-4f55-9c1e-6d2a8b9e0f11",
			DomainName: h["host"],
			APIID:      "abcdefghij",
			Time:       now.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			TimeEpoch:  now.UnixMilli(),
			HTTP: events.LambdaFunctionURLRequestContextHTTPDescription{
				Method: "POST", Path: path, Protocol: "HTTP/1.1", SourceIP: "203.0.113.7", UserAgent: h["user-agent"],
			},
		},
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// answer is a Function URL response and its decoded body.
type answer struct {
	Status int
	Body   struct{ Status, Reason, Error string }
	Result lambdaruntime.Result
}

func call(t *testing.T, rt *lambdaruntime.Runtime, event []byte, timeout time.Duration) answer {
	t.Helper()
	res, err := rt.Invoke(t.Context(), event, timeout)
	if err != nil {
		t.Fatal(err)
	}
	if res.Error != nil {
		t.Fatalf("function error: %v", res.Error)
	}
	var resp events.LambdaFunctionURLResponse
	if err := json.Unmarshal(res.Payload, &resp); err != nil {
		t.Fatalf("not a Function URL response: %s", res.Payload)
	}
	a := answer{Status: resp.StatusCode, Result: res}
	if resp.Headers["Content-Type"] != "application/json" || json.Unmarshal([]byte(resp.Body), &a.Body) != nil {
		t.Fatalf("response %s", res.Payload)
	}
	return a
}

func fixture(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"..", "..", "events"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stripeEvent is payload delivered to the stripe-webhook Function URL, signed now with secret.
func stripeEvent(t *testing.T, payload []byte, secret string) []byte {
	t.Helper()
	sig := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: time.Now()})
	return urlEvent(t, "/", map[string]string{
		"stripe-signature": sig.Header,
		"content-type":     "application/json; charset=utf-8",
		"user-agent":       "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
	}, payload)
}

func TestStripeWebhook(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	rt := start(t, "stripe-webhook", w.env, nil)
	paid := fixture(t, "stripe", "invoice.paid.2024-06-20.json")

	// Erin (user 5, referred by Bob) pays her first invoice: she qualifies in RF.
	a := call(t, rt, stripeEvent(t, paid, stripeSecret), timeout)
	if a.Status != 200 || a.Body.Status != "processed" || !strings.HasPrefix(a.Body.Reason, "qualified") {
		t.Fatalf("invoice.paid: %d %+v", a.Status, a.Body)
	}
	if erin, ok := w.sim.Server.User(5); !ok || erin.QualifiedAt == nil {
		t.Fatalf("Erin is not qualified in RF: %+v", erin)
	}
	// Stripe delivers the event again: answered from the idempotency record.
	if a := call(t, rt, stripeEvent(t, paid, stripeSecret), timeout); a.Status != 200 || a.Body.Status != "duplicate" {
		t.Fatalf("redelivery: %d %+v", a.Status, a.Body)
	}
	// Signed with another secret: refused.
	if a := call(t, rt, stripeEvent(t, paid, "whsec_someone_else"), timeout); a.Status != 400 || a.Body.Error == "" {
		t.Fatalf("bad signature: %d %+v", a.Status, a.Body)
	}
	// Fay checks out with Alice's code: her lead is created in the signup campaign (the first
	// of RF_CAMPAIGN_IDS, no RF_SIGNUP_CAMPAIGN_ID set), credited to Alice (user 1).
	checkout := fixture(t, "stripe", "checkout.session.completed.2024-06-20.json")
	if a := call(t, rt, stripeEvent(t, checkout, stripeSecret), timeout); a.Status != 200 || !strings.HasPrefix(a.Body.Reason, "created") {
		t.Fatalf("checkout.session.completed: %d %+v", a.Status, a.Body)
	}
	var fay rfsim.User
	for _, u := range w.sim.Server.Users() {
		if u.Email == "fay@example.com" {
			fay = u
		}
	}
	if fay.Type != "person_invited" || fay.ReferrerID == nil || *fay.ReferrerID != 1 || fay.CampaignID != 1 {
		t.Fatalf("Fay in RF: %+v", fay)
	}
}

func TestRFWebhook(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	// events/rf/lead-created.json is Fay, user 6, referred by Alice: add her to the demo.
	seed := rfsimtest.DemoSeed(t)
	seed.Users = append(seed.Users, rfsim.SeedUser{ID: 6, CampaignID: 1, Code: "fAyLiNrf", FirstName: "Fay",
		Email: "fay@example.com", ReferrerCode: "aLiCeRef"})
	w.sim.MustSeed(t, seed)
	rt := start(t, "rf-webhook", w.env, nil)
	body := fixture(t, "rf", "lead-created.json")

	if a := call(t, rt, urlEvent(t, "/rf/webhook/lead-created", map[string]string{"x-webhook-secret": "guess"}, body), timeout); a.Status != 401 {
		t.Fatalf("wrong secret: %d %+v", a.Status, a.Body)
	}
	if _, err := w.ledger.LeadByCode(t.Context(), "fAyLiNrf"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("a refused delivery recorded the lead: %v", err)
	}
	a := call(t, rt, urlEvent(t, "/rf/webhook/lead-created", map[string]string{"x-webhook-secret": rfHookSecret}, body), timeout)
	if a.Status != 200 || a.Body.Status != "processed" {
		t.Fatalf("lead-created: %d %+v", a.Status, a.Body)
	}
	// The bootstrap wrote to the table the test reads.
	if lead, err := w.ledger.LeadByCode(t.Context(), "fAyLiNrf"); err != nil || lead.ID != 6 || lead.ReferrerID != 1 {
		t.Fatalf("lead in the ledger: %+v %v", lead, err)
	}
}

func TestRewardSweep(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	rt := start(t, "reward-sweep", w.env, map[string]string{"REWARD_HOLD_DAYS": "0"})
	issued := func() int {
		return len(w.sim.Server.IssuedRewards("amount")) + len(w.sim.Server.IssuedRewards("coupon"))
	}
	seeded := issued()
	run := func(payload []byte) sweep.Summary {
		t.Helper()
		res, err := rt.Invoke(t.Context(), payload, timeout)
		if err != nil || res.Error != nil {
			t.Fatalf("sweep: %v %v", err, res.Error)
		}
		var sum sweep.Summary
		if err := json.Unmarshal(res.Payload, &sum); err != nil {
			t.Fatalf("summary %s: %v", res.Payload, err)
		}
		return sum
	}

	// A rehearsal: the demo's two due rewards (Alice's $25 for Dave, Erin's join coupon) would
	// be issued, and nothing is.
	if sum := run(fixture(t, "sweep", "dry-run.json")); !sum.Complete || !sum.DryRun || sum.WouldIssue != 2 || sum.Issued != 0 {
		t.Fatalf("dry run: %+v", sum)
	}
	if n := issued(); n != seeded {
		t.Fatalf("the dry run issued %d rewards", n-seeded)
	}
	// What the schedule sends: with no hold, both are issued.
	if sum := run(fixture(t, "sweep", "schedule.json")); !sum.Complete || sum.DryRun || sum.Issued != 2 || sum.Failed != 0 {
		t.Fatalf("scheduled run: %+v", sum)
	}
	if n := issued(); n != seeded+2 || len(w.sim.Server.DueRewards("amount"))+len(w.sim.Server.DueRewards("coupon")) != 0 {
		t.Fatalf("RF: %d issued, due %+v %+v", n-seeded, w.sim.Server.DueRewards("amount"), w.sim.Server.DueRewards("coupon"))
	}
}

// A function missing a required setting must not start, and must say which setting.
func TestInitFailsNamingTheMissingSetting(t *testing.T) {
	t.Parallel()
	// Init fails before any call, so nothing needs to listen at these addresses.
	env := map[string]string{
		"STATE_TABLE":            "refbridge-state",
		"RF_API_URL":             "http://127.0.0.1:9/api/v2",
		"RF_API_TOKEN":           "rf_token_never_logged",
		"STRIPE_WEBHOOK_SECRETS": stripeSecret,
		"RF_WEBHOOK_SECRET":      rfHookSecret,
		"AWS_ACCESS_KEY_ID":      "local",
		"AWS_SECRET_ACCESS_KEY":  "local",
	}
	tests := []struct{ fn, missing string }{
		{"stripe-webhook", "STRIPE_WEBHOOK_SECRETS"},
		{"stripe-webhook", "RF_API_TOKEN"},
		{"stripe-webhook", "STATE_TABLE"},
		{"rf-webhook", "RF_WEBHOOK_SECRET"},
		{"rf-webhook", "RF_API_TOKEN"},
		{"rf-webhook", "STATE_TABLE"},
		{"reward-sweep", "RF_API_TOKEN"},
		{"reward-sweep", "STATE_TABLE"},
	}
	for _, tt := range tests {
		t.Run(tt.fn+" without "+tt.missing, func(t *testing.T) {
			t.Parallel()
			rt := start(t, tt.fn, env, map[string]string{tt.missing: ""})
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			f, err := rt.InitError(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// What the mains do today: log the error and os.Exit(1) before lambda.Start, so
			// nothing is posted to /runtime/init/error (aws-lambda-go never posts there) and
			// Lambda reports Runtime.ExitError; only the log line says why.
			if f.Error != nil || f.ExitCode != 1 {
				t.Fatalf("init ended with %+v (posted %v)", f, f.Error)
			}
			rt.Stop()
			if !loggedStartError(rt.Logs(), tt.fn, tt.missing) {
				t.Fatalf("no error log line naming %s:\n%s", tt.missing, rt.Logs())
			}
		})
	}
}

// loggedStartError reports whether logs hold the main's "<fn> cannot start" error line naming
// the setting.
func loggedStartError(logs, fn, setting string) bool {
	for _, line := range strings.Split(logs, "\n") {
		var rec struct{ Level, Msg, Error string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == "ERROR" && rec.Msg == fn+" cannot start" &&
			strings.Contains(rec.Error, setting) {
			return true
		}
	}
	return false
}

// An invocation whose Referral Factory calls hang must still answer before its deadline, as
// Lambda would otherwise kill it and report a timeout.
func TestAnswersBeforeTheDeadline(t *testing.T) {
	t.Parallel()
	// Long enough that the functions' own margins (a tenth of the time left, up to two
	// seconds: 1.5 s here) are well above a loaded machine's delays: at 6 s (0.6 s), with the
	// race detector and DynamoDB Local on two busy cores, saving the failure and answering took
	// up to 0.95 s after the work's deadline.
	const short = 15 * time.Second
	tests := []struct {
		name  string
		fn    string
		fault rfsim.Fault
		event func(t *testing.T) []byte
		check func(t *testing.T, res lambdaruntime.Result)
	}{
		{"reward-sweep while RF's due lists hang", "reward-sweep",
			rfsim.Fault{Match: "GET /api/v2/rewards/due/", Latency: time.Minute},
			func(t *testing.T) []byte { return fixture(t, "sweep", "schedule.json") },
			func(t *testing.T, res lambdaruntime.Result) {
				// A summary or an error: either way an answer, and no reward touched.
				var sum sweep.Summary
				if res.Error == nil && (json.Unmarshal(res.Payload, &sum) != nil || sum.Complete) {
					t.Errorf("answer %s", res.Payload)
				}
			}},
		{"stripe-webhook while RF hangs", "stripe-webhook",
			rfsim.Fault{Match: "*", Latency: time.Minute},
			func(t *testing.T) []byte {
				return stripeEvent(t, fixture(t, "stripe", "invoice.paid.2024-06-20.json"), stripeSecret)
			},
			func(t *testing.T, res lambdaruntime.Result) {
				var resp events.LambdaFunctionURLResponse
				if res.Error != nil || json.Unmarshal(res.Payload, &resp) != nil || resp.StatusCode != 503 {
					t.Errorf("answer %s (error %v), want a 503", res.Payload, res.Error)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			if _, err := w.sim.Server.AddFault(tt.fault); err != nil {
				t.Fatal(err)
			}
			rt := start(t, tt.fn, w.env, nil)
			res, err := rt.Invoke(t.Context(), tt.event(t), short)
			if err != nil {
				t.Fatal(err) // ErrTimedOut: not answered by the deadline (and a second of grace)
			}
			if margin := res.Deadline.Sub(res.Answered).Round(time.Millisecond); margin >= 0 {
				t.Logf("answered %s before the deadline", margin)
			} else {
				t.Logf("answered %s after the deadline: Lambda would have reported a timeout", -margin)
			}
			// After the deadline, Lambda reports a timeout and the answer is lost.
			if late := res.Answered.Sub(res.Deadline); late > 0 {
				t.Errorf("answered %s after the deadline", late)
			}
			tt.check(t, res)
		})
	}
}
