// Command echo is a tiny Lambda bootstrap for the lambdaruntime harness's own tests: each field
// of the event asks for one behaviour, and ECHO_INIT makes its cold start fail.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type request struct {
	Echo    json.RawMessage `json:"echo"`     // answered as is
	Error   string          `json:"error"`    // returned as the function's error
	Env     []string        `json:"env"`      // answered with these variables' values
	Context bool            `json:"context"`  // answered with the invocation's metadata
	SleepMS int             `json:"sleep_ms"` // sleeps, deaf to the deadline
	Exit    int             `json:"exit"`     // the process exits with this status
	Log     string          `json:"log"`      // written to stdout and stderr
}

func main() {
	switch os.Getenv("ECHO_INIT") {
	case "exit": // as refbridge's mains do on a setup error
		fmt.Println(`{"level":"ERROR","msg":"echo cannot start","error":"ECHO_SETTING: required"}`)
		os.Exit(3)
	case "post": // as a runtime that reports its init error, then waits to be stopped
		url := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/init/error"
		resp, err := http.Post(url, "application/json",
			strings.NewReader(`{"errorType":"Runtime.ConfigError","errorMessage":"ECHO_SETTING: required"}`))
		if err != nil || resp.StatusCode != http.StatusAccepted {
			os.Exit(5)
		}
		time.Sleep(time.Hour)
	}
	lambda.Start(handle)
}

func handle(ctx context.Context, r request) (any, error) {
	if r.Log != "" {
		fmt.Fprintln(os.Stdout, "stdout: "+r.Log)
		fmt.Fprintln(os.Stderr, "stderr: "+r.Log)
	}
	if r.SleepMS > 0 {
		time.Sleep(time.Duration(r.SleepMS) * time.Millisecond)
	}
	switch {
	case r.Exit != 0:
		os.Exit(r.Exit)
	case r.Error != "":
		return nil, errors.New(r.Error)
	case r.Env != nil:
		vals := map[string]*string{}
		for _, k := range r.Env {
			if v, ok := os.LookupEnv(k); ok {
				vals[k] = &v
			} else {
				vals[k] = nil
			}
		}
		return vals, nil
	case r.Context:
		lc, _ := lambdacontext.FromContext(ctx)
		dl, _ := ctx.Deadline()
		return map[string]any{"request_id": lc.AwsRequestID, "arn": lc.InvokedFunctionArn, "deadline_ms": dl.UnixMilli()}, nil
	}
	return r.Echo, nil
}
