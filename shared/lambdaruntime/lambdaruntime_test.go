package lambdaruntime_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/lambdaruntime"
)

const echoPkg = "./shared/lambdaruntime/testdata/echo"

// leaked is set in the test process only: a function must never see it.
const leaked = "LAMBDARUNTIME_TEST_LEAK"

func TestMain(m *testing.M) {
	os.Setenv(leaked, "from the test process")
	code := m.Run()
	lambdaruntime.RemoveBuilds()
	os.Exit(code)
}

func start(t *testing.T, env map[string]string) *lambdaruntime.Runtime {
	t.Helper()
	return lambdaruntime.Start(t, lambdaruntime.Build(t, echoPkg), env)
}

func TestInvoke(t *testing.T) {
	t.Parallel()
	rt := start(t, map[string]string{"ECHO_SETTING": "given", "AWS_REGION": "eu-west-1", "TZ": ""})
	tests := []struct {
		name    string
		payload string
		check   func(t *testing.T, res lambdaruntime.Result)
	}{
		{"response", `{"echo":{"a":[1,2]}}`, func(t *testing.T, res lambdaruntime.Result) {
			if res.Error != nil || string(res.Payload) != `{"a":[1,2]}` {
				t.Errorf("%+v %s", res.Error, res.Payload)
			}
		}},
		{"error", `{"error":"boom"}`, func(t *testing.T, res lambdaruntime.Result) {
			if res.Error == nil || res.Error.Message != "boom" || res.Error.Type != "errorString" {
				t.Errorf("%+v %s", res.Error, res.Payload)
			}
		}},
		{"undecodable event", `[1]`, func(t *testing.T, res lambdaruntime.Result) {
			if res.Error == nil || res.Error.Type != "UnmarshalTypeError" {
				t.Errorf("%+v %s", res.Error, res.Payload)
			}
		}},
		{"invocation metadata", `{"context":true}`, func(t *testing.T, res lambdaruntime.Result) {
			var got struct {
				RequestID  string `json:"request_id"`
				ARN        string `json:"arn"`
				DeadlineMS int64  `json:"deadline_ms"`
			}
			if err := json.Unmarshal(res.Payload, &got); err != nil {
				t.Fatal(err)
			}
			if got.RequestID != res.RequestID || got.DeadlineMS != res.Deadline.UnixMilli() || !strings.HasSuffix(got.ARN, ":function:echo") {
				t.Errorf("%+v, result %+v", got, res)
			}
			if res.Answered.After(res.Deadline) {
				t.Errorf("answered at %s, after the deadline %s", res.Answered, res.Deadline)
			}
		}},
		{"environment", `{"env":["` + leaked + `","ECHO_SETTING","AWS_REGION","TZ","AWS_LAMBDA_FUNCTION_NAME","_HANDLER","LAMBDA_TASK_ROOT"]}`,
			func(t *testing.T, res lambdaruntime.Result) {
				var got map[string]*string
				if err := json.Unmarshal(res.Payload, &got); err != nil {
					t.Fatal(err)
				}
				want := map[string]string{"ECHO_SETTING": "given", "AWS_REGION": "eu-west-1", "AWS_LAMBDA_FUNCTION_NAME": "echo", "_HANDLER": "bootstrap"}
				for k, v := range want {
					if got[k] == nil || *got[k] != v {
						t.Errorf("%s = %v, want %q", k, got[k], v)
					}
				}
				if got[leaked] != nil || got["TZ"] != nil || got["LAMBDA_TASK_ROOT"] == nil {
					t.Errorf("environment %s", res.Payload)
				}
			}},
	}
	// One process answers every invocation in turn, as a warm sandbox does.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := rt.Invoke(t.Context(), []byte(tt.payload), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, res)
		})
	}
}

func TestLogsHoldStdoutAndStderr(t *testing.T) {
	t.Parallel()
	rt := start(t, nil)
	if _, err := rt.Invoke(t.Context(), []byte(`{"log":"hello"}`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	rt.Stop()
	if logs := rt.Logs(); !strings.Contains(logs, "stdout: hello\n") || !strings.Contains(logs, "stderr: hello\n") {
		t.Errorf("logs %q", logs)
	}
}

func TestInvokeEndsWithTheProcess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		payload string
		timeout time.Duration
		want    error
	}{
		{"exit", `{"exit":7}`, 10 * time.Second, lambdaruntime.ErrExited},
		{"deadline passed", `{"sleep_ms":60000}`, 500 * time.Millisecond, lambdaruntime.ErrTimedOut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rt := start(t, nil)
			began := time.Now()
			res, err := rt.Invoke(t.Context(), []byte(tt.payload), tt.timeout)
			if !errors.Is(err, tt.want) || res.RequestID == "" || res.Payload != nil {
				t.Fatalf("%+v %v", res, err)
			}
			if waited := time.Since(began); waited > tt.timeout+lambdaruntime.Grace+5*time.Second {
				t.Errorf("Invoke returned after %s", waited)
			}
			// The sandbox is gone: the next invocation cannot run.
			if _, err := rt.Invoke(t.Context(), []byte(`{}`), time.Second); !errors.Is(err, lambdaruntime.ErrExited) {
				t.Errorf("next invocation: %v", err)
			}
		})
	}
}

func TestInvokeStopsWithTheContext(t *testing.T) {
	t.Parallel()
	rt := start(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := rt.Invoke(ctx, []byte(`{"sleep_ms":2000}`), time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestInitError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		init     string
		err      error
		posted   bool
		exitCode int
	}{
		{"exits without posting", "exit", nil, false, 3},
		{"posts, then is stopped", "post", nil, true, -1},
		{"init succeeds", "", lambdaruntime.ErrInitSucceeded, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rt := start(t, map[string]string{"ECHO_INIT": tt.init})
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			f, err := rt.InitError(ctx)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if (f.Error != nil) != tt.posted || f.ExitCode != tt.exitCode {
				t.Fatalf("%+v (error %v)", f, f.Error)
			}
			if tt.posted && (f.Error.Type != "Runtime.ConfigError" || f.Error.Message != "ECHO_SETTING: required") {
				t.Errorf("posted %s", f.Payload)
			}
			if !tt.posted && !strings.Contains(rt.Logs(), "ECHO_SETTING: required") {
				t.Errorf("logs %q", rt.Logs())
			}
		})
	}
}
