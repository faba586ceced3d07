package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/stripe/stripe-go/v79/webhook"

	"github.com/refbridge/refbridge/events"
	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/wiring"
)

// demo tells refbridge's whole story with no account anywhere: the simulator plays Referral
// Factory, refbridge runs in memory on a loopback port, and signed sample events from events/
// are POSTed to it as Stripe and RF would.
func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	verbose := fs.Bool("v", false, "also print refbridge's JSON logs (to stderr)")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	logs := io.Discard
	if *verbose {
		logs = stderr
	}
	sim, err := startSim(slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer sim.close()

	const stripeSecret, rfSecret = "whsec_refbridge_demo", "demo-rf-webhook-secret"
	vars := map[string]string{
		"RF_API_URL": sim.URL, "RF_API_TOKEN": sim.Token(), "RF_CAMPAIGN_IDS": "1",
		"STRIPE_WEBHOOK_SECRETS": stripeSecret, "RF_WEBHOOK_SECRET": rfSecret,
		"RF_WEBHOOK_FIELDS":  "code=referral_code", // as the events/rf samples are configured
		"QUALIFY_MIN_AMOUNT": "2000", "REWARD_HOLD_DAYS": "14",
	}
	// Days pass in seconds: the decisions run on this clock (the hold, first sightings).
	clock := &demoClock{t: time.Now()}
	d, err := wiring.Local(ctx, func(k string) string { return vars[k] }, logs, config.Need{RFAPIToken: true}, wiring.WithClock(clock.Now))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: routes(d), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	p := &demoPrinter{w: stdout, base: base, hc: &http.Client{Timeout: time.Minute}, ctx: ctx}
	schedule, err := events.FS.ReadFile("sweep/schedule.json")
	if err != nil {
		return err
	}
	sweepNow := func(why string) {
		p.step("The reward sweep runs (every 15 minutes; events/sweep/schedule.json): " + why)
		p.post("/sweep", schedule, map[string]string{"Content-Type": "application/json"})
	}

	fmt.Fprintf(stdout, `refbridge demo: a Referral Factory simulator (%s) plays RF, refbridge serves on %s
with its state in memory; the events are the samples in events/, signed as Stripe signs them.

Campaign DEMO2026 pays a referrer $25 for every referral that pays at least $20
(QUALIFY_MIN_AMOUNT=2000) and gives each invited friend a welcome coupon when they join. Alice,
Bob and Carol are referrers; Dave (Alice's friend) qualified before refbridge was installed, his
reward to Alice still due; Erin (Bob's friend) joined and has not paid yet. Rewards wait 14 days
(REWARD_HOLD_DAYS=14) before they are issued; the demo lets the days pass.

`, strings.TrimSuffix(sim.URL, "/api/v2"), base)

	p.day(0)
	sweepNow("refbridge is installed; its first run records what is already due")

	p.step("Fay arrives with Alice's link (?ref=aLiCeRef) and subscribes through Stripe Checkout: Stripe sends\n" +
		"   checkout.session.completed with the code in client_reference_id (events/stripe/checkout.session.completed.2024-06-20.json);\n" +
		"   refbridge creates her lead in Referral Factory, credited to Alice")
	p.stripe(stripeSecret, "stripe/checkout.session.completed.2024-06-20.json", func(ev map[string]any) {
		cs := object(ev)
		cs["customer"] = "cus_demo_fay"
		if d, ok := cs["customer_details"].(map[string]any); ok {
			d["name"] = "Fay"
		}
	})
	var fay rfsim.User
	for _, u := range sim.Users() {
		if u.Email == "fay@example.com" {
			fay = u
		}
	}
	if p.err == nil && fay.ID == 0 {
		return errors.New("the checkout did not create Fay's lead in the simulator")
	}
	p.step("Referral Factory sends its lead-created webhook for her (events/rf/lead-created.json)")
	body, err := sample("rf/lead-created.json", func(m map[string]any) { m["id"], m["referral_code"] = fay.ID, fay.Code })
	if err != nil {
		return err
	}
	p.post("/rf/webhook/lead-created", body, map[string]string{"Content-Type": "application/json", "X-Webhook-Secret": rfSecret})
	sweepNow("Fay's welcome coupon is due")

	clock.advance(24 * time.Hour)
	p.day(1)
	p.step("Erin pays her first invoice ($49): Stripe sends invoice.paid (events/stripe/invoice.paid.2024-06-20.json)")
	p.stripe(stripeSecret, "stripe/invoice.paid.2024-06-20.json", nil)
	p.step("Fay pays her first invoice ($49): invoice.paid")
	p.stripe(stripeSecret, "stripe/invoice.paid.2024-06-20.json", func(ev map[string]any) {
		ev["id"] = "evt_demo_fay_paid"
		inv := object(ev)
		inv["id"], inv["customer"], inv["customer_email"], inv["customer_name"] = "in_demo_fay_1", "cus_demo_fay", "fay@example.com", "Fay"
		inv["charge"], inv["subscription"], inv["payment_intent"] = "ch_demo_fay_1", "sub_demo_fay", "pi_demo_fay_1"
	})
	sweepNow("Bob's and Alice's $25 are due now; they wait for the hold")

	clock.advance(2 * 24 * time.Hour)
	p.day(3)
	p.step("Fay asks for her money back: Stripe sends charge.refunded, a full refund (events/stripe/charge.refunded.2024-06-20.json)")
	p.stripe(stripeSecret, "stripe/charge.refunded.2024-06-20.json", func(ev map[string]any) {
		ev["id"] = "evt_demo_fay_refund"
		ch := object(ev)
		ch["id"], ch["customer"], ch["invoice"], ch["payment_intent"] = "ch_demo_fay_1", "cus_demo_fay", "in_demo_fay_1", "pi_demo_fay_1"
	})
	sweepNow("Fay's qualification was reversed before her reward went out")

	clock.advance(13 * 24 * time.Hour)
	p.day(16)
	sweepNow("the holds are over")
	if p.err != nil {
		return p.err
	}
	return finalState(ctx, stdout, sim, d.Ledger)
}

// demoClock is the demo's calendar.
type demoClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *demoClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *demoClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// demoPrinter POSTs to refbridge and prints each exchange.
type demoPrinter struct {
	w    io.Writer
	base string
	hc   *http.Client
	ctx  context.Context
	n    int
	err  error
}

func (p *demoPrinter) day(n int) {
	fmt.Fprintf(p.w, "── day %d ──\n", n)
}

func (p *demoPrinter) step(title string) {
	p.n++
	fmt.Fprintf(p.w, "%d. %s\n", p.n, title)
}

func (p *demoPrinter) post(path string, body []byte, hdr map[string]string) {
	if p.err != nil {
		return
	}
	req, err := http.NewRequestWithContext(p.ctx, "POST", p.base+path, bytes.NewReader(body))
	if err != nil {
		p.err = err
		return
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		p.err = fmt.Errorf("POST %s: %w", path, err)
		return
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	fmt.Fprintf(p.w, "   POST %s → %d %s\n\n", path, resp.StatusCode, describeAnswer(out))
	if resp.StatusCode != http.StatusOK {
		p.err = fmt.Errorf("POST %s answered %d: %s", path, resp.StatusCode, out)
	}
}

// stripe signs a sample Stripe event (changed by edit) with a fresh timestamp and POSTs it.
func (p *demoPrinter) stripe(secret, name string, edit func(map[string]any)) {
	body, err := sample(name, edit)
	if err != nil {
		p.err = errors.Join(p.err, err)
		return
	}
	sig := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: time.Now()})
	p.post("/stripe/webhook", body, map[string]string{"Content-Type": "application/json", "Stripe-Signature": sig.Header})
}

// describeAnswer renders refbridge's answer: {"status","reason"}, {"error"} or a sweep summary.
func describeAnswer(b []byte) string {
	var a struct {
		Status, Reason, Error string
		Listed                *int
		Issued, Canceled      int
		Waiting               map[string]int
	}
	if json.Unmarshal(b, &a) != nil {
		return strings.TrimSpace(string(b))
	}
	switch {
	case a.Listed != nil:
		waiting := make([]string, 0, len(a.Waiting))
		for rule, n := range a.Waiting {
			waiting = append(waiting, fmt.Sprintf("%d (%s)", n, rule))
		}
		sort.Strings(waiting)
		if len(waiting) == 0 {
			waiting = []string{"none"}
		}
		return fmt.Sprintf("sweep: %d due rewards listed, %d issued, %d canceled, waiting %s", *a.Listed, a.Issued, a.Canceled, strings.Join(waiting, ", "))
	case a.Error != "":
		return "error: " + a.Error
	}
	return a.Status + ": " + a.Reason
}

// sample reads a sample event and applies edit to its JSON.
func sample(name string, edit func(map[string]any)) ([]byte, error) {
	b, err := events.FS.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("sample event: %w", err)
	}
	if edit == nil {
		return b, nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("sample event %s: %w", name, err)
	}
	edit(m)
	return json.Marshal(m)
}

func object(ev map[string]any) map[string]any {
	data, _ := ev["data"].(map[string]any)
	obj, _ := data["object"].(map[string]any)
	if obj == nil {
		obj = map[string]any{}
	}
	return obj
}

// finalState prints the leads and rewards as RF and refbridge's ledger see them.
func finalState(ctx context.Context, w io.Writer, sim *localSim, l ledger.Store) error {
	names := map[int]string{}
	for _, u := range sim.Users() {
		names[u.ID] = u.FirstName
	}
	fmt.Fprintf(w, "\nFinal state\n\nLeads\n")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  lead\treferrer\tin Referral Factory\tin refbridge's ledger")
	for _, u := range sim.Users() {
		if u.ReferrerID == nil {
			continue
		}
		rfState := "pending"
		if u.QualifiedAt != nil {
			rfState = "qualified " + *u.QualifiedAt
		}
		ours := "—"
		q, err := l.LatestQualification(ctx, int64(u.ID))
		switch {
		case errors.Is(err, ledger.ErrNotFound):
		case err != nil:
			return err
		case !q.ReversedAt.IsZero():
			ours = "qualified, then reversed (" + q.ReversalReason + ")"
		default:
			ours = "qualified by refbridge (rule " + q.Rule + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", u.FirstName, names[*u.ReferrerID], rfState, ours)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nRewards\n")
	type row struct {
		id                              int
		recipient, what, status, reason string
	}
	var rows []row
	for _, m := range []string{"amount", "commission", "coupon", "custom"} {
		for _, r := range sim.DueRewards(m) {
			rows = append(rows, row{r.ID, names[r.RecipientID], rewardValue(m, r.Total, r.Coupon), "due", ""})
		}
		for _, r := range sim.IssuedRewards(m) {
			rows = append(rows, row{r.ID, names[r.RecipientID], rewardValue(m, r.Total, r.Coupon), r.Status, ""})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].id < rows[j].id })
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  reward\trecipient\twhat\tin Referral Factory\tthe sweep's decision")
	for _, r := range rows {
		ds, err := l.Decisions(ctx, fmt.Sprintf("due#%d", r.id))
		if err != nil {
			return err
		}
		reason := "— (issued before refbridge)"
		if len(ds) > 0 {
			last := ds[len(ds)-1]
			reason = last.Outcome + ": " + last.Reason
		}
		fmt.Fprintf(tw, "  #%d\t%s\t%s\t%s\t%s\n", r.id, r.recipient, r.what, r.status, reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nNext: `go run ./cmd/refbridge serve -rf-sim` runs the same setup until Ctrl-C, for\n`go run ./cmd/refbridge send events/...` or `stripe listen --forward-to localhost:8080/stripe/webhook`.\n")
	return nil
}

func rewardValue(metric string, total *float64, coupon *string) string {
	switch {
	case coupon != nil:
		return "coupon " + *coupon
	case total != nil && metric == "amount":
		return fmt.Sprintf("$%.2f", *total)
	case total != nil:
		return fmt.Sprintf("%s %.2f", metric, *total)
	}
	return metric
}
