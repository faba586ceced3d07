package reliability

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/refbridge/refbridge/events"
	"github.com/refbridge/refbridge/shared/rfsim"
)

// The workload: a Referral Factory campaign with many referrers and leads, and the Stripe and RF
// events of the customers who pay, in the order Stripe made them. Everything random comes from
// one seed, so a seed names a workload.

// Settings the workload is built for (and the handlers are configured with).
const (
	threshold   = 2000 // QUALIFY_MIN_AMOUNT: $20
	plan        = 4900 // a month of the product: $49
	campaignID  = 1
	amountDefID = 1 // the $25 for the referrer, on qualification
	couponDefID = 2 // the welcome coupon for the friend, on qualification
)

// size says how big a workload is.
type size struct {
	Events  int     // distinct events, Stripe's and RF's, duplicates not counted
	DupRate float64 // share of the events delivered twice
}

// opKind is what a Stripe event does to a lead's net paid amount.
type opKind int

const (
	opPay           opKind = iota // invoice.paid (amount may be 0: a trial)
	opRefund                      // charge.refunded, with the charge's cumulative amount refunded
	opDisputeOpened               // charge.dispute.created: the amount is withdrawn
	opDisputeLost                 // charge.dispute.closed, lost: stays withdrawn
	opDisputeWon                  // charge.dispute.closed, won: reinstated
)

// op is one money event of a customer, in Stripe's order.
type op struct {
	kind    opKind
	invoice string
	charge  string
	dispute string
	amount  int64 // pay: amount paid; refund: cumulative refunded; dispute: disputed amount
}

// sign is how the op moves the net paid amount: +1 up, -1 down, 0 not at all. Consecutive ops
// of one sign commute (see phases).
func (o op) sign() int {
	switch o.kind {
	case opPay:
		if o.amount > 0 {
			return 1
		}
		return 0
	case opDisputeWon:
		return 1
	}
	return -1
}

// Event is one event as its sender delivers it.
type Event struct {
	ID       string // Stripe's event id; for RF, the webhook's kind and user
	Type     string // Stripe's type, or "rf:lead-created"
	Path     string // where it is POSTed
	Body     []byte // unsigned: Stripe's signature is made per delivery attempt
	Customer *Customer
	// Phase orders a customer's events: phase n+1 is first delivered once every event of phase
	// n was answered 2xx; events of one phase go in any order. -1: any time.
	Phase int
	op    *op
}

// Customer is a Stripe customer and the script of what happens to their money.
type Customer struct {
	ID     string
	Email  string // as Stripe has it (case may differ from RF's)
	Kind   string // referred (an RF lead), stranger (unknown to RF), referrer (pays with a referrer's email)
	LeadID int    // referred only
	Script string
	Ops    []op
	Phases int
}

// person is an RF user of the seed.
type person struct {
	ID, ReferrerID int
	Email, Code    string
	PreQualified   bool // qualified before refbridge was installed, its referrer's reward due
}

// Workload is a campaign and a stream.
type Workload struct {
	Seed      uint64
	Size      size
	SeedData  rfsim.SeedData
	Referrers []*person
	Leads     []*person
	People    map[int]*person
	Customers []*Customer
	Events    []*Event
	Dups      map[*Event]bool // delivered twice
}

// scripts are the referred customers' money stories, with weights. Amounts are in cents; the
// threshold is $20 and a month is $49.
var scripts = []struct {
	name   string
	weight int
	ops    func(c *custBuilder) []op
}{
	{"pays", 14, func(c *custBuilder) []op { return c.pays(plan, c.renewals()) }},
	{"trial-then-pays", 8, func(c *custBuilder) []op { return append([]op{c.pay(0)}, c.pays(plan, c.renewals())...) }},
	{"trial-only", 4, func(c *custBuilder) []op { return []op{c.pay(0)} }},
	{"below-threshold", 4, func(c *custBuilder) []op { return []op{c.pay(1000)} }},
	{"below-then-above", 6, func(c *custBuilder) []op { return []op{c.pay(1000), c.pay(1500)} }},
	{"full-refund", 6, func(c *custBuilder) []op { p := c.pay(plan); return []op{p, c.refund(p, plan)} }},
	{"full-refund-then-renews", 5, func(c *custBuilder) []op { p := c.pay(plan); return []op{p, c.refund(p, plan), c.pay(plan)} }},
	{"partial-refund-stays", 5, func(c *custBuilder) []op { p := c.pay(plan); return []op{p, c.refund(p, 1000)} }},
	{"partial-refund-drops", 5, func(c *custBuilder) []op { p := c.pay(plan); return []op{p, c.refund(p, 3000), c.refund(p, plan)} }},
	{"two-partial-refunds", 4, func(c *custBuilder) []op { p := c.pay(plan); return []op{p, c.refund(p, 1000), c.refund(p, 4000)} }},
	{"renewal-refunded", 4, func(c *custBuilder) []op {
		p, r := c.pay(plan), c.pay(plan)
		return []op{p, r, c.refund(r, plan)}
	}},
	{"below-refunded", 2, func(c *custBuilder) []op { p := c.pay(1000); return []op{p, c.refund(p, 1000)} }},
	{"dispute-lost", 5, func(c *custBuilder) []op { p := c.pay(plan); d := c.disputeOf(p); return []op{p, d.opened(), d.lost()} }},
	{"dispute-won", 6, func(c *custBuilder) []op { p := c.pay(plan); d := c.disputeOf(p); return []op{p, d.opened(), d.won()} }},
	{"dispute-won-then-renews", 3, func(c *custBuilder) []op {
		p := c.pay(plan)
		d := c.disputeOf(p)
		return []op{p, d.opened(), d.won(), c.pay(plan)}
	}},
	{"dispute-on-one-of-two", 3, func(c *custBuilder) []op {
		p, r := c.pay(plan), c.pay(plan)
		d := c.disputeOf(p)
		return []op{p, r, d.opened(), d.won()}
	}},
	{"dispute-lost-then-refund-other", 2, func(c *custBuilder) []op {
		p, r := c.pay(plan), c.pay(plan)
		d := c.disputeOf(p)
		return []op{p, r, d.opened(), c.refund(r, plan), d.lost()}
	}},
}

// strangerScripts are the stories of customers RF does not know (and of referrers paying for
// themselves): nothing of theirs may qualify anyone.
var strangerScripts = []struct {
	name   string
	weight int
	ops    func(c *custBuilder) []op
}{
	{"pays", 6, func(c *custBuilder) []op { return c.pays(plan, c.renewals()) }},
	{"trial-then-pays", 2, func(c *custBuilder) []op { return append([]op{c.pay(0)}, c.pays(plan, 0)...) }},
	{"refund", 2, func(c *custBuilder) []op { p := c.pay(plan); return []op{p, c.refund(p, plan)} }},
	{"dispute-lost", 1, func(c *custBuilder) []op { p := c.pay(plan); d := c.disputeOf(p); return []op{p, d.opened(), d.lost()} }},
}

// custBuilder makes a customer's ops with fresh Stripe ids.
type custBuilder struct {
	rng  *rand.Rand
	tag  string // unique per customer
	n    int
	subs string
}

func (c *custBuilder) next(prefix string) string {
	c.n++
	return fmt.Sprintf("%s_%s%02d", prefix, c.tag, c.n)
}

func (c *custBuilder) renewals() int { return c.rng.IntN(3) }

func (c *custBuilder) pay(amount int64) op {
	o := op{kind: opPay, invoice: c.next("in"), amount: amount}
	if amount > 0 {
		o.charge = c.next("ch")
	}
	return o
}

func (c *custBuilder) pays(amount int64, renewals int) []op {
	out := []op{c.pay(amount)}
	for range renewals {
		out = append(out, c.pay(amount))
	}
	return out
}

func (c *custBuilder) refund(paid op, cumulative int64) op {
	return op{kind: opRefund, invoice: paid.invoice, charge: paid.charge, amount: cumulative}
}

type disputeBuilder struct {
	id, charge string
	amount     int64
}

func (c *custBuilder) disputeOf(paid op) disputeBuilder {
	return disputeBuilder{id: c.next("dp"), charge: paid.charge, amount: paid.amount}
}

func (d disputeBuilder) opened() op {
	return op{kind: opDisputeOpened, dispute: d.id, charge: d.charge, amount: d.amount}
}
func (d disputeBuilder) lost() op {
	return op{kind: opDisputeLost, dispute: d.id, charge: d.charge, amount: d.amount}
}
func (d disputeBuilder) won() op {
	return op{kind: opDisputeWon, dispute: d.id, charge: d.charge, amount: d.amount}
}

// newWorkload generates the workload of seed at size sz.
func newWorkload(t testing.TB, seed uint64, sz size) *Workload {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := &Workload{Seed: seed, Size: sz, People: map[int]*person{}, Dups: map[*Event]bool{}}
	// About 3 leads for every 10 events (300 for 1,000), at most 1,200: the simulator searches
	// users by reading every one of them, and bigger streams then add customers RF does not know.
	leads := min(max(60, sz.Events*3/10), 1200)
	referrers := max(8, leads*2/15)

	// The campaign: $25 to the referrer and a welcome coupon to the friend, both earned when
	// the friend qualifies.
	coupons := make([]string, 0, 2*leads+10)
	for i := range 2*leads + 10 {
		coupons = append(coupons, fmt.Sprintf("WELCOME-%05d", i+1))
	}
	sd := rfsim.SeedData{
		RatePerMinute: 1_000_000, // RF's limit is the rate-limit suite's subject, not this one's
		Campaigns: []rfsim.SeedCampaign{{
			Campaign: rfsim.Campaign{ID: campaignID, Name: "Reliability", Code: "REL2026", Status: "launched"},
			Rewards: []rfsim.SeedReward{
				{ID: amountDefID, Metric: "amount", Name: "$25 for every friend who pays", Recipient: rfsim.TypeReferring,
					Currency: "USD", Amount: 25, Trigger: "qualification"},
				{ID: couponDefID, Metric: "coupon", Name: "A welcome coupon", Recipient: rfsim.TypeInvited,
					Trigger: "qualification", Coupons: coupons},
			},
		}},
	}
	id := 0
	for i := range referrers {
		id++
		p := &person{ID: id, Email: fmt.Sprintf("referrer-%d@example.com", i+1)}
		w.Referrers = append(w.Referrers, p)
		w.People[id] = p
		sd.Users = append(sd.Users, rfsim.SeedUser{ID: id, CampaignID: campaignID, FirstName: fmt.Sprintf("Referrer%d", i+1), Email: p.Email})
	}
	preQualified := leads / 60
	for i := range leads {
		id++
		ref := w.Referrers[rng.IntN(len(w.Referrers))]
		p := &person{ID: id, ReferrerID: ref.ID, Email: fmt.Sprintf("lead-%d@example.com", i+1)}
		u := rfsim.SeedUser{ID: id, CampaignID: campaignID, ReferrerID: &ref.ID, FirstName: fmt.Sprintf("Lead%d", i+1), Email: p.Email}
		if i < preQualified {
			// Qualified before refbridge was installed: the referrer's reward is due, with no
			// qualification of refbridge's behind it (held from first sight, then issued).
			p.PreQualified = true
			day := "2026-01-20"
			u.QualifiedAt = &day
			sd.DueRewards = append(sd.DueRewards, rfsim.SeedDue{RewardID: amountDefID, RecipientID: ref.ID, LeadID: id})
		}
		w.Leads = append(w.Leads, p)
		w.People[id] = p
		sd.Users = append(sd.Users, u)
	}
	w.SeedData = sd

	// Customers until the stream is big enough: most are referred (an RF lead), some are not
	// known to RF at all, a few are referrers paying for themselves.
	free := rng.Perm(leads - preQualified)
	freeReferrers := rng.Perm(len(w.Referrers))
	count := 0
	for n := 0; count < sz.Events; n++ {
		b := &custBuilder{rng: rng, tag: fmt.Sprintf("r%x%04d", seed&0xffff, n)}
		c := &Customer{ID: fmt.Sprintf("cus_%s", b.tag)}
		b.subs = "sub_" + b.tag
		roll := rng.Float64()
		switch {
		case roll < 0.70 && len(free) > 0:
			lead := w.Leads[preQualified+free[0]]
			free = free[1:]
			c.Kind, c.LeadID, c.Email = "referred", lead.ID, drift(rng, lead.Email)
			s := pick(rng, len(scripts), func(i int) int { return scripts[i].weight })
			c.Script, c.Ops = scripts[s].name, scripts[s].ops(b)
		case roll < 0.75 && len(freeReferrers) > 0:
			ref := w.Referrers[freeReferrers[0]]
			freeReferrers = freeReferrers[1:]
			c.Kind, c.Email = "referrer", drift(rng, ref.Email)
			c.Script, c.Ops = "pays", b.pays(plan, b.renewals())
		default:
			c.Kind, c.Email = "stranger", fmt.Sprintf("customer-%s@example.net", b.tag)
			s := pick(rng, len(strangerScripts), func(i int) int { return strangerScripts[i].weight })
			c.Script, c.Ops = strangerScripts[s].name, strangerScripts[s].ops(b)
		}
		w.Customers = append(w.Customers, c)
		count += w.addCustomerEvents(t, rng, b, c)
		if c.Kind == "referred" && rng.Float64() < 0.7 {
			// RF's lead-created webhook for the friend: before or after the payments, any time.
			w.Events = append(w.Events, leadCreated(t, w, w.People[c.LeadID], c))
			count++
		}
	}
	// Leads that never pay still get RF's lead-created webhook, now and then.
	for _, i := range free {
		if count >= sz.Events+sz.Events/20 {
			break
		}
		if rng.Float64() < 0.3 {
			w.Events = append(w.Events, leadCreated(t, w, w.Leads[preQualified+i], nil))
			count++
		}
	}
	for _, e := range w.Events {
		if rng.Float64() < sz.DupRate {
			w.Dups[e] = true
		}
	}
	return w
}

// addCustomerEvents turns a customer's ops into Stripe events and assigns their phases: a run
// of consecutive ops moving the net amount the same way is one phase (they commute: a run of
// payments qualifies once, at most, whatever their order, and a run of refunds and withdrawals
// unqualifies once, at most); ops that move nothing ($0 invoices) and customer.created go any
// time. This is how far the stream lets Stripe reorder one customer's events: a refund comes
// days after its payment, by which time Stripe has delivered the payment (our senders retry a
// failed delivery until it succeeds, before the next phase starts).
func (w *Workload) addCustomerEvents(t testing.TB, rng *rand.Rand, b *custBuilder, c *Customer) int {
	t.Helper()
	created := time.Now().Add(-40*24*time.Hour + time.Duration(rng.IntN(24*3600))*time.Second)
	n := 0
	add := func(e *Event) {
		e.Customer = c
		w.Events = append(w.Events, e)
		n++
	}
	evID := b.next("evt")
	add(&Event{ID: evID, Type: "customer.created", Path: "/stripe/webhook", Phase: -1,
		Body: stripeEvent(t, "customer.created.2024-06-20.json", evID, created, func(o map[string]any) {
			o["id"], o["email"], o["name"], o["metadata"] = c.ID, c.Email, "Customer "+b.tag, map[string]any{}
		})})
	phase, last := -1, 0
	for i := range c.Ops {
		o := &c.Ops[i]
		created = created.Add(time.Duration(1+rng.IntN(72)) * time.Hour)
		e := &Event{op: o}
		if s := o.sign(); s == 0 {
			e.Phase = -1
		} else {
			if s != last {
				phase++
				last = s
			}
			e.Phase = phase
		}
		e.ID = b.next("evt")
		switch o.kind {
		case opPay:
			e.Type = "invoice.paid"
			e.Body = w.invoicePaid(t, e.ID, created, b, c, o, i)
		case opRefund:
			e.Type = "charge.refunded"
			e.Body = stripeEvent(t, "charge.refunded.2024-06-20.json", e.ID, created, func(ch map[string]any) {
				ch["id"], ch["customer"], ch["invoice"], ch["payment_intent"] = o.charge, c.ID, o.invoice, "pi"+strings.TrimPrefix(o.charge, "ch")
				ch["amount"], ch["amount_captured"], ch["amount_refunded"], ch["refunded"] = plan, plan, o.amount, o.amount >= plan
				delete(ch, "refunds") // not included since API 2022-11-15: only the cumulative amount
			})
		case opDisputeOpened, opDisputeLost, opDisputeWon:
			file, status := "charge.dispute.created.2024-06-20.json", "needs_response"
			e.Type = "charge.dispute.created"
			if o.kind != opDisputeOpened {
				e.Type = "charge.dispute.closed"
				file, status = "charge.dispute.closed.lost.2024-06-20.json", "lost"
				if o.kind == opDisputeWon {
					file, status = "charge.dispute.closed.won.2024-06-20.json", "won"
				}
			}
			e.Body = stripeEvent(t, file, e.ID, created, func(d map[string]any) {
				d["id"], d["charge"], d["payment_intent"] = o.dispute, o.charge, "pi"+strings.TrimPrefix(o.charge, "ch")
				d["amount"], d["status"] = o.amount, status
			})
		}
		e.Path = "/stripe/webhook"
		add(e)
	}
	c.Phases = phase + 1
	return n
}

func (w *Workload) invoicePaid(t testing.TB, id string, created time.Time, b *custBuilder, c *Customer, o *op, i int) []byte {
	t.Helper()
	file := "invoice.paid.2024-06-20.json"
	if o.amount == 0 {
		file = "invoice.paid.zero.2024-06-20.json"
	}
	reason := "subscription_cycle"
	if i == 0 {
		reason = "subscription_create"
	}
	return stripeEvent(t, file, id, created, func(inv map[string]any) {
		inv["id"], inv["customer"], inv["customer_email"], inv["customer_name"] = o.invoice, c.ID, c.Email, "Customer "+b.tag
		inv["amount_paid"], inv["amount_due"], inv["subtotal"], inv["total"] = o.amount, o.amount, o.amount, o.amount
		inv["subscription"], inv["billing_reason"] = b.subs, reason
		if o.charge != "" {
			inv["charge"], inv["payment_intent"] = o.charge, "pi"+strings.TrimPrefix(o.charge, "ch")
		} else {
			inv["charge"], inv["payment_intent"] = nil, nil
		}
	})
}

// stripeEvent reads a sample Stripe event, gives it id and created, and lets edit change its
// data.object.
func stripeEvent(t testing.TB, file, id string, created time.Time, edit func(obj map[string]any)) []byte {
	t.Helper()
	raw, err := events.FS.ReadFile("stripe/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	ev["id"], ev["created"] = id, created.Unix()
	ev["request"] = map[string]any{"id": nil, "idempotency_key": nil}
	data, _ := ev["data"].(map[string]any)
	obj, _ := data["object"].(map[string]any)
	if obj == nil {
		t.Fatalf("%s: no data.object", file)
	}
	edit(obj)
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// leadCreated is RF's lead-created webhook for lead, as the admin configured it (the code sent
// as referral_code, RF_WEBHOOK_FIELDS=code=referral_code).
func leadCreated(t testing.TB, w *Workload, lead *person, c *Customer) *Event {
	t.Helper()
	raw, err := events.FS.ReadFile("rf/lead-created.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	ref := w.People[lead.ReferrerID]
	// The code is filled in once the simulator has generated it (bodies are made per delivery).
	m["id"], m["email"], m["first_name"], m["campaign_id"] = lead.ID, lead.Email, fmt.Sprintf("Lead%d", lead.ID), campaignID
	m["referrer_id"], m["referrer_email"], m["signed_up_at"] = ref.ID, ref.Email, time.Now().UTC().Format("2006-01-02")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return &Event{ID: fmt.Sprintf("rf-lead-created-%d", lead.ID), Type: "rf:lead-created", Path: "/rf/webhook/lead-created",
		Body: b, Customer: c, Phase: -1}
}

// fillCodes puts the codes the simulator generated into the RF webhook bodies.
func (w *Workload) fillCodes(t testing.TB, users []rfsim.User) {
	t.Helper()
	for _, u := range users {
		if p := w.People[u.ID]; p != nil {
			p.Code = u.Code
		}
	}
	for _, e := range w.Events {
		if e.Type != "rf:lead-created" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(e.Body, &m); err != nil {
			t.Fatal(err)
		}
		lead := w.People[int(m["id"].(float64))]
		m["referral_code"], m["referrer_code"] = lead.Code, w.People[lead.ReferrerID].Code
		e.Body, _ = json.Marshal(m)
	}
}

// drift changes an email's case the way people type them (matching normalises it).
func drift(rng *rand.Rand, email string) string {
	switch rng.IntN(4) {
	case 0:
		return strings.ToUpper(email[:1]) + email[1:]
	case 1:
		local, domain, _ := strings.Cut(email, "@")
		return local + "@" + strings.ToUpper(domain)
	}
	return email
}

// pick draws an index with the given weights.
func pick(rng *rand.Rand, n int, weight func(int) int) int {
	total := 0
	for i := range n {
		total += weight(i)
	}
	r := rng.IntN(total)
	for i := range n {
		if r -= weight(i); r < 0 {
			return i
		}
	}
	return n - 1
}
