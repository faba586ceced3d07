package bench

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/refbridge/refbridge/shared/ddbtest"
	"github.com/refbridge/refbridge/shared/lambdaruntime"
)

// function is one bootstrap the cold-start benchmark starts.
type function struct {
	name, pkg string
	// event is a first event the function answers without a remote call, so the time to the
	// first response is the cold start itself: the runtime, the configuration and the clients,
	// not DynamoDB Local's or the simulator's speed.
	event func(b *testing.B) []byte
	// answer checks the first response.
	answer func(res lambdaruntime.Result) bool
}

var functions = []function{
	{"hello", "./bench/testdata/hello", func(*testing.B) []byte { return []byte(`{}`) },
		func(res lambdaruntime.Result) bool { return res.Error == nil && string(res.Payload) == `"hello"` }},
	{"hellosdk", "./bench/testdata/hellosdk", func(*testing.B) []byte { return []byte(`{}`) },
		func(res lambdaruntime.Result) bool { return res.Error == nil && string(res.Payload) == `"hello"` }},
	{"stripe-webhook", "./functions/stripe-webhook", func(b *testing.B) []byte {
		// A signed event of a type refbridge does not handle: verified, then answered 200.
		p := bytes.Replace(fixture(b, "invoice.paid.2024-06-20.json"), []byte(`"type": "invoice.paid"`), []byte(`"type": "invoice.finalized"`), 1)
		return urlEvent(b, "/", map[string]string{"stripe-signature": sign(p)}, p)
	}, statusIs(200)},
	{"rf-webhook", "./functions/rf-webhook", func(b *testing.B) []byte {
		// A delivery without the shared secret: answered 401 before anything else.
		return urlEvent(b, "/rf/webhook/lead-created", nil, []byte(`{"id":1}`))
	}, statusIs(401)},
	{"reward-sweep", "./functions/reward-sweep", func(*testing.B) []byte {
		// Not a sweep request: the runtime library refuses it before the handler runs, so
		// this measures the start alone (a real run's first answer waits on its remote calls).
		return []byte(`[]`)
	}, func(res lambdaruntime.Result) bool { return res.Error != nil }},
}

func urlEvent(b *testing.B, path string, headers map[string]string, body []byte) []byte {
	ev := events.LambdaFunctionURLRequest{RawPath: path, Headers: headers, Body: string(body)}
	ev.RequestContext.HTTP.Method = "POST"
	raw, err := json.Marshal(ev)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

func statusIs(code int) func(lambdaruntime.Result) bool {
	return func(res lambdaruntime.Result) bool {
		var r events.LambdaFunctionURLResponse
		return res.Error == nil && json.Unmarshal(res.Payload, &r) == nil && r.StatusCode == code
	}
}

// BenchmarkColdStart starts each function's real bootstrap (built as `make build-*` builds it,
// for this machine: CGO_ENABLED=0 -tags lambda.norpc -trimpath -ldflags=-s -w) under the Lambda
// Runtime API harness, with the settings it needs, and times process start → first response,
// against a hello-world aws-lambda-go bootstrap built the same way: medians of `runs` cold
// starts each, the functions taking turns so a busy moment of a shared machine costs all alike.
// It also builds each for linux/arm64, as deployed, and reports its size and zipped size.
func BenchmarkColdStart(b *testing.B) {
	runs := size(15, 1)
	for range b.N {
		b.StopTimer()
		env := coldEnv(b)
		bins := map[string]string{}
		var res []*FunctionStart
		for _, f := range functions {
			bins[f.name] = lambdaruntime.Build(b, f.pkg)
			fs := &FunctionStart{Name: f.name, Runs: runs}
			fs.Arch, fs.Bytes, fs.ZipBytes = deployedSize(b, f.pkg, bins[f.name])
			res = append(res, fs)
		}
		ready := make([][]time.Duration, len(functions))
		answer := make([][]time.Duration, len(functions))
		b.StartTimer()
		for range runs {
			for i, f := range functions {
				r, a := coldStart(b, bins[f.name], env, f)
				ready[i], answer[i] = append(ready[i], r), append(answer[i], a)
			}
		}
		b.StopTimer()
		for i, fs := range res {
			sortDurations(ready[i])
			sortDurations(answer[i])
			fs.ReadyMS, fs.AnswerMS = ms(percentile(ready[i], 50)), ms(percentile(answer[i], 50))
			fs.AnswerMin, fs.AnswerMax = ms(answer[i][0]), ms(answer[i][len(answer[i])-1])
			fs.VsHello = fs.AnswerMS / res[0].AnswerMS
			if i > 0 {
				b.ReportMetric(fs.VsHello, fs.Name+"/hello")
				b.ReportMetric(float64(fs.Bytes)/1e6, fs.Name+"-MB")
			}
		}
		b.ReportMetric(res[0].AnswerMS, "hello-ms")
		writeResult(b, "coldstart", res)
	}
}

// coldEnv is what the functions are given: every setting they require, pointing at DynamoDB
// Local (none of the first events reaches it) and at a simulator address nobody calls.
func coldEnv(b *testing.B) map[string]string {
	_, table := ddbtest.Table(b)
	return map[string]string{
		"STATE_TABLE":               table,
		"AWS_ENDPOINT_URL_DYNAMODB": os.Getenv(ddbtest.EndpointEnv),
		"AWS_ACCESS_KEY_ID":         "local",
		"AWS_SECRET_ACCESS_KEY":     "local",
		"RF_API_URL":                "http://127.0.0.1:9/api/v2",
		"RF_API_TOKEN":              "bench_token",
		"RF_CAMPAIGN_IDS":           "1",
		"STRIPE_WEBHOOK_SECRETS":    stripeSecret,
		"RF_WEBHOOK_SECRET":         "bench-rf-webhook-secret",
	}
}

// coldStart starts a fresh process and returns the times from its start to its first request
// for an event and to its first response.
func coldStart(b *testing.B, bin string, env map[string]string, f function) (ready, answered time.Duration) {
	ev := f.event(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	rt := lambdaruntime.Start(b, bin, env)
	defer rt.Stop()
	if _, err := rt.InitError(ctx); !errors.Is(err, lambdaruntime.ErrInitSucceeded) {
		b.Fatalf("%s: init: %v\n%s", f.name, err, rt.Logs())
	}
	ready = time.Since(start)
	res, err := rt.Invoke(ctx, ev, 10*time.Second)
	if err != nil {
		b.Fatalf("%s: %v\n%s", f.name, err, rt.Logs())
	}
	answered = res.Answered.Sub(start)
	if !f.answer(res) {
		b.Fatalf("%s: unexpected first response %+v %s\n%s", f.name, res.Error, res.Payload, rt.Logs())
	}
	return ready, answered
}

// deployedSize builds pkg as `make build-<Function>` does (linux/arm64, stripped) and returns
// the bootstrap's size and the size of a zip holding it, as Lambda receives it. The CI smoke
// run (-short) measures host, the same build for this machine, to skip a cold cross-compilation.
func deployedSize(b *testing.B, pkg, host string) (arch string, size, zipped int64) {
	b.Helper()
	arch, out := "arm64", host
	if testing.Short() {
		arch = runtime.GOARCH
	} else {
		out = filepath.Join(b.TempDir(), "bootstrap")
		cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("build %s for %s: %v\n%s", pkg, arch, err, msg)
		}
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "bootstrap", Method: zip.Deflate})
	if err == nil {
		_, err = w.Write(raw)
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		b.Fatal(err)
	}
	return arch, int64(len(raw)), int64(buf.Len())
}
