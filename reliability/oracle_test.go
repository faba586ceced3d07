package reliability

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/rfsim"
)

// The oracle: what refbridge promises for the stream, computed from the customers' ops in
// Stripe's order (a phase's ops commute, so the order in which they are processed does not
// matter). The rules, from PRODUCT.md and the README:
//
//   - a paid invoice adds to the lead's net paid amount; reaching the threshold qualifies the
//     lead in RF once (PUT qualified=true); $0 invoices change nothing;
//   - a refund takes away the increase of the charge's cumulative amount refunded; a dispute
//     withdraws its amount once (opened or lost); falling below the threshold while qualified
//     unqualifies the lead in RF once (PUT qualified=false);
//   - a won dispute reinstates its amount; a lead qualified before and back at the threshold
//     is qualified again (and so is one whose later payment brings it back);
//   - RF makes the referrer's $25 and the friend's coupon when a lead first qualifies, and
//     does not make them again on a requalification while they are still due;
//   - the sweep only runs after the stream (or, with the hold, cannot issue during it); once the
//     hold has passed, every reward of a lead that ends qualified is issued, every other one
//     canceled; a reward that was due before refbridge was installed is issued;
//   - customers RF does not know as leads (strangers, referrers paying for themselves) qualify
//     nobody: their paid invoices are recorded unmatched, their refunds and disputes ignored.

// expectLead is the oracle's verdict on one lead.
type expectLead struct {
	ID, ReferrerID int
	Customer       *Customer
	PreQualified   bool
	Transitions    []bool // the qualification changes refbridge makes in RF, in order
	Qualified      bool   // in RF at the end
	Ever           bool   // refbridge qualified it at least once (so RF made its rewards)
	Net            int64  // net paid, in cents, as the ledger must hold it
}

// expected is the oracle's end state.
type expected struct {
	Leads     map[int]*expectLead
	Counted   map[string]int  // paid invoice → the lead it counts for
	Unmatched map[string]bool // paid invoices no lead matches
	// Transitions counts the qualifications (true) and unqualifications (false) in all.
	Qualifications, Unqualifications int
}

func oracle(w *Workload) *expected {
	exp := &expected{Leads: map[int]*expectLead{}, Counted: map[string]int{}, Unmatched: map[string]bool{}}
	for _, p := range w.Leads {
		exp.Leads[p.ID] = &expectLead{ID: p.ID, ReferrerID: p.ReferrerID, PreQualified: p.PreQualified, Qualified: p.PreQualified}
	}
	for _, c := range w.Customers {
		if c.Kind != "referred" {
			for _, o := range c.Ops {
				if o.kind == opPay && o.amount > 0 {
					exp.Unmatched[o.invoice] = true
				}
			}
			continue
		}
		l := exp.Leads[c.LeadID]
		l.Customer = c
		refunded := map[string]int64{}
		withdrawn, reinstated := map[string]bool{}, map[string]bool{}
		set := func(q bool) {
			l.Qualified = q
			l.Transitions = append(l.Transitions, q)
			if q {
				l.Ever = true
				exp.Qualifications++
			} else {
				exp.Unqualifications++
			}
		}
		below := func() {
			if l.Qualified && l.Net < threshold {
				set(false)
			}
		}
		for _, o := range c.Ops {
			switch o.kind {
			case opPay:
				if o.amount <= 0 {
					continue
				}
				l.Net += o.amount
				exp.Counted[o.invoice] = l.ID
				if !l.Qualified && l.Net >= threshold {
					set(true)
				}
			case opRefund:
				if d := o.amount - refunded[o.charge]; d > 0 {
					refunded[o.charge] = o.amount
					l.Net -= d
				}
				below()
			case opDisputeOpened, opDisputeLost:
				if !withdrawn[o.dispute] {
					withdrawn[o.dispute] = true
					l.Net -= o.amount
				}
				below()
			case opDisputeWon:
				if !withdrawn[o.dispute] {
					withdrawn[o.dispute] = true
					l.Net -= o.amount
				}
				if !reinstated[o.dispute] {
					reinstated[o.dispute] = true
					l.Net += o.amount
				}
				if l.Ever && !l.Qualified && l.Net >= threshold {
					set(true)
				}
			}
		}
	}
	return exp
}

// ---- the comparison ----

// outcome is what the run ended with, next to the oracle's figures.
type outcome struct {
	RFCalls, RF429s, RFFaulted  int
	PutQualify, PutUnqualify    int // effective changes in RF
	PutRepeats                  int // PUTs that set what RF already had (after a lost answer)
	Issued, Canceled            int
	IssueCalls, CancelCalls     int // processed by RF
	RFWebhookAttempts           int
	RFWebhookFailures           int
	RFWebhookAnswers            map[string]int // "event status" → attempts (the simulator keeps the last 10,000)
	LeadsQualified, LeadsNever  int
	ExpectedIssued, ExpectedCxl int
	Mismatches                  []string
	OrphanIntents               []string // qualify intents left pending although their qualification is recorded
	// The leads and referrers a mismatch names, for explain.
	badLeads, badReferrers map[int]bool
}

// processed says whether RF handled a logged call (its effects happened), and effective whether
// it answered the handler's request as RF would have (2xx, or 2xx replaced by a lost answer).
func (s *system) processed(c rfsim.Call) (processed, effective bool) {
	if c.Fault != 0 {
		s.mu.Lock()
		f, ok := s.faults[c.Fault]
		s.mu.Unlock()
		switch {
		case !ok:
			return false, false
		case f.When == rfsim.WhenAfter:
			return true, true
		case f.Status == 0 && !f.Reset: // latency only: processed unless the client gave up
			return c.Status != 499, c.Status >= 200 && c.Status < 300
		default:
			return false, false
		}
	}
	if c.Status == http.StatusTooManyRequests || c.Status == 499 {
		return false, false
	}
	return true, c.Status >= 200 && c.Status < 300
}

// check compares the end state with the oracle: RF's users and rewards, RF's call log, and the
// ledger. Every difference is a mismatch, described so that it can be debugged.
func (s *system) check(w *Workload, exp *expected, sweptDuringStream bool) outcome {
	t := s.t
	t.Helper()
	ctx := t.Context()
	out := outcome{badLeads: map[int]bool{}, badReferrers: map[int]bool{}}
	bad := func(format string, args ...any) {
		out.Mismatches = append(out.Mismatches, fmt.Sprintf(format, args...))
	}
	badLead := func(id int, format string, args ...any) {
		out.badLeads[id] = true
		bad(format, args...)
	}
	calls, complete := s.calls.all()
	if !complete {
		bad("the simulator's call log lost calls: the run made more than it keeps between two reads")
	}

	// RF's call log: the qualification changes per lead, the issues and cancels per reward.
	puts := map[int][]bool{}
	issueCalls, cancelCalls := map[int]int{}, map[int]int{}
	for _, c := range calls {
		out.RFCalls++
		if c.Status == http.StatusTooManyRequests {
			out.RF429s++
		}
		if c.Fault != 0 {
			out.RFFaulted++
		}
		processed, effective := s.processed(c)
		if !processed {
			continue
		}
		switch {
		case c.Method == http.MethodPut && c.Path == "/api/v2/users/qualification":
			var body struct {
				ID        int  `json:"id"`
				Qualified bool `json:"qualified"`
			}
			if err := json.Unmarshal([]byte(c.Body), &body); err != nil || body.ID == 0 {
				bad("RF call %d: PUT /users/qualification with an unexpected body %q", c.Seq, c.Body)
				continue
			}
			if !effective {
				bad("RF call %d: PUT /users/qualification of lead %d answered %d", c.Seq, body.ID, c.Status)
				continue
			}
			puts[body.ID] = append(puts[body.ID], body.Qualified)
		case c.Method == http.MethodPost && strings.HasPrefix(c.Path, "/api/v2/rewards/issue/"),
			c.Method == http.MethodPost && strings.HasPrefix(c.Path, "/api/v2/rewards/cancel/"):
			issue := strings.HasPrefix(c.Path, "/api/v2/rewards/issue/")
			id, _ := strconv.Atoi(c.Path[strings.LastIndex(c.Path, "/")+1:])
			if !effective {
				bad("RF call %d: %s answered %d (a second issue or cancel RF refused?)", c.Seq, c.Path, c.Status)
				continue
			}
			if issue {
				issueCalls[id]++
			} else {
				cancelCalls[id]++
			}
		case c.Method == http.MethodPost && c.Path == "/api/v2/users":
			bad("RF call %d: POST /users: the stream creates no lead", c.Seq)
		}
	}

	// Leads: RF's state, the changes made, and the ledger's view.
	users := map[int]rfsim.User{}
	for _, u := range s.sim.Server.Users() {
		users[u.ID] = u
	}
	for _, id := range sortedKeys(exp.Leads) {
		l := exp.Leads[id]
		who := describeLead(l)
		u, ok := users[id]
		if !ok {
			badLead(id, "%s: missing from RF", who)
			continue
		}
		if got := u.QualifiedAt != nil; got != l.Qualified {
			badLead(id, "%s: qualified in RF = %v, want %v", who, got, l.Qualified)
		}
		if l.Qualified {
			out.LeadsQualified++
		} else if !l.Ever {
			out.LeadsNever++
		}
		// The effective changes: each PUT that set a value RF did not have already.
		state := l.PreQualified
		var changes []bool
		for _, q := range puts[id] {
			if q == state {
				out.PutRepeats++
				continue
			}
			state = q
			changes = append(changes, q)
			if q {
				out.PutQualify++
			} else {
				out.PutUnqualify++
			}
		}
		if !slices.Equal(changes, l.Transitions) {
			badLead(id, "%s: qualification changes in RF %s, want %s (PUTs processed: %s)", who, fmtBools(changes), fmtBools(l.Transitions), fmtBools(puts[id]))
		}
		if l.PreQualified || l.Customer == nil {
			continue
		}
		q, err := s.deps.Ledger.LatestQualification(ctx, int64(id))
		standing := err == nil && q.Standing()
		if err != nil && !errors.Is(err, ledger.ErrNotFound) {
			badLead(id, "%s: ledger: %v", who, err)
		} else if standing != l.Qualified {
			badLead(id, "%s: the ledger's latest qualification standing = %v (seq %d, origin %s, reversed %v), want %v",
				who, standing, q.Seq, q.Origin, !q.ReversedAt.IsZero(), l.Qualified)
		}
		sp, err := s.deps.Ledger.SpendOf(ctx, int64(id))
		if err != nil && !errors.Is(err, ledger.ErrNotFound) {
			badLead(id, "%s: ledger spend: %v", who, err)
		} else if sp.Net["usd"] != l.Net {
			badLead(id, "%s: net paid in the ledger %d, want %d", who, sp.Net["usd"], l.Net)
		}
	}

	// Invoices: each referred payment counted once, for its lead; the others unmatched.
	for _, inv := range sortedKeys(exp.Counted) {
		ok, err := s.deps.Ledger.InvoiceCounted(ctx, inv)
		if err != nil || !ok {
			bad("invoice %s of lead %d: counted = %v (%v), want true", inv, exp.Counted[inv], ok, err)
		}
	}
	for _, inv := range sortedKeys(exp.Unmatched) {
		if _, err := s.deps.Ledger.UnmatchedInvoice(ctx, inv); err != nil {
			bad("invoice %s of a customer RF does not know: no unmatched record (%v)", inv, err)
		}
		if ok, _ := s.deps.Ledger.InvoiceCounted(ctx, inv); ok {
			bad("invoice %s of a customer RF does not know was counted for someone", inv)
		}
	}

	// Rewards: nothing left due; the friend's coupon issued once for each lead that ends
	// qualified; the referrer's $25 issued once per such friend (matching a reward to the
	// friend that earned it is inferred, so it is counted per referrer); every other reward
	// canceled; each issue and cancel called exactly once.
	state := s.sim.Server.State()
	for _, d := range state.DueRewards {
		bad("reward %d (definition %d, recipient %d, lead %d) is still due", d.ID, d.RewardID, d.RecipientID, d.LeadID)
	}
	type tally struct{ issued, canceled int }
	coupons := map[int]*tally{}   // by lead
	referrers := map[int]*tally{} // by referrer
	get := func(m map[int]*tally, k int) *tally {
		if m[k] == nil {
			m[k] = &tally{}
		}
		return m[k]
	}
	for _, r := range state.IssuedRewards {
		issued := r.Status == "Issued"
		if issued {
			out.Issued++
		} else {
			out.Canceled++
		}
		var tl *tally
		switch r.RewardID {
		case couponDefID:
			tl = get(coupons, r.LeadID)
		default:
			tl = get(referrers, r.RecipientID)
		}
		if issued {
			tl.issued++
		} else {
			tl.canceled++
		}
		wantIssue, wantCancel := 0, 0
		if issued {
			wantIssue = 1
		} else {
			wantCancel = 1
		}
		if issueCalls[r.ID] != wantIssue || cancelCalls[r.ID] != wantCancel {
			bad("reward %d (definition %d, lead %d) %s in RF: issue called %d time(s), cancel %d; want %d and %d",
				r.ID, r.RewardID, r.LeadID, r.Status, issueCalls[r.ID], cancelCalls[r.ID], wantIssue, wantCancel)
		}
		out.IssueCalls += issueCalls[r.ID]
		out.CancelCalls += cancelCalls[r.ID]
		rec, err := s.deps.Ledger.DueRewardRecord(ctx, int64(r.ID))
		wantState := ledger.RewardCanceled
		if issued {
			wantState = ledger.RewardIssued
		}
		if err != nil || rec.State != wantState {
			bad("reward %d: the ledger records %q (%v), RF has %s", r.ID, rec.State, err, r.Status)
		}
	}
	wantRef := map[int]*tally{}
	for _, id := range sortedKeys(exp.Leads) {
		l := exp.Leads[id]
		rt := get(wantRef, l.ReferrerID)
		switch {
		case l.PreQualified:
			rt.issued++
		case l.Ever && l.Qualified:
			rt.issued++
		case l.Ever:
			rt.canceled++
		}
		if !l.Ever {
			if c := coupons[id]; c != nil {
				bad("%s: never qualified, yet RF has %d coupon reward(s) for it", describeLead(l), c.issued+c.canceled)
			}
			continue
		}
		c := get(coupons, id)
		want := tally{canceled: 1}
		if l.Qualified {
			want = tally{issued: 1}
			out.ExpectedIssued++
		} else {
			out.ExpectedCxl++
		}
		if c.issued != want.issued || (!sweptDuringStream && c.canceled != want.canceled) || c.canceled < want.canceled {
			out.badLeads[id] = true
			bad("%s: coupon rewards issued %d, canceled %d; want %d and %d", describeLead(l), c.issued, c.canceled, want.issued, want.canceled)
		}
	}
	for _, ref := range sortedKeys(wantRef) {
		want, got := wantRef[ref], get(referrers, ref)
		out.ExpectedIssued += want.issued
		out.ExpectedCxl += want.canceled
		if got.issued != want.issued || (!sweptDuringStream && got.canceled != want.canceled) || got.canceled < want.canceled {
			out.badReferrers[ref] = true
			bad("referrer %d: $25 rewards issued %d, canceled %d; want %d and %d (its friends: %s)",
				ref, got.issued, got.canceled, want.issued, want.canceled, friendsOf(exp, ref))
		}
	}

	// Nothing half-done: no effect begun and left unconfirmed. One exception is counted, not
	// failed: a qualify intent whose call RF applied while the delivery that made it ran out of
	// time before confirming it, when RF's lead-qualified webhook recorded that qualification
	// before Stripe redelivered the event; the redelivery then finds the lead qualified and
	// never looks at the intent. The qualification happened once, and is recorded; only the
	// intent's status is stale (nothing reads a qualify intent once its generation exists).
	for _, k := range []ledger.IntentKind{ledger.IntentQualify, ledger.IntentUnqualify, ledger.IntentIssue, ledger.IntentCancel} {
		p, err := s.deps.Ledger.PendingIntents(ctx, k)
		if err != nil {
			bad("pending %s intents: %v", k, err)
		}
		for _, in := range p {
			if k == ledger.IntentQualify && s.confirmedElsewhere(in, exp) {
				out.OrphanIntents = append(out.OrphanIntents, fmt.Sprintf("%s (ref %s)", in.Target, in.Ref))
				continue
			}
			bad("%s intent %s is still pending (ref %s, %d attempt(s), last error %q)", k, in.Target, in.Ref, in.Attempts, in.LastError)
		}
	}

	cs := s.sim.Server.Counters()
	for _, n := range cs.WebhookAttempts {
		out.RFWebhookAttempts += n
	}
	for _, n := range cs.WebhookFailures {
		out.RFWebhookFailures += n
	}
	out.RFWebhookAnswers = map[string]int{}
	for _, d := range s.sim.Server.Deliveries() {
		out.RFWebhookAnswers[fmt.Sprintf("%s %d", d.Event, d.Status)]++
	}
	return out
}

func describeLead(l *expectLead) string {
	if l.Customer == nil {
		return fmt.Sprintf("lead %d (referrer %d, no customer)", l.ID, l.ReferrerID)
	}
	return fmt.Sprintf("lead %d (referrer %d, customer %s, script %s)", l.ID, l.ReferrerID, l.Customer.ID, l.Customer.Script)
}

func friendsOf(exp *expected, ref int) string {
	var out []string
	for _, id := range sortedKeys(exp.Leads) {
		l := exp.Leads[id]
		if l.ReferrerID != ref || (!l.Ever && !l.PreQualified) {
			continue
		}
		state := "unqualified"
		if l.Qualified {
			state = "qualified"
		}
		script := "pre-qualified"
		if l.Customer != nil {
			script = l.Customer.Script
		}
		out = append(out, fmt.Sprintf("%d %s (%s)", id, state, script))
	}
	return strings.Join(out, ", ")
}

func fmtBools(bs []bool) string {
	if len(bs) == 0 {
		return "[]"
	}
	parts := make([]string, len(bs))
	for i, b := range bs {
		parts[i] = "unqualify"
		if b {
			parts[i] = "qualify"
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// explain describes, for the leads and referrers a mismatch names, what the ledger and RF hold:
// the qualifications (with their origin, times and slots), the rewards RF made and the sweep's
// decisions about them, and the PUTs RF processed.
func (s *system) explain(w *Workload, exp *expected, out outcome) string {
	ctx := s.t.Context()
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	state := s.sim.Server.State()
	calls, _ := s.calls.all()
	recipients := map[int]bool{}
	for id := range out.badLeads {
		recipients[id] = true
	}
	for id := range out.badReferrers {
		recipients[id] = true
	}
	for _, id := range sortedKeys(recipients) {
		if l := exp.Leads[id]; l != nil {
			p("lead %d: %s; oracle: %s, net %d", id, describeLead(l), fmtBools(l.Transitions), l.Net)
			for _, c := range calls {
				if c.Method == http.MethodPut && strings.Contains(c.Body, fmt.Sprintf(`"id":%d,`, id)) {
					pr, _ := s.processed(c)
					p("  RF call %d at %s: PUT %s → %d (fault %d, processed %v)", c.Seq, c.Time.Format("15:04:05.000"), c.Body, c.Status, c.Fault, pr)
				}
			}
		} else {
			p("referrer %d: friends %s", id, friendsOf(exp, id))
		}
		qs, err := s.deps.Ledger.QualificationsFor(ctx, int64(id))
		if err != nil {
			p("  qualifications: %v", err)
		}
		for _, q := range qs {
			p("  qualification %d/%d origin %s rule %s [%s, %s] reversed %s slots %v", q.LeadID, q.Seq, q.Origin, q.Rule,
				q.EarliestAt.Format("15:04:05.000"), q.At.Format("15:04:05.000"), fmtTime(q.ReversedAt), q.Slots)
		}
		for _, r := range state.IssuedRewards {
			if r.RecipientID != id {
				continue
			}
			rec, _ := s.deps.Ledger.DueRewardRecord(ctx, int64(r.ID))
			p("  reward %d (definition %d, earned by lead %d): %s in RF; ledger %s matched %d/%d first seen %s created after %s",
				r.ID, r.RewardID, r.LeadID, r.Status, rec.State, rec.Matched.LeadID, rec.Matched.Seq,
				rec.FirstSeenAt.Format("15:04:05.000"), fmtTime(rec.CreatedAfter))
			ds, _ := s.deps.Ledger.Decisions(ctx, "due#"+strconv.Itoa(r.ID))
			for _, d := range ds {
				if d.Outcome == "wait" {
					continue
				}
				p("    %s %s: %s (%s) %v", d.At.Format("15:04:05.000"), d.Outcome, d.Reason, d.Rule, d.Inputs)
			}
		}
	}
	return b.String()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format("15:04:05.000")
}

// confirmedElsewhere reports whether a pending qualify intent's generation was recorded by RF's
// lead-qualified webhook and RF holds what the oracle expects of its lead.
func (s *system) confirmedElsewhere(in ledger.Intent, exp *expected) bool {
	lead, seq, ok := strings.Cut(in.Target, "#")
	if !ok {
		return false
	}
	id, err1 := strconv.ParseInt(lead, 10, 64)
	n, err2 := strconv.ParseInt(seq, 10, 64)
	l := exp.Leads[int(id)]
	if err1 != nil || err2 != nil || l == nil {
		return false
	}
	qs, err := s.deps.Ledger.QualificationsFor(s.t.Context(), id)
	if err != nil {
		return false
	}
	for _, q := range qs {
		if q.LeadID == id && q.Seq == n && q.Origin == ledger.OriginRFWebhook {
			u, ok := s.sim.Server.User(int(id))
			return ok && (u.QualifiedAt != nil) == l.Qualified
		}
	}
	return false
}
