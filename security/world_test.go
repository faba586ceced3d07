package security

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/stripe/stripe-go/v79/webhook"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/httpx"
	"github.com/refbridge/refbridge/shared/idempotency"
	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/observe"
	"github.com/refbridge/refbridge/shared/observe/logtest"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/referrals"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
	"github.com/refbridge/refbridge/shared/rfwebhook"
	"github.com/refbridge/refbridge/shared/stripewebhook"
)

// The secrets the handlers are configured with: two of each, as during a rotation. Every one
// is in logtest.Secrets, so the suite's log scan looks for them too.
const (
	stripeSecret    = "whsec_refbridge_test"
	stripeSecretNew = "whsec_rotated_new"
	rfSecret        = "rf-shared-secret"
	rfSecretNew     = "rotated-new"
)

// world is one row's refbridge: both webhook functions behind the Lambda Function URL adapter,
// on a fresh DynamoDB Local table, against an RF simulator seeded with the demo campaign.
type world struct {
	stripe, rf func(context.Context, events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error)
	db         *dynamodb.Client
	table      string
	ledger     ledger.Store
	sim        *rfsimtest.Sim
	logs       *syncBuffer
}

func newWorld(t *testing.T) *world {
	t.Helper()
	db, table := ddbtest.Table(t)
	l, idem := ledger.NewDynamo(db, table), idempotency.NewDynamo(db, table)
	sim := rfsimtest.New(t)
	sim.SeedDemo(t)
	logs := &syncBuffer{}
	out := io.MultiWriter(logs, logtest.Writer(t)) // the suite's log scan reads these too
	stripeLog := observe.NewLogger(out, observe.LogOptions{Function: "stripe-webhook", Level: slog.LevelDebug})
	rfLog := observe.NewLogger(out, observe.LogOptions{Function: "rf-webhook", Level: slog.LevelDebug})
	client, err := rf.New(sim.URL, sim.Token, rf.WithLimiter(nil), rf.WithLogger(rfLog), rf.WithAttemptTimeout(2*time.Second),
		rf.WithRetryPolicy(rf.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, MaxRetryAfter: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	th, err := config.ParseThreshold("2000")
	if err != nil {
		t.Fatal(err)
	}
	dec := referrals.New(l, client, referrals.Settings{CampaignIDs: []int64{1}, SignupCampaignID: 1, Threshold: th,
		UnmatchedRetry: 72 * time.Hour}, nil, stripeLog)
	sh := &stripewebhook.Handler{Secrets: []string{stripeSecretNew, stripeSecret}, Decisions: dec,
		Once: idempotency.New(idem, idempotency.Config{}), Log: stripeLog, Metrics: observe.New(out, "stripe-webhook")}
	rh := &rfwebhook.Handler{Secrets: []string{rfSecretNew, rfSecret}, CampaignIDs: []int64{1}, RF: client, Ledger: l,
		Retrier: dec, Once: idempotency.New(idem, idempotency.Config{}), Log: rfLog, Metrics: observe.New(out, "rf-webhook")}
	return &world{stripe: httpx.FunctionURL(sh), rf: httpx.FunctionURL(rh), db: db, table: table, ledger: l, sim: sim, logs: logs}
}

// snapshot is the whole table: "id|sk" → the item as canonical JSON.
type snapshot map[string]string

func (w *world) snapshot(t *testing.T) snapshot {
	t.Helper()
	s := snapshot{}
	p := dynamodb.NewScanPaginator(w.db, &dynamodb.ScanInput{TableName: aws.String(w.table), ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		for _, item := range page.Items {
			var m map[string]any
			if err := attributevalue.UnmarshalMap(item, &m); err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			s[fmt.Sprint(m["id"], "|", m["sk"])] = string(b)
		}
	}
	return s
}

// changed lists the keys of the items added, changed or removed from a to b.
func changed(a, b snapshot) []string {
	var out []string
	for k, v := range b {
		if a[k] != v {
			out = append(out, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// dump is the snapshot as one text, for searching it.
func (s snapshot) dump() string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(s[k])
		b.WriteByte('\n')
	}
	return b.String()
}

// calls are the RF calls logged after seq, as "METHOD path".
func (w *world) calls(seq int64) []string {
	var out []string
	for _, c := range w.sim.Server.CallsSince(seq) {
		out = append(out, c.Method+" "+c.Path)
	}
	return out
}

func (w *world) lastCall() int64 {
	cs := w.sim.Server.Calls()
	if len(cs) == 0 {
		return 0
	}
	return cs[len(cs)-1].Seq
}

// syncBuffer collects the log lines of one world.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The requests, as a Lambda Function URL delivers them (header names lower-cased).

func stripeRequest(body, signature string) events.LambdaFunctionURLRequest {
	ev := events.LambdaFunctionURLRequest{RawPath: "/", Body: body,
		Headers: map[string]string{"content-type": "application/json; charset=utf-8", "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}}
	if signature != "" {
		ev.Headers["stripe-signature"] = signature
	}
	ev.RequestContext.HTTP.Method = "POST"
	return ev
}

func rfRequest(kind, contentType, body string, headers map[string]string) events.LambdaFunctionURLRequest {
	ev := events.LambdaFunctionURLRequest{RawPath: "/rf/webhook/" + kind, Body: body, Headers: map[string]string{}}
	if contentType != "" {
		ev.Headers["content-type"] = contentType
	}
	for k, v := range headers {
		ev.Headers[strings.ToLower(k)] = v
	}
	ev.RequestContext.HTTP.Method = "POST"
	return ev
}

// sign is the Stripe-Signature header of payload signed with secret at a time.
func sign(payload []byte, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: at}).Header
}

// signed is a Stripe delivery of payload signed now with the configured secret.
func signed(payload []byte) events.LambdaFunctionURLRequest {
	return stripeRequest(string(payload), sign(payload, stripeSecret, time.Now()))
}

func fixture(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "events", path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edited is a Stripe fixture with its event changed by edit (m is the event; its object is
// m["data"]["object"]).
func edited(t *testing.T, file string, edit func(ev, obj map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(fixture(t, "stripe/"+file), &m); err != nil {
		t.Fatal(err)
	}
	edit(m, m["data"].(map[string]any)["object"].(map[string]any))
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// allSecrets are every secret the handlers or the simulator hold.
func allSecrets(w *world) []string {
	return slices.Concat(logtest.Secrets, []string{stripeSecret, stripeSecretNew, rfSecret, rfSecretNew, w.sim.Token})
}

// anyEmail finds an address in any script (the observe package's pattern is ASCII only).
var anyEmail = regexp.MustCompile(`[^\s"'<>(),;:@\\/=&]+@[^\s"'<>(),;:@\\/=&]+\.[^\s"'<>(),;:@\\/=&]+`)
