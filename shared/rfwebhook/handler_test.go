package rfwebhook

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/idempotency"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/rfevents"
	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

const secret = "rf-shared-secret"

type env struct {
	url    string // refbridge's rf-webhook base: url + "/rf/webhook/<kind>"
	ledger ledger.Store
	sim    *rfsimtest.Sim
	dec    *referrals.Service
}

// both runs a test against the in-memory state and DynamoDB Local, with the RF simulator's
// outbound webhooks pointed at the handler (served over HTTP, as the local server does).
func both(t *testing.T, test func(t *testing.T, e env)) {
	bothWith(t, nil, test)
}

// bothWith is both with the handler changed by mod before it serves.
func bothWith(t *testing.T, mod func(*Handler), test func(t *testing.T, e env)) {
	for _, name := range []string{"memory", "dynamodb"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var l ledger.Store = ledger.NewMemory()
			var idem idempotency.Store = idempotency.NewMemory()
			if name == "dynamodb" {
				db, table := ddbtest.Table(t)
				l, idem = ledger.NewDynamo(db, table), idempotency.NewDynamo(db, table)
			}
			sim := rfsimtest.New(t)
			sim.SeedDemo(t)
			log := logtest.Logger(t, "rf-webhook")
			client, err := rf.New(sim.URL, sim.Token, rf.WithLimiter(nil), rf.WithLogger(log),
				rf.WithRetryPolicy(rf.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, MaxRetryAfter: time.Second}))
			if err != nil {
				t.Fatal(err)
			}
			th, _ := config.ParseThreshold("2000")
			dec := referrals.New(l, client, referrals.Settings{Threshold: th, UnmatchedRetry: 72 * time.Hour}, nil, log)
			h := &Handler{Secrets: []string{"rotated-new", secret}, Fields: rfevents.FieldNames{"code": "referral_code"},
				CampaignIDs: []int64{1}, RF: client, Ledger: l, Retrier: dec, Once: idempotency.New(idem, idempotency.Config{}), Log: log}
			if mod != nil {
				mod(h)
			}
			srv := httptest.NewServer(httpx.HTTP(h))
			t.Cleanup(srv.Close)
			test(t, env{url: srv.URL + "/rf/webhook/", ledger: l, sim: sim, dec: dec})
		})
	}
}

// hook points one RF event at the handler like an RF admin would: the kind in the URL, the
// secret in a custom header, the code renamed to referral_code and the id not sent.
func (e env) hook(t *testing.T, event, kind, format string, duplicates int) {
	t.Helper()
	err := e.sim.Server.AddWebhook(rfsim.Webhook{Event: event, URL: e.url + kind, Format: format, Duplicates: duplicates,
		Headers: map[string]string{"X-Webhook-Secret": secret}, Fields: map[string]string{"code": "referral_code", "id": ""}})
	if err != nil {
		t.Fatal(err)
	}
}

func post(t *testing.T, url, contentType, body string, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTheRFToRefbridgeLoop(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		e.hook(t, "lead_created", "lead-created", "json", 2) // delivered three times
		e.hook(t, "lead_qualified", "lead-qualified", "form", 0)
		e.hook(t, "reward_issued", "reward-issued", "json", 0)
		e.hook(t, "referrer_joined", "referrer-joined", "form", 0)

		ref := e.sim.Referrer(t, 1, "zoe@example.com")
		lead := e.sim.Lead(t, 1, ref.Code, "yan@example.com")
		e.sim.WaitIdle(t)
		got, err := e.ledger.LeadByCode(ctx, lead.Code)
		if err != nil || got.ID != int64(lead.ID) || got.ReferrerID != int64(ref.ID) || got.EmailHash != ledger.HashEmail("yan@example.com") {
			t.Fatalf("lead in the ledger: %+v %v", got, err)
		}
		if r, err := e.ledger.LeadByID(ctx, int64(ref.ID)); err != nil || r.ReferrerID != 0 {
			t.Fatalf("referrer in the ledger: %+v %v", r, err)
		}

		e.sim.Qualify(t, lead.ID)
		e.sim.WaitIdle(t)
		q, err := e.ledger.StandingQualification(ctx, int64(lead.ID))
		if err != nil || q.Origin != ledger.OriginRFWebhook || q.ReferrerID != int64(ref.ID) {
			t.Fatalf("qualification from RF: %+v %v", q, err)
		}
		// RF says only the date: RF made it from that date's start on (EarliestAt), and the hold
		// counts from when refbridge learned of it (At).
		u, _ := e.sim.Server.User(lead.ID)
		dated, err := time.Parse("2006-01-02", *u.QualifiedAt)
		if err != nil || !q.EarliestAt.Equal(dated) || q.At.Before(dated) || time.Since(q.At) > time.Minute {
			t.Fatalf("qualification dated %s recorded at [%v, %v] (%v)", *u.QualifiedAt, q.EarliestAt, q.At, err)
		}

		// The referrer's reward became due in RF; an admin issues it by hand in the dashboard.
		var dueID int
		for _, d := range e.sim.Server.DueRewards("amount") {
			if d.RecipientID == ref.ID {
				dueID = d.ID
			}
		}
		if _, err := e.sim.Server.IssueReward(dueID); err != nil {
			t.Fatal(err)
		}
		e.sim.WaitIdle(t)
		r, err := e.ledger.DueRewardRecord(ctx, int64(dueID))
		if err != nil || r.State != ledger.RewardIssued || r.RecipientID != int64(ref.ID) {
			t.Fatalf("issued reward in the ledger: %+v %v", r, err)
		}
		// It counts in the referrer's month, once however often it was delivered.
		if n, err := e.ledger.IssuedInMonth(ctx, int64(ref.ID), r.SettledAt); err != nil || n != 1 {
			t.Fatalf("rewards issued to the referrer this month: %d %v, want 1", n, err)
		}
		// Concurrent duplicates may be told 503 ("in progress") and retried by RF; every copy of
		// every delivery must end in a 200.
		final := map[string]int{}
		for _, d := range e.sim.Server.Deliveries() {
			if d.Status != 200 && d.Status != 503 {
				t.Errorf("delivery %s answered %d", d.Event, d.Status)
			}
			final[d.Event+"#"+strconv.Itoa(d.Copy)] = d.Status
		}
		for k, st := range final {
			if st != 200 {
				t.Errorf("delivery %s ended with %d", k, st)
			}
		}
	})
}

func TestQualifiedBeforeCreatedEndsTheSame(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		hdr := map[string]string{"X-Webhook-Secret": secret}
		lead := e.sim.Lead(t, 1, "aLiCeRef", "out-of-order@example.com")
		e.sim.Qualify(t, lead.ID)
		if s, b := post(t, e.url+"lead-qualified", "application/json", `{"referral_code":"`+lead.Code+`"}`, hdr); s != 200 || !strings.Contains(b, "processed") {
			t.Fatalf("qualified first: %d %s", s, b)
		}
		if s, b := post(t, e.url+"lead-created", "application/x-www-form-urlencoded", "referral_code="+lead.Code, hdr); s != 200 {
			t.Fatalf("created second: %d %s", s, b)
		}
		l, err := e.ledger.LeadByCode(ctx, lead.Code)
		if err != nil || l.ReferrerID != 1 {
			t.Fatalf("lead %+v %v", l, err)
		}
		if _, err := e.ledger.StandingQualification(ctx, int64(lead.ID)); err != nil {
			t.Fatalf("qualification: %v", err)
		}
		// And the same qualified delivery again is a duplicate.
		if s, b := post(t, e.url+"lead-qualified", "application/json", `{"referral_code":"`+lead.Code+`"}`, hdr); s != 200 || !strings.Contains(b, "duplicate") {
			t.Fatalf("again: %d %s", s, b)
		}
	})
}

func TestRejectedDeliveriesChangeNothing(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		good := map[string]string{"X-Webhook-Secret": secret}
		tests := []struct {
			name, kind, body string
			header           map[string]string
			status           int
			body2            string
		}{
			{"no secret", "lead-created", `{"referral_code":"eRiNlEad"}`, nil, 401, `{"error":"unauthorized"}`},
			{"wrong secret", "lead-created", `{"referral_code":"eRiNlEad"}`, map[string]string{"X-Webhook-Secret": "guess"}, 401, `{"error":"unauthorized"}`},
			{"unknown kind", "lead-deleted", `{"referral_code":"eRiNlEad"}`, good, 404, ""},
			{"no identity", "lead-created", `{"first_name":"Ann"}`, good, 400, "referral_code"},
			{"reward without its id", "reward-issued", `{"referral_code":"eRiNlEad"}`, good, 400, "reward_issued_id"},
		}
		before := len(e.sim.Server.Calls())
		for _, tt := range tests {
			s, b := post(t, e.url+tt.kind, "application/json", tt.body, tt.header)
			if s != tt.status || !strings.Contains(b, tt.body2) {
				t.Errorf("%s: %d %s", tt.name, s, b)
			}
		}
		if n := len(e.sim.Server.Calls()) - before; n != 0 {
			t.Errorf("rejected deliveries made %d RF calls", n)
		}
		if _, err := e.ledger.LeadByCode(context.Background(), "eRiNlEad"); err == nil {
			t.Error("a rejected delivery recorded the lead")
		}
		// A user RF does not know: acknowledged, ignored, nothing recorded.
		if s, b := post(t, e.url+"lead-created", "application/json", `{"referral_code":"nObOdY00"}`, good); s != 200 || !strings.Contains(b, "unknown") {
			t.Errorf("unknown user: %d %s", s, b)
		}
	})
}

func TestLeadCreatedAfterItsInvoiceWasPaid(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		// Yan pays before RF tells refbridge about the lead: the invoice waits.
		inv := stripeevents.Invoice{ID: "in_early", CustomerID: "cus_yan", CustomerEmail: "yan@example.com", Currency: "usd", AmountPaid: 4900}
		if res, err := e.dec.InvoicePaid(ctx, inv, time.Now()); err != nil || res.Outcome != referrals.Unmatched {
			t.Fatalf("early invoice: %+v %v", res, err)
		}
		e.hook(t, "lead_created", "lead-created", "json", 0)
		lead := e.sim.Lead(t, 1, "aLiCeRef", "Yan@Example.com")
		e.sim.WaitIdle(t)
		u, _ := e.sim.Server.User(lead.ID)
		if u.QualifiedAt == nil {
			t.Fatal("the waiting invoice was not processed when the lead appeared")
		}
		if w, _ := e.ledger.UnmatchedInvoice(ctx, "in_early"); w.Status != ledger.UnmatchedMatched {
			t.Fatalf("unmatched record %+v", w)
		}
	})
}

func TestRFDownAnswers503(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		if _, err := e.sim.Server.AddFault(rfsim.Fault{Match: "GET /api/v2/users/{identifier}", Status: 503, Count: 2}); err != nil {
			t.Fatal(err)
		}
		hdr := map[string]string{"X-Webhook-Secret": secret}
		if s, b := post(t, e.url+"lead-created", "application/json", `{"referral_code":"eRiNlEad"}`, hdr); s != 503 || !strings.Contains(b, "error") {
			t.Fatalf("%d %s", s, b)
		}
		if _, err := e.ledger.LeadByCode(context.Background(), "eRiNlEad"); err == nil {
			t.Fatal("recorded although RF was down")
		}
		e.sim.Server.ClearFaults()
		if s, b := post(t, e.url+"lead-created", "application/json", `{"referral_code":"eRiNlEad"}`, hdr); s != 200 {
			t.Fatalf("retry: %d %s", s, b)
		}
	})
}

// RF may send a webhook before its API shows the change: refbridge asks for a retry (503) and
// stores nothing, so the retry is judged afresh.
func TestWebhookAheadOfTheAPIIsRetried(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		hdr := map[string]string{"X-Webhook-Secret": secret}
		if s, b := post(t, e.url+"reward-issued", "application/json", `{"referral_code":"aLiCeRef","reward_issued_id":999}`, hdr); s != 503 {
			t.Fatalf("reward not listed yet: %d %s", s, b)
		}
		if s, b := post(t, e.url+"lead-qualified", "application/json", `{"referral_code":"eRiNlEad"}`, hdr); s != 503 {
			t.Fatalf("lead not qualified yet: %d %s", s, b)
		}
		e.sim.Qualify(t, 5)
		if s, b := post(t, e.url+"lead-qualified", "application/json", `{"referral_code":"eRiNlEad"}`, hdr); s != 200 || !strings.Contains(b, "processed") {
			t.Fatalf("once RF shows it: %d %s", s, b)
		}
	})
}

// lockedBuffer collects log lines written by the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// RF reports a reward issued that the ledger recorded canceled: the first record stands (a
// settlement is recorded once), and the disagreement is logged for someone to look at.
func TestRewardSettledDifferentlyIsLogged(t *testing.T) {
	logs := &lockedBuffer{}
	bothWith(t, func(h *Handler) {
		h.Log = observe.NewLogger(io.MultiWriter(logs, logtest.Writer(t)), observe.LogOptions{Function: "rf-webhook", Level: slog.LevelDebug})
	}, func(t *testing.T, e env) {
		ctx := context.Background()
		const alicesForDave = 1 // the demo seed's due reward
		if _, err := e.ledger.MarkRewardSettled(ctx, ledger.Settlement{ID: alicesForDave, RecipientID: 1, State: ledger.RewardCanceled,
			By: ledger.SettledBySweep}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sim.Server.IssueReward(alicesForDave); err != nil { // by hand in RF
			t.Fatal(err)
		}
		hdr := map[string]string{"X-Webhook-Secret": secret}
		if s, b := post(t, e.url+"reward-issued", "application/json", `{"referral_code":"aLiCeRef","reward_issued_id":1}`, hdr); s != 200 || !strings.Contains(b, "already recorded") {
			t.Fatalf("%d %s", s, b)
		}
		if r, _ := e.ledger.DueRewardRecord(ctx, alicesForDave); r.State != ledger.RewardCanceled {
			t.Fatalf("record %+v", r)
		}
		if !strings.Contains(logs.String(), "settled differently") || !strings.Contains(logs.String(), `"recorded":"canceled"`) {
			t.Fatalf("no warning in %s", logs.String())
		}
	})
}

// Found by the reliability suite (reliability/, seed 169101451293640 at 200 events): RF's
// lead-qualified webhook for a qualification refbridge made is handled while refbridge's
// reversal of it (a refund) is in flight: the ledger already records the reversal, RF still
// shows the lead qualified. Recording a new qualification from that stale read would leave the
// ledger standing while RF ends unqualified (a later payment then never requalifies the lead
// in RF, and the sweep issues the reward of a refunded lead). The webhook is retried instead;
// once the reversal is done and RF shows the lead pending, it is still retried (RF is behind);
// only RF qualifying the lead again after that is recorded.
func TestLeadQualifiedDuringRefbridgesReversalIsRetried(t *testing.T) {
	both(t, func(t *testing.T, e env) {
		ctx := context.Background()
		hdr := map[string]string{"X-Webhook-Secret": secret}
		q1, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: 5, ReferrerID: 2, Origin: ledger.OriginRefbridge})
		if err != nil {
			t.Fatal(err)
		}
		e.sim.Qualify(t, 5)
		if _, err := e.ledger.Reverse(ctx, q1.Ref(), time.Time{}, "refund"); err != nil {
			t.Fatal(err)
		}
		latestStands := func(want bool) {
			t.Helper()
			q, err := e.ledger.LatestQualification(ctx, 5)
			if err != nil || q.Standing() != want {
				t.Fatalf("Erin's latest qualification: %+v %v, standing want %v", q, err, want)
			}
		}
		if s, b := post(t, e.url+"lead-qualified", "application/json", `{"referral_code":"eRiNlEad"}`, hdr); s != 503 {
			t.Fatalf("reversal begun, RF not unqualified yet: %d %s", s, b)
		}
		latestStands(false)
		target := ledger.QualificationTarget(5, q1.Seq)
		if _, err := e.ledger.BeginIntent(ctx, ledger.Intent{Kind: ledger.IntentUnqualify, Target: target, Ref: "charge#ch_1"}); err != nil {
			t.Fatal(err)
		}
		if s, b := post(t, e.url+"lead-qualified", "application/json", `{"referral_code":"eRiNlEad"}`, hdr); s != 503 {
			t.Fatalf("unqualify under way: %d %s", s, b)
		}
		if _, err := e.sim.Server.Qualify(rfsim.UserRef{ID: 5}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ledger.FinishIntent(ctx, ledger.IntentUnqualify, target, ledger.IntentDone, ""); err != nil {
			t.Fatal(err)
		}
		if s, b := post(t, e.url+"lead-qualified", "application/json", `{"referral_code":"eRiNlEad"}`, hdr); s != 503 {
			t.Fatalf("unqualified in RF: %d %s", s, b)
		}
		latestStands(false)
		// An RF admin qualifies Erin again: that is news, and recorded.
		e.sim.Qualify(t, 5)
		if s, b := post(t, e.url+"lead-qualified", "application/json", `{"referral_code":"eRiNlEad"}`, hdr); s != 200 || !strings.Contains(b, "processed") {
			t.Fatalf("qualified again in RF: %d %s", s, b)
		}
		latestStands(true)
	})
}

// afterRead runs a hook right after the handler reads a lead's latest qualification: what a
// concurrent delivery may do between that read and the handler's write.
type afterRead struct {
	Ledger
	hook func()
}

func (a *afterRead) LatestQualification(ctx context.Context, leadID int64) (ledger.Qualification, error) {
	q, err := a.Ledger.LatestQualification(ctx, leadID)
	if a.hook != nil {
		a.hook()
		a.hook = nil
	}
	return q, err
}

// The same as the read in the reliability suite's seed 173268885941312 (soak, DynamoDB
// throttling stretching the gap): the handler finds no qualification of Erin, and before it
// records RF's, refbridge records its own and reverses it (a refund). The webhook's decision
// was about the first generation: it must not become a standing second one.
func TestLeadQualifiedRacingAReversalIsRetried(t *testing.T) {
	var wrappers sync.Map // the store → its wrapper, one per subtest
	bothWith(t, func(h *Handler) {
		w := &afterRead{Ledger: h.Ledger}
		wrappers.Store(h.Ledger, w)
		h.Ledger = w
	}, func(t *testing.T, e env) {
		ctx := context.Background()
		v, _ := wrappers.Load(e.ledger)
		wrapped := v.(*afterRead)
		hdr := map[string]string{"X-Webhook-Secret": secret}
		e.sim.Qualify(t, 5)
		wrapped.hook = func() {
			q1, err := e.ledger.Qualify(ctx, ledger.Qualification{LeadID: 5, ReferrerID: 2, Origin: ledger.OriginRefbridge})
			if err == nil {
				_, err = e.ledger.Reverse(ctx, q1.Ref(), time.Time{}, "refund")
			}
			if err != nil {
				t.Error(err)
			}
		}
		if s, b := post(t, e.url+"lead-qualified", "application/json", `{"referral_code":"eRiNlEad"}`, hdr); s != 503 {
			t.Fatalf("a qualification recorded and reversed since the read: %d %s", s, b)
		}
		if q, err := e.ledger.LatestQualification(ctx, 5); err != nil || q.Seq != 1 || q.Standing() {
			t.Fatalf("Erin's latest qualification: %+v %v, want generation 1, reversed", q, err)
		}
	})
}
