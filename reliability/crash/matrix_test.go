package crash

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/lease"
	"github.com/refbridge/refbridge/shared/ledger"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/sweep"
)

// boundary is a step boundary of a flow and the hook that kills the process there.
type boundary struct {
	name string
	hook hook
}

// flow is one of refbridge's flows that change Referral Factory, with its step boundaries in the
// order the flow crosses them.
type flow struct {
	name string
	// event is the Stripe event whose delivery crashes (stripe-webhook flows); empty for the sweep.
	event string
	// setup brings the world to where the flow starts, through healthy processes.
	setup func(t *testing.T, w *world)
	// rules are the sweep's (sweep flows).
	rules sweep.Rules
	// check asserts the end state: exactly one RF effect per target since the call-log index
	// since (the start of the crashing invocation), and the ledger confirmed.
	check      func(t *testing.T, w *world, since int, b boundary)
	boundaries []boundary
}

// stripeBoundaries are the boundaries every stripe-webhook flow crosses first and last.
var (
	afterLock    = boundary{name: "after the idempotency lock", hook: hook{op: "lock"}}
	beforeDone   = boundary{name: "after the work, before the event's result is saved", hook: hook{op: "complete", before: true}}
	sweepLease   = boundary{name: "after the sweep's lease", hook: hook{op: "lease"}}
	hold14       = sweep.Rules{Hold: 14 * 24 * time.Hour, AllowMetrics: []string{"amount"}}
	hold14Cancel = sweep.Rules{Hold: 14 * 24 * time.Hour}
)

// flows is the crash matrix: every flow that changes RF, every step boundary of it.
// docs/reliability.md reproduces this table.
// qualifyBoundaries are the step boundaries of a flow that qualifies a lead (a first payment,
// a won dispute): intent → RF call → confirm → the ledger's qualification.
var qualifyBoundaries = []boundary{
	afterLock,
	{name: "after the qualify intent, before the RF call", hook: hook{op: "begin", kind: ledger.IntentQualify}},
	{name: "in PUT /users/qualification: applied by RF, answer lost", hook: hook{op: "rf", call: "PUT /users/qualification"}},
	{name: "after RF's answer, before the intent is confirmed", hook: hook{op: "finish", before: true, kind: ledger.IntentQualify}},
	{name: "after the confirm, before the ledger's qualification", hook: hook{op: "qualify", before: true}},
	beforeDone,
}

var flows = []flow{
	{
		name:       "invoice.paid → qualify",
		event:      evInvoicePaid,
		check:      checkQualified(1),
		boundaries: qualifyBoundaries,
	},
	{
		name:  "charge.refunded → unqualify",
		event: evRefund,
		setup: func(t *testing.T, w *world) { mustDeliver(t, w, evInvoicePaid, "processed") },
		check: checkUnqualified,
		boundaries: []boundary{
			afterLock,
			{name: "after the ledger's reversal, before the unqualify intent", hook: hook{op: "reverse"}},
			{name: "after the unqualify intent, before the RF call", hook: hook{op: "begin", kind: ledger.IntentUnqualify}},
			{name: "in PUT /users/qualification: applied by RF, answer lost", hook: hook{op: "rf", call: "PUT /users/qualification"}},
			{name: "after RF's answer, before the intent is confirmed", hook: hook{op: "finish", before: true, kind: ledger.IntentUnqualify}},
			beforeDone,
		},
	},
	{
		name:  "charge.dispute.closed (won) → requalify",
		event: evDisputeWon,
		setup: func(t *testing.T, w *world) {
			mustDeliver(t, w, evInvoicePaid, "processed")
			mustDeliver(t, w, evDisputeCreated, "processed")
		},
		check:      checkQualified(2),
		boundaries: qualifyBoundaries,
	},
	{
		name:  "checkout.session.completed → create lead",
		event: evCheckoutSignup,
		check: checkSignup,
		boundaries: []boundary{
			afterLock,
			{name: "after the create_lead intent, before POST /users", hook: hook{op: "begin", kind: ledger.IntentCreateLead}},
			{name: "in POST /users: applied by RF, answer lost", hook: hook{op: "rf", call: "POST /users"}},
			{name: "after RF's answer, before the ledger's lead", hook: hook{op: "putlead", before: true}},
			// Later deliveries find the lead and never return to the intent: the sweep confirms it.
			{name: "after the ledger's lead, before the intent is confirmed", hook: hook{op: "finish", before: true, kind: ledger.IntentCreateLead}},
			beforeDone,
		},
	},
	{
		name:  "reward sweep → issue",
		setup: qualifyErin,
		rules: hold14,
		check: checkSettled(ledger.IntentIssue),
		boundaries: []boundary{
			sweepLease,
			{name: "after the issue intent, before the RF call", hook: hook{op: "begin", kind: ledger.IntentIssue}},
			{name: "in POST /rewards/issue: applied by RF, answer lost", hook: hook{op: "rf", call: "POST /rewards/issue/"}},
			{name: "after RF's answer, before the ledger's settlement", hook: hook{op: "settle", before: true}},
			{name: "after the settlement, before the intent is confirmed", hook: hook{op: "finish", before: true, kind: ledger.IntentIssue}},
			{name: "after the confirm, before the checkpoint and the lease release", hook: hook{op: "finish", kind: ledger.IntentIssue}},
		},
	},
	{
		name: "reward sweep → cancel",
		setup: func(t *testing.T, w *world) {
			qualifyErin(t, w)
			if _, err := w.ledger.Reverse(context.Background(), ledger.QualificationRef{LeadID: erinID, Seq: 1}, w.clock.Now(), "refund"); err != nil {
				t.Fatal(err)
			}
		},
		rules: hold14Cancel,
		check: checkSettled(ledger.IntentCancel),
		boundaries: []boundary{
			sweepLease,
			{name: "after the cancel intent, before the RF call", hook: hook{op: "begin", kind: ledger.IntentCancel}},
			{name: "in POST /rewards/cancel: applied by RF, answer lost", hook: hook{op: "rf", call: "POST /rewards/cancel/"}},
			{name: "after RF's answer, before the ledger's settlement", hook: hook{op: "settle", before: true}},
			{name: "after the settlement, before the intent is confirmed", hook: hook{op: "finish", before: true, kind: ledger.IntentCancel}},
			{name: "after the confirm, before the checkpoint and the lease release", hook: hook{op: "finish", kind: ledger.IntentCancel}},
		},
	},
}

// concurrentCases bounds how many crash cases run at once. The cases mostly wait (on DynamoDB
// Local, on the sweep's lease), so they run side by side rather than -parallel's two at a time.
const concurrentCases = 8

// TestCrashAtEveryBoundary kills an invocation at every step boundary of every flow, then
// delivers the same Stripe event again (or runs the sweep again) and checks the end state.
//
// Each case: the crashing invocation dies at its boundary (nothing it would do afterwards
// reaches DynamoDB or RF); a redelivery at once must be refused while the dead invocation's
// lock (or the sweep's lease) lasts; then two more deliveries (runs) come 2 minutes and an hour
// later on the decisions' clock — past the dead invocation's lock, then past the point where
// an unconfirmed attempt counts as stale (3 minutes for a signup, 16 for the sweep). The last
// one must answer 200 (or complete the run), with exactly one effect per target in RF's call
// log and every intent confirmed.
func TestCrashAtEveryBoundary(t *testing.T) {
	t.Parallel()
	var (
		wg      sync.WaitGroup
		sem     = make(chan struct{}, concurrentCases)
		mu      sync.Mutex
		results = map[string]string{}
	)
	for _, f := range flows {
		for i, b := range f.boundaries {
			name := fmt.Sprintf("%s/%d %s", f.name, i+1, b.name)
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				t.Run(name, func(t *testing.T) {
					var got string
					if f.event != "" {
						got = crashDelivery(t, f, b)
					} else {
						got = crashSweep(t, f, b)
					}
					mu.Lock()
					results[name] = got
					mu.Unlock()
				})
			}()
		}
	}
	wg.Wait()
	var table strings.Builder
	for _, f := range flows {
		for i, b := range f.boundaries {
			name := fmt.Sprintf("%s/%d %s", f.name, i+1, b.name)
			fmt.Fprintf(&table, "| %s | %d. %s | %s |\n", f.name, i+1, b.name, results[name])
		}
	}
	t.Logf("crash matrix:\n%s", table.String())
}

// crashDelivery runs one stripe-webhook case and returns what the redeliveries answered.
func crashDelivery(t *testing.T, f flow, b boundary) string {
	w := newWorld(t)
	if f.setup != nil {
		f.setup(t, w)
	}
	payload := fixture(t, f.event)
	since := len(w.sim.Server.Calls())

	dead := w.proc(t, &b.hook)
	answer := dead.deliver(t, payload)
	if !dead.killed() {
		t.Fatalf("the delivery ended without reaching the boundary: %s", answer)
	}
	// At once: the dead invocation's lock stands until its deadline.
	early := w.proc(t, nil).deliver(t, payload)
	if early.Code != 503 || !strings.Contains(early.Error, "being processed") {
		t.Fatalf("redelivery while the dead invocation's lock lasts: %s, want 503 in progress", early)
	}
	w.clock.Advance(2 * time.Minute)
	second := w.proc(t, nil).deliver(t, payload)
	w.clock.Advance(58 * time.Minute)
	last := w.proc(t, nil).deliver(t, payload)
	if last.Code != 200 {
		t.Fatalf("redeliveries: +2m %s; +1h %s, want 200", second, last)
	}
	f.check(t, w, since, b)
	return fmt.Sprintf("at once: %d in progress; +2 min: %s; +1 h: %s", early.Code, brief(second), brief(last))
}

// brief is a reply without the details of its reason.
func brief(r reply) string {
	if r.Code != 200 {
		return strconv.Itoa(r.Code) + " " + firstWords(r.Error, 5)
	}
	return "200 " + r.Status + " (" + firstWords(r.Reason, 3) + ")"
}

func firstWords(s string, n int) string {
	words := strings.Fields(strings.TrimSuffix(strings.SplitN(s, ";", 2)[0], "."))
	if len(words) > n {
		words = append(words[:n], "…")
	}
	return strings.TrimRight(strings.Join(words, " "), ":")
}

// deadRunTimeout is the crashing sweep run's deadline, which its lease lasts until. Short, since
// the next run waits for it; long enough for the run to reach its boundary on a loaded machine.
const deadRunTimeout = 4 * time.Second

// crashSweep runs one sweep case and returns what the next runs did.
func crashSweep(t *testing.T, f flow, b boundary) string {
	w := newWorld(t)
	f.setup(t, w)
	since := len(w.sim.Server.Calls())

	dead := w.proc(t, &b.hook)
	ctx, cancel := dead.invocation(deadRunTimeout)
	deadline, _ := ctx.Deadline()
	sum, err := dead.sweeper(t, f.rules).Run(ctx)
	cancel()
	if !dead.killed() {
		t.Fatalf("the run ended without reaching the boundary: %+v %v", sum, err)
	}
	// At once: the dead run's lease stands until its deadline; the next run does nothing.
	early := "lease held, nothing done"
	if time.Until(deadline) < time.Second {
		// A machine so loaded that the dead run needed most of its time to reach the boundary:
		// the lease may end before the check does.
		early = "not checked (the boundary was reached late)"
		t.Logf("the run reached its boundary %s before its deadline: the early run is not checked", time.Until(deadline))
	} else {
		calls := len(w.sim.Server.Calls())
		if sum, err := w.proc(t, nil).sweeper(t, f.rules).Run(context.Background()); !errors.Is(err, lease.ErrHeld) || len(w.sim.Server.Calls()) != calls {
			t.Fatalf("run while the dead run's lease lasts: %+v %v, %d RF calls", sum, err, len(w.sim.Server.Calls())-calls)
		}
	}
	time.Sleep(time.Until(deadline) + 50*time.Millisecond)
	run := func() sweep.Summary {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sum, err := w.proc(t, nil).sweeper(t, f.rules).Run(ctx)
		if err != nil {
			t.Fatalf("run after the dead run's deadline: %+v %v", sum, err)
		}
		return sum
	}
	w.clock.Advance(2 * time.Minute)
	second := run()
	w.clock.Advance(58 * time.Minute)
	last := run()
	if !last.Complete || last.Failed != 0 {
		t.Fatalf("runs: +2m %+v; +1h %+v", second, last)
	}
	f.check(t, w, since, b)
	return fmt.Sprintf("at once: %s; +2 min: %s; +1 h: %s", early, runBrief(second), runBrief(last))
}

func runBrief(s sweep.Summary) string {
	var parts []string
	for _, p := range []struct {
		n    int
		what string
	}{{s.Issued, "issued"}, {s.Canceled, "canceled"}, {s.Reconciled, "reconciled"}, {s.Waiting[ruleInProgress], "in progress"}, {s.Failed, "failed"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	if len(parts) == 0 {
		return "nothing to do"
	}
	return strings.Join(parts, ", ")
}

// ruleInProgress is the sweep's waiting rule of a reward whose earlier attempt is recent.
const ruleInProgress = "in_progress"

// mustDeliver delivers a fixture through a healthy process and expects status.
func mustDeliver(t *testing.T, w *world, event, status string) {
	t.Helper()
	if r := w.proc(t, nil).deliver(t, fixture(t, event)); r.Code != 200 || r.Status != status {
		t.Fatalf("%s: %s, want 200 %s", event, r, status)
	}
}

// qualifyErin records refbridge's qualification of Erin 30 days ago (past the 14-day hold) and
// qualifies her in RF, which makes Bob's $25 reward due; Erin's join coupon and Alice's reward
// for Dave are due already.
func qualifyErin(t *testing.T, w *world) {
	t.Helper()
	if _, err := w.ledger.Qualify(context.Background(), ledger.Qualification{LeadID: erinID, ReferrerID: bobID,
		At: w.clock.Now().Add(-30 * 24 * time.Hour), Origin: ledger.OriginRefbridge}); err != nil {
		t.Fatal(err)
	}
	w.sim.Qualify(t, erinID)
}

// bobDue is the due reward Erin's qualification earned Bob.
func bobDue(t *testing.T, w *world) int64 {
	t.Helper()
	for _, list := range [][]int{dueIDs(w, "amount", bobID), issuedIDs(w, "amount", bobID)} {
		if len(list) == 1 {
			return int64(list[0])
		}
	}
	t.Fatal("no reward of Bob's in RF")
	return 0
}

func dueIDs(w *world, metric string, recipient int) []int {
	var out []int
	for _, d := range w.sim.Server.DueRewards(metric) {
		if d.RecipientID == recipient {
			out = append(out, d.ID)
		}
	}
	return out
}

func issuedIDs(w *world, metric string, recipient int) []int {
	var out []int
	for _, r := range w.sim.Server.IssuedRewards(metric) {
		if r.RecipientID == recipient {
			out = append(out, r.ID)
		}
	}
	return out
}

func rfStatus(w *world, metric string, id int64) string {
	for _, r := range w.sim.Server.IssuedRewards(metric) {
		if int64(r.ID) == id {
			return r.Status
		}
	}
	return ""
}

func erinQualifiedInRF(t *testing.T, w *world) bool {
	t.Helper()
	u, ok := w.sim.Server.User(erinID)
	if !ok {
		t.Fatal("Erin is gone from the simulator")
	}
	return u.QualifiedAt != nil
}

func intentDone(t *testing.T, w *world, kind ledger.IntentKind, target string) {
	t.Helper()
	in, err := w.ledger.IntentOf(context.Background(), kind, target)
	if err != nil || in.Status != ledger.IntentDone {
		t.Fatalf("%s intent %s: %+v %v, want done", kind, target, in, err)
	}
}

func noPendingIntents(t *testing.T, w *world) {
	t.Helper()
	for _, k := range []ledger.IntentKind{ledger.IntentQualify, ledger.IntentUnqualify, ledger.IntentIssue, ledger.IntentCancel, ledger.IntentCreateLead} {
		p, err := w.ledger.PendingIntents(context.Background(), k)
		if err != nil || len(p) != 0 {
			t.Fatalf("pending %s intents: %+v %v", k, p, err)
		}
	}
}

// checkQualified: one PUT qualified=true applied since the crash, Erin qualified in RF, and the
// ledger's qualification seq standing with its intent done.
func checkQualified(seq int64) func(t *testing.T, w *world, since int, b boundary) {
	return func(t *testing.T, w *world, since int, b boundary) {
		t.Helper()
		if n := applied(w, since, "PUT", routeQualify, qualifiedBody(true))[""]; n != 1 {
			t.Fatalf("%d qualifications applied in RF, want 1", n)
		}
		if n := applied(w, since, "PUT", routeQualify, qualifiedBody(false))[""]; n != 0 {
			t.Fatalf("%d unqualifications applied in RF", n)
		}
		if !erinQualifiedInRF(t, w) {
			t.Fatal("Erin is not qualified in RF")
		}
		intentDone(t, w, ledger.IntentQualify, ledger.QualificationTarget(erinID, seq))
		q, err := w.ledger.StandingQualification(context.Background(), erinID)
		if err != nil || q.Seq != seq {
			t.Fatalf("standing qualification %+v %v, want seq %d", q, err, seq)
		}
		noPendingIntents(t, w)
	}
}

// checkUnqualified: one PUT qualified=false applied, Erin pending in RF, the ledger's
// qualification reversed and its unqualify intent done.
func checkUnqualified(t *testing.T, w *world, since int, b boundary) {
	t.Helper()
	if n := applied(w, since, "PUT", routeQualify, qualifiedBody(false))[""]; n != 1 {
		t.Fatalf("%d unqualifications applied in RF, want 1", n)
	}
	if n := applied(w, since, "PUT", routeQualify, qualifiedBody(true))[""]; n != 0 {
		t.Fatalf("%d qualifications applied in RF after the refund", n)
	}
	if erinQualifiedInRF(t, w) {
		t.Fatal("Erin is still qualified in RF")
	}
	intentDone(t, w, ledger.IntentUnqualify, ledger.QualificationTarget(erinID, 1))
	q, err := w.ledger.LatestQualification(context.Background(), erinID)
	if err != nil || q.Standing() || q.Seq != 1 {
		t.Fatalf("latest qualification %+v %v, want seq 1 reversed", q, err)
	}
	noPendingIntents(t, w)
}

// checkSignup: one POST /users applied, Fay one lead of Alice's in RF and in the ledger (mapped
// to her Stripe customer), the create_lead intent done.
func checkSignup(t *testing.T, w *world, since int, b boundary) {
	t.Helper()
	if n := applied(w, since, "POST", routeCreateUser, nil)[""]; n != 1 {
		t.Fatalf("%d POST /users applied in RF, want 1", n)
	}
	var fay []int
	for _, u := range w.sim.Server.Users() {
		if strings.EqualFold(u.Email, fayEmail) {
			if u.ReferrerID == nil || *u.ReferrerID != aliceID {
				t.Fatalf("Fay in RF: %+v, want a lead of Alice's", u)
			}
			fay = append(fay, u.ID)
		}
	}
	if len(fay) != 1 {
		t.Fatalf("%d users with Fay's email in RF, want 1", len(fay))
	}
	ctx := context.Background()
	hash := ledger.HashEmail(fayEmail)
	if leads, err := w.ledger.LeadsByEmail(ctx, hash); err != nil || len(leads) != 1 || leads[0].ID != int64(fay[0]) {
		t.Fatalf("ledger leads of Fay's email: %+v %v", leads, err)
	}
	if l, err := w.ledger.LeadByCustomer(ctx, fayCustomerID); err != nil || l.ID != int64(fay[0]) {
		t.Fatalf("Fay's customer maps to %+v %v", l, err)
	}
	// The next sweep confirms a create_lead intent whose lead the ledger already holds.
	if _, err := w.proc(t, nil).sweeper(t, sweep.Rules{Hold: 14 * 24 * time.Hour}).Run(ctx); err != nil {
		t.Fatalf("sweep after the signup: %v", err)
	}
	intentDone(t, w, ledger.IntentCreateLead, ledger.LeadCreationTarget(signupCampaign, hash))
	noPendingIntents(t, w)
}

// checkSettled: the sweep's targets — Bob's reward to issue, or Bob's reward and Erin's coupon to
// cancel — each got exactly one applied call of the kind (and none of the other), RF and the
// ledger agree, and the intents are done.
func checkSettled(kind ledger.IntentKind) func(t *testing.T, w *world, since int, b boundary) {
	return func(t *testing.T, w *world, since int, b boundary) {
		t.Helper()
		ctx := context.Background()
		bob := bobDue(t, w)
		type target struct {
			id     int64
			metric string
		}
		targets := []target{{bob, "amount"}}
		route, other, status, state := routeIssuePrefix, routeCancelPrefix, rf.StatusIssued, ledger.RewardIssued
		if kind == ledger.IntentCancel {
			targets = append(targets, target{erinCouponDue, "coupon"})
			route, other, status, state = routeCancelPrefix, routeIssuePrefix, rf.StatusCanceled, ledger.RewardCanceled
		}
		calls := applied(w, since, "POST", route, nil)
		if n := len(applied(w, since, "POST", other, nil)); n != 0 {
			t.Fatalf("calls to %s: %v", other, applied(w, since, "POST", other, nil))
		}
		if len(calls) != len(targets) {
			t.Fatalf("applied %s calls %v, want one for each of %v", route, calls, targets)
		}
		for _, tg := range targets {
			id := strconv.FormatInt(tg.id, 10)
			if calls[id] != 1 {
				t.Fatalf("reward %s: %d applied calls, want 1", id, calls[id])
			}
			if s := rfStatus(w, tg.metric, tg.id); s != status {
				t.Fatalf("reward %s in RF: %q, want %q", id, s, status)
			}
			rec, err := w.ledger.DueRewardRecord(ctx, tg.id)
			if err != nil || rec.State != state {
				t.Fatalf("reward %s in the ledger: %+v %v, want %s", id, rec, err, state)
			}
			intentDone(t, w, kind, id)
		}
		if kind == ledger.IntentCancel {
			// The cancels are over: Erin may be qualified again (BeginCancelIfNewest's mark is gone).
			if q, err := w.ledger.LatestQualification(ctx, erinID); err != nil || len(q.CancelsPending) != 0 {
				t.Fatalf("Erin's reversed qualification: %+v %v, want no cancel pending", q, err)
			}
		}
		if kind == ledger.IntentIssue {
			if n, err := w.ledger.IssuedInMonth(ctx, bobID, w.clock.Now()); err != nil || n != 1 {
				t.Fatalf("rewards counted issued to Bob this month: %d %v, want 1", n, err)
			}
		}
		noPendingIntents(t, w)
	}
}
