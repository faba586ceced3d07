package bench

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/stripe/stripe-go/v79/webhook"

	rf "github.com/refbridge/refbridge/shared/referralfactory"
)

// writeResult saves v as the named benchmark's figures (and logs them, shortened).
func writeResult(b *testing.B, name string, v any) {
	b.Helper()
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		b.Fatal(err)
	}
	if dir := os.Getenv(ResultsEnv); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".json"), raw, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if len(raw) > 4000 {
		raw = append(raw[:4000], "…"...)
	}
	b.Logf("%s: %s", name, raw)
}

// size picks the full figure for `make bench`, or the small one for the CI smoke run
// (go test -short -bench . -benchtime=1x), which only checks that the benchmark still works.
func size(full, smoke int) int {
	if testing.Short() {
		return smoke
	}
	return full
}

const stripeSecret = "whsec_refbridge_bench"

func fixture(b testing.TB, name string) []byte {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "events", "stripe", name))
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

func sign(payload []byte) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: stripeSecret, Timestamp: time.Now()}).Header
}

// tally counts one event's remote calls. It travels in the event's context, so concurrent
// events are counted apart: the DynamoDB middleware and the RF observer add to the tally of
// the context they are called with.
type tally struct {
	mu          sync.Mutex
	ddb         map[string]int // requests by operation
	ddbRequests int
	rru, wru    float64
	// estimatedWRU are write units of refused requests (a failed condition, a canceled
	// transaction), which DynamoDB bills but returns no capacity for: estimated, 1 per item
	// (2 in a transaction), the items being under 1 KB.
	estimatedWRU float64
	rf           map[string]int // attempts by "METHOD route"
	rfCalls      int
}

type tallyKey struct{}

func withTally(ctx context.Context, t *tally) context.Context {
	return context.WithValue(ctx, tallyKey{}, t)
}

func tallyOf(ctx context.Context) *tally {
	t, _ := ctx.Value(tallyKey{}).(*tally)
	return t
}

// countDynamoDB is a DynamoDB client option: a middleware that asks for the consumed capacity
// of every request and adds the request and its units to the context's tally (requests made
// without one, such as a benchmark's setup, are not counted). It sits where wiring's metrics
// middleware does, before the SDK's retries: one count per API call.
//
// DynamoDB Local reports 1 unit per item of a TransactWriteItems; DynamoDB bills 2, so
// transactional write units are doubled here.
func countDynamoDB(o *dynamodb.Options) {
	mw := middleware.InitializeMiddlewareFunc("refbridgeBenchCount", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		t := tallyOf(ctx)
		if t == nil {
			return next.HandleInitialize(ctx, in)
		}
		askCapacity(in.Parameters)
		out, md, err := next.HandleInitialize(ctx, in)
		op := middleware.GetOperationName(ctx)
		read, write := consumed(out.Result)
		if err != nil {
			write += refusedWriteUnits(in.Parameters, err)
		}
		t.mu.Lock()
		if t.ddb == nil {
			t.ddb = map[string]int{}
		}
		t.ddb[op]++
		t.ddbRequests++
		t.rru += read
		t.wru += write
		if err != nil {
			t.estimatedWRU += refusedWriteUnits(in.Parameters, err)
		}
		t.mu.Unlock()
		return out, md, err
	})
	o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
		return s.Initialize.Add(mw, middleware.After)
	})
	// aws/aws-sdk-go-v2#3545: DynamoDB Local's error responses fail the checksum check.
	o.DisableValidateResponseChecksum = true
}

func askCapacity(params any) {
	total := types.ReturnConsumedCapacityTotal
	switch in := params.(type) {
	case *dynamodb.GetItemInput:
		in.ReturnConsumedCapacity = total
	case *dynamodb.PutItemInput:
		in.ReturnConsumedCapacity = total
	case *dynamodb.UpdateItemInput:
		in.ReturnConsumedCapacity = total
	case *dynamodb.DeleteItemInput:
		in.ReturnConsumedCapacity = total
	case *dynamodb.QueryInput:
		in.ReturnConsumedCapacity = total
	case *dynamodb.ScanInput:
		in.ReturnConsumedCapacity = total
	case *dynamodb.TransactWriteItemsInput:
		in.ReturnConsumedCapacity = total
	case *dynamodb.TransactGetItemsInput:
		in.ReturnConsumedCapacity = total
	case *dynamodb.BatchGetItemInput:
		in.ReturnConsumedCapacity = total
	case *dynamodb.BatchWriteItemInput:
		in.ReturnConsumedCapacity = total
	}
}

// consumed is the read and write units a response reports.
func consumed(result any) (read, write float64) {
	units := func(c *types.ConsumedCapacity) float64 {
		if c == nil || c.CapacityUnits == nil {
			return 0
		}
		return *c.CapacityUnits
	}
	sum := func(cs []types.ConsumedCapacity) (n float64) {
		for i := range cs {
			n += units(&cs[i])
		}
		return n
	}
	switch out := result.(type) {
	case *dynamodb.GetItemOutput:
		return units(out.ConsumedCapacity), 0
	case *dynamodb.QueryOutput:
		return units(out.ConsumedCapacity), 0
	case *dynamodb.ScanOutput:
		return units(out.ConsumedCapacity), 0
	case *dynamodb.TransactGetItemsOutput:
		return sum(out.ConsumedCapacity), 0
	case *dynamodb.BatchGetItemOutput:
		return sum(out.ConsumedCapacity), 0
	case *dynamodb.PutItemOutput:
		return 0, units(out.ConsumedCapacity)
	case *dynamodb.UpdateItemOutput:
		return 0, units(out.ConsumedCapacity)
	case *dynamodb.DeleteItemOutput:
		return 0, units(out.ConsumedCapacity)
	case *dynamodb.BatchWriteItemOutput:
		return 0, sum(out.ConsumedCapacity)
	case *dynamodb.TransactWriteItemsOutput:
		return 0, 2 * sum(out.ConsumedCapacity)
	}
	return 0, 0
}

// refusedWriteUnits estimates what a write refused by its condition costs (see tally).
func refusedWriteUnits(params any, err error) float64 {
	var ccf *types.ConditionalCheckFailedException
	var canceled *types.TransactionCanceledException
	switch {
	case errors.As(err, &ccf):
		return 1
	case errors.As(err, &canceled):
		if in, ok := params.(*dynamodb.TransactWriteItemsInput); ok {
			return 2 * float64(len(in.TransactItems))
		}
	}
	return 0
}

// observeRF counts every RF attempt (retries included) in the context's tally.
func observeRF() rf.Option {
	return rf.WithObserver(func(ctx context.Context, a rf.Attempt) {
		t := tallyOf(ctx)
		if t == nil {
			return
		}
		t.mu.Lock()
		if t.rf == nil {
			t.rf = map[string]int{}
		}
		t.rf[a.Method+" "+route(a.Path)]++
		t.rfCalls++
		t.mu.Unlock()
	})
}

// route names an RF path without its ids, e.g. "/users/{id}".
func route(p string) string {
	for _, prefix := range []string{"/rewards/issue/", "/rewards/cancel/", "/rewards/due/", "/users/"} {
		if rest, ok := strings.CutPrefix(p, prefix); ok && rest != "qualification" && rest != "search" {
			return prefix + "{id}"
		}
	}
	return p
}

// percentile of sorted durations, p in [0, 100].
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(sorted)-1))
	return sorted[i]
}

func sortDurations(d []time.Duration) { sort.Slice(d, func(i, j int) bool { return d[i] < d[j] }) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
