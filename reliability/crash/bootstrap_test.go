package crash

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/lambdaruntime"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/sweep"
)

// rfHookSecret is rf-webhook's shared secret (unused here, required by the configuration); one of
// logtest.Secrets.
const rfHookSecret = "rf-shared-secret"

// bootEnv is the environment that points a real bootstrap at the world's table and simulator.
func bootEnv(w *world) map[string]string {
	return map[string]string{
		"STATE_TABLE":               w.table,
		"AWS_ENDPOINT_URL_DYNAMODB": os.Getenv(ddbtest.EndpointEnv),
		"AWS_ACCESS_KEY_ID":         "local",
		"AWS_SECRET_ACCESS_KEY":     "local",
		"AWS_REGION":                "us-east-1",
		"RF_API_URL":                w.sim.URL,
		"RF_API_TOKEN":              w.sim.Token,
		"RF_CAMPAIGN_IDS":           "1",
		"QUALIFY_MIN_AMOUNT":        "2000",
		"STRIPE_WEBHOOK_SECRETS":    stripeSecret,
		"RF_WEBHOOK_SECRET":         rfHookSecret,
	}
}

// start runs a function's real bootstrap (one Lambda execution environment) with env changed by
// extra. When the test ends the process is stopped and its whole log checked: JSON lines, no
// secret, no email address; the suite's log scan reads it too.
func start(t *testing.T, fn string, env, extra map[string]string) *lambdaruntime.Runtime {
	t.Helper()
	vars := map[string]string{}
	for _, m := range []map[string]string{env, extra} {
		for k, v := range m {
			vars[k] = v
		}
	}
	rt := lambdaruntime.Start(t, lambdaruntime.Build(t, "./functions/"+fn), vars)
	t.Cleanup(func() {
		rt.Stop()
		checkLogs(t, fn, rt.Logs(), []string{stripeSecret, rfHookSecret, env["RF_API_TOKEN"]})
	})
	return rt
}

func checkLogs(t *testing.T, fn, logs string, secrets []string) {
	t.Helper()
	if logs != "" && !strings.HasSuffix(logs, "\n") {
		logs += "\n"
	}
	_, _ = io.WriteString(logtest.Writer(t), logs)
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("%s log line %d is not JSON: %s", fn, n, line)
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				t.Errorf("%s log line %d holds a secret: %s", fn, n, line)
			}
		}
		if strings.Contains(strings.ToLower(line), "@example.com") {
			t.Errorf("%s log line %d holds an email address: %s", fn, n, line)
		}
	}
}

// urlEvent is payload, signed now, as a Lambda Function URL event of Stripe's delivery.
func urlEvent(t *testing.T, payload []byte) []byte {
	t.Helper()
	ev := signed(payload)
	ev.Version, ev.RawPath = "2.0", "/"
	ev.RequestContext.HTTP.Path = "/"
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// invokeURL invokes a stripe-webhook bootstrap with a Stripe delivery and decodes its answer.
func invokeURL(t *testing.T, rt *lambdaruntime.Runtime, payload []byte, timeout time.Duration) reply {
	t.Helper()
	res, err := rt.Invoke(t.Context(), urlEvent(t, payload), timeout)
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
	r := reply{Code: resp.StatusCode}
	if err := json.Unmarshal([]byte(resp.Body), &r); err != nil {
		t.Fatalf("answer %q: %v", resp.Body, err)
	}
	return r
}

// invokeSweep invokes a reward-sweep bootstrap with the schedule's payload.
func invokeSweep(t *testing.T, rt *lambdaruntime.Runtime, timeout time.Duration) (sweep.Summary, *lambdaruntime.FunctionError) {
	t.Helper()
	res, err := rt.Invoke(t.Context(), []byte(`{}`), timeout)
	if err != nil {
		t.Fatal(err)
	}
	if res.Error != nil {
		return sweep.Summary{}, res.Error
	}
	var sum sweep.Summary
	if err := json.Unmarshal(res.Payload, &sum); err != nil {
		t.Fatalf("summary %s: %v", res.Payload, err)
	}
	return sum, nil
}

// warm lets a bootstrap finish its cold start with an invocation that touches no state: a
// Stripe event of a type stripe-webhook does not handle, or a sweep payload aws-lambda-go
// refuses before the handler runs. The crash then happens in a warm execution environment,
// well before its deadline however loaded the machine is.
func warm(t *testing.T, fn string, rt *lambdaruntime.Runtime) {
	t.Helper()
	if fn == "reward-sweep" {
		res, err := rt.Invoke(t.Context(), []byte(`"warm up"`), 30*time.Second)
		if err != nil || res.Error == nil {
			t.Fatalf("warm-up: %+v %v, want a function error", res, err)
		}
		return
	}
	var ev map[string]any
	if err := json.Unmarshal(fixture(t, evInvoicePaid), &ev); err != nil {
		t.Fatal(err)
	}
	ev["id"], ev["type"] = "evt_warm_up", "invoice.created"
	b, _ := json.Marshal(ev)
	if r := invokeURL(t, rt, b, 30*time.Second); r.Code != 200 || r.Status != "ignored" {
		t.Fatalf("warm-up: %s, want 200 ignored", r)
	}
}

// bootCase is one crash of a real bootstrap: faults[0] makes RF apply a call and lose its
// answer; faults[1] hangs the process's next RF call, and the process is killed (SIGKILL, as
// Lambda ends a sandbox) while it waits in that call.
type bootCase struct {
	name   string
	fn     string // stripe-webhook or reward-sweep
	extra  map[string]string
	setup  func(t *testing.T, w *world)
	event  string // stripe-webhook: the event whose delivery is killed
	faults [2]rfsim.Fault
	check  func(t *testing.T, w *world, since int, b boundary)
}

var (
	putLost  = rfsim.Fault{Match: "PUT " + routeQualify, Status: 502, When: rfsim.WhenAfter, Count: 1}
	putHangs = rfsim.Fault{Match: "PUT " + routeQualify, Latency: time.Minute, Count: 1}
	// The sweep lists metrics in order (amount, commission, coupon, custom): once the amount
	// rewards are handled, it lists commission.
	commissionHangs = rfsim.Fault{Match: "GET /api/v2/rewards/due/commission", Latency: time.Minute, Count: 1}
)

var bootCases = []bootCase{
	{name: "invoice.paid → qualify: PUT applied, answer lost, killed in the retry", fn: "stripe-webhook",
		event: evInvoicePaid, faults: [2]rfsim.Fault{putLost, putHangs}, check: checkQualified(1)},
	{name: "charge.refunded → unqualify: PUT applied, answer lost, killed in the retry", fn: "stripe-webhook",
		setup: func(t *testing.T, w *world) { mustDeliver(t, w, evInvoicePaid, "processed") },
		event: evRefund, faults: [2]rfsim.Fault{putLost, putHangs}, check: checkUnqualified},
	{name: "charge.dispute.closed (won) → requalify: PUT applied, answer lost, killed in the retry", fn: "stripe-webhook",
		setup: func(t *testing.T, w *world) {
			mustDeliver(t, w, evInvoicePaid, "processed")
			mustDeliver(t, w, evDisputeCreated, "processed")
		},
		event: evDisputeWon, faults: [2]rfsim.Fault{putLost, putHangs}, check: checkQualified(2)},
	{name: "checkout.session.completed → create lead: POST applied, answer lost, killed in the search", fn: "stripe-webhook",
		event: evCheckoutSignup, check: checkSignup, faults: [2]rfsim.Fault{
			{Match: "POST " + routeCreateUser, Status: 502, When: rfsim.WhenAfter, Count: 1},
			{Match: "POST /api/v2/users/search", Latency: time.Minute, Count: 1}}},
	{name: "reward sweep → issue: POST applied, answer lost, killed in the next listing", fn: "reward-sweep",
		extra: map[string]string{"REWARD_HOLD_DAYS": "14", "REWARD_ISSUE_ALLOW_METRICS": "amount"},
		setup: qualifyErin, check: checkSettled(ledger.IntentIssue), faults: [2]rfsim.Fault{
			{Match: "POST " + routeIssuePrefix + "{id}", Status: 502, When: rfsim.WhenAfter, Count: 1}, commissionHangs}},
	{name: "reward sweep → cancel: POST applied, answer lost, killed in the next listing", fn: "reward-sweep",
		extra: map[string]string{"REWARD_HOLD_DAYS": "14"},
		setup: func(t *testing.T, w *world) {
			qualifyErin(t, w)
			if _, err := w.ledger.Reverse(context.Background(), ledger.QualificationRef{LeadID: erinID, Seq: 1}, w.clock.Now(), "refund"); err != nil {
				t.Fatal(err)
			}
		},
		check: checkSettled(ledger.IntentCancel), faults: [2]rfsim.Fault{
			{Match: "POST " + routeCancelPrefix + "{id}", Status: 502, When: rfsim.WhenAfter, Count: 1}, commissionHangs}},
}

// bootTimeout is the killed invocation's timeout: its lock (or lease) lasts until then.
const bootTimeout = 5 * time.Second

// TestCrashRealBootstrap kills the real bootstrap of each flow family while it is inside an RF
// call, after RF applied the previous call of the flow whose answer was lost. A new execution
// environment then gets the redelivery (or the next scheduled run): at once it is refused (503
// in progress, or the sweep's lease held), after the dead invocation's deadline it completes,
// with exactly one effect in RF.
func TestCrashRealBootstrap(t *testing.T) {
	t.Parallel()
	var (
		wg      sync.WaitGroup
		sem     = make(chan struct{}, len(bootCases))
		mu      sync.Mutex
		results = map[string]string{}
	)
	for _, c := range bootCases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t.Run(c.name, func(t *testing.T) {
				got := crashBootstrap(t, c)
				mu.Lock()
				results[c.name] = got
				mu.Unlock()
			})
		}()
	}
	wg.Wait()
	var table strings.Builder
	for _, c := range bootCases {
		fmt.Fprintf(&table, "| %s | %s |\n", c.name, results[c.name])
	}
	t.Logf("real bootstraps:\n%s", table.String())
}

func crashBootstrap(t *testing.T, c bootCase) string {
	w := newWorld(t)
	if c.setup != nil {
		c.setup(t, w)
	}
	env := bootEnv(w)
	dying := start(t, c.fn, env, c.extra)
	next := start(t, c.fn, env, c.extra) // the sandbox that gets the redelivery
	warm(t, c.fn, dying)
	warm(t, c.fn, next)
	lost := w.addFault(t, c.faults[0])
	hang := w.addFault(t, c.faults[1])
	since := len(w.sim.Server.Calls())

	payload := []byte(`{}`)
	if c.event != "" {
		payload = urlEvent(t, fixture(t, c.event))
	}
	begun := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := dying.Invoke(context.Background(), payload, bootTimeout)
		done <- err
	}()
	for w.fired(hang.ID) == 0 {
		select {
		case err := <-done:
			t.Fatalf("the invocation ended before the hanging call (lost answers: %d): %v", w.fired(lost.ID), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if w.fired(lost.ID) != 1 {
		t.Fatalf("the call whose answer is lost struck %d times", w.fired(lost.ID))
	}
	dying.Stop()
	if err := <-done; !errors.Is(err, lambdaruntime.ErrExited) {
		t.Fatalf("killed invocation: %v, want ErrExited", err)
	}
	killedAfter := time.Since(begun).Round(time.Millisecond)
	w.sim.Server.ClearFaults()

	var early, late string
	checkEarly := time.Until(begun.Add(bootTimeout)) > time.Second
	if !checkEarly {
		early = "not checked (killed late)"
		t.Logf("killed %s into the invocation: too close to its deadline to check the early redelivery", killedAfter)
	}
	if c.fn == "stripe-webhook" {
		if checkEarly {
			r := invokeURL(t, next, fixture(t, c.event), 30*time.Second)
			if r.Code != 503 || !strings.Contains(r.Error, "being processed") {
				t.Fatalf("redelivery before the killed invocation's deadline: %s, want 503 in progress", r)
			}
			early = "503 in progress"
		}
		time.Sleep(time.Until(begun.Add(bootTimeout)) + 100*time.Millisecond)
		r := invokeURL(t, next, fixture(t, c.event), 30*time.Second)
		if r.Code != 200 {
			t.Fatalf("redelivery after the deadline: %s, want 200", r)
		}
		late = brief(r)
	} else {
		if checkEarly {
			sum, ferr := invokeSweep(t, next, 30*time.Second)
			if ferr != nil || sum.NotRun == "" {
				t.Fatalf("run before the killed run's deadline: %+v %v, want not run (lease held)", sum, ferr)
			}
			early = "not run: lease held"
		}
		time.Sleep(time.Until(begun.Add(bootTimeout)) + 100*time.Millisecond)
		sum, ferr := invokeSweep(t, next, 30*time.Second)
		if ferr != nil || !sum.Complete || sum.Failed != 0 || sum.NotRun != "" {
			t.Fatalf("run after the deadline: %+v %v", sum, ferr)
		}
		late = runBrief(sum)
	}
	c.check(t, w, since, boundary{})
	return fmt.Sprintf("killed %s into the invocation; before its deadline: %s; after: %s", killedAfter, early, late)
}

// hangingProxy stands between one bootstrap and DynamoDB Local; once hung, it holds every
// request until the client goes away, and forwards none of them.
type hangingProxy struct {
	URL  string
	hang atomic.Bool
}

func newHangingProxy(t *testing.T, target string) *hangingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &hangingProxy{}
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.hang.Load() {
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		close(stop)
		srv.CloseClientConnections()
		srv.Close()
	})
	p.URL = srv.URL
	return p
}

// attempt is one redelivery: when it was sent, when it was answered, and the answer.
type attempt struct {
	sent, answered time.Time
	r              reply
}

// TestLambdaTimeoutBlocksRetriesOnlyUntilTheDeadline: an invocation whose RF call hangs (and then
// DynamoDB too, so it cannot even release its lock) is timed out by the harness and killed, as
// Lambda does. Its idempotency lock must keep the redeliveries out only until its deadline:
// those sent before it are answered 503 "in progress", the first one after it goes through and
// completes the qualification, with one effect in RF.
func TestLambdaTimeoutBlocksRetriesOnlyUntilTheDeadline(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	proxy := newHangingProxy(t, os.Getenv(ddbtest.EndpointEnv))
	env := bootEnv(w)
	stuck := start(t, "stripe-webhook", env, map[string]string{"AWS_ENDPOINT_URL_DYNAMODB": proxy.URL})
	other := start(t, "stripe-webhook", env, nil) // another execution environment, as Lambda scales out
	warm(t, "stripe-webhook", stuck)
	warm(t, "stripe-webhook", other)
	hang := w.addFault(t, rfsim.Fault{Match: "PUT " + routeQualify, Latency: time.Minute, Count: 1})
	payload := fixture(t, evInvoicePaid)
	since := len(w.sim.Server.Calls())

	const timeout = 3 * time.Second
	type outcome struct {
		res lambdaruntime.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := stuck.Invoke(context.Background(), urlEvent(t, payload), timeout)
		done <- outcome{res, err}
	}()
	for w.fired(hang.ID) == 0 {
		select {
		case o := <-done:
			t.Fatalf("the invocation ended before its RF call hung: %+v %v", o.res, o.err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	proxy.hang.Store(true) // from now on the stuck invocation cannot reach DynamoDB either

	var attempts []attempt
	for {
		a := attempt{sent: time.Now()}
		a.r = invokeURL(t, other, payload, 30*time.Second)
		a.answered = time.Now()
		attempts = append(attempts, a)
		if a.r.Code == 200 {
			break
		}
		if a.r.Code != 503 || !strings.Contains(a.r.Error, "being processed") {
			t.Fatalf("redelivery: %s, want 503 in progress or 200", a.r)
		}
		if len(attempts) > 200 {
			t.Fatal("still refused after 200 redeliveries")
		}
		time.Sleep(50 * time.Millisecond)
	}
	o := <-done
	if !errors.Is(o.err, lambdaruntime.ErrTimedOut) {
		t.Fatalf("the stuck invocation: %+v %v, want the harness's timeout", o.res, o.err)
	}
	deadline := o.res.Deadline
	refused, ok := attempts[:len(attempts)-1], attempts[len(attempts)-1]
	if len(refused) == 0 {
		t.Fatal("no redelivery was refused while the stuck invocation held its lock")
	}
	for _, a := range refused {
		if a.sent.After(deadline) {
			t.Fatalf("a redelivery sent %s after the deadline was refused in progress", a.sent.Sub(deadline))
		}
	}
	// The last refusal was sent before the deadline; the next redelivery, sent at most a poll
	// interval and one answer later, goes through.
	past := ok.answered.Sub(deadline)
	if past > 2*time.Second {
		t.Fatalf("the first redelivery to go through was answered %s after the deadline", past)
	}
	if ok.r.Status != "processed" || !strings.HasPrefix(ok.r.Reason, "qualified") {
		t.Fatalf("the redelivery that went through: %s", ok.r)
	}
	checkQualified(1)(t, w, since, boundary{})
	t.Logf("deadline %s; %d redeliveries refused (503 in progress), the last sent %s before the deadline; "+
		"the next, sent %s after it, answered 200 %s after it",
		deadline.Format("15:04:05.000"), len(refused), deadline.Sub(refused[len(refused)-1].sent).Round(time.Millisecond),
		ok.sent.Sub(deadline).Round(time.Millisecond), past.Round(time.Millisecond))
}
