// Package lambdaruntime serves the AWS Lambda Runtime API for tests, so the real bootstrap
// binaries run exactly as Lambda would run them: built for provided.al2023 (CGO_ENABLED=0,
// -tags lambda.norpc), started with a clean Lambda-like environment, asking
// GET /2018-06-01/runtime/invocation/next for each event with its request id and deadline, and
// answering on .../invocation/{id}/response or .../error (or .../init/error at cold start).
//
// The AWS Runtime Interface Emulator is not available here; the API it emulates is small and
// documented (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html), and
// aws-lambda-go's own tests fake it the same way (lambda/invoke_loop_test.go).
//
// A Runtime is one execution environment (sandbox): one process, invocations delivered one at a
// time, in order. As in Lambda, an invocation not answered by its deadline ends the process.
package lambdaruntime

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Sentinel errors of Invoke and InitError, compared with errors.Is.
var (
	// ErrExited means the process ended before answering.
	ErrExited = errors.New("lambdaruntime: the function's process exited")
	// ErrTimedOut means no answer came by the deadline (plus Grace): Lambda's "Task timed out".
	// The process has been stopped, as Lambda stops it.
	ErrTimedOut = errors.New("lambdaruntime: task timed out")
	// ErrInitSucceeded means InitError saw the runtime ask for an event: its init went well.
	ErrInitSucceeded = errors.New("lambdaruntime: init succeeded (the runtime asked for an event)")
)

// Grace is how long past an invocation's deadline Invoke still waits for the answer before it
// declares the task timed out. Lambda allows none; the grace keeps a loaded test machine's
// scheduling delays from reading as timeouts. Tests that care compare Result.Answered with
// Result.Deadline.
const Grace = time.Second

// maxPayload is Lambda's limit for a synchronous response (6 MB).
const maxPayload = 6 << 20

// FunctionError is the error document a runtime posts to .../error or /runtime/init/error
// (aws-lambda-go's messages.InvokeResponse_Error on the wire).
type FunctionError struct {
	Type    string `json:"errorType"`
	Message string `json:"errorMessage"`
}

func (e *FunctionError) Error() string { return e.Type + ": " + e.Message }

// Result is one invocation's answer.
type Result struct {
	RequestID string
	// Deadline is what the function was told (Lambda-Runtime-Deadline-Ms).
	Deadline time.Time
	// Answered is when the response or error arrived.
	Answered time.Time
	// Payload is the response body, or the error document when Error is set.
	Payload []byte
	// Error is the function's error (a POST to .../error); nil for a response.
	Error *FunctionError
}

// InitFailure is how a function's initialisation ended without it asking for an event.
type InitFailure struct {
	// Error is what the runtime posted to /runtime/init/error; nil when it exited without
	// posting (Lambda then reports Runtime.ExitError, and only the logs say why).
	Error *FunctionError
	// Payload is the raw init error document, if any.
	Payload []byte
	// ExitCode is the process's exit status; -1 when it was killed (after an init error post
	// the harness stops it, as Lambda does).
	ExitCode int
}

// Runtime is a running function: its process and the Runtime API it talks to.
type Runtime struct {
	name string
	arn  string
	cmd  *exec.Cmd
	srv  *httptest.Server
	logs logBuffer

	queue      chan *invocation
	stop       chan struct{} // closed at cleanup: releases a runtime waiting for an event
	exited     chan struct{} // closed once the process has ended and exitErr is set
	exitErr    error
	polled     chan struct{} // closed at the first GET .../next
	pollOnce   sync.Once
	initPosted chan struct{} // closed at the first POST /runtime/init/error

	mu      sync.Mutex
	pending map[string]*invocation // queued or running, not yet answered
	initErr []byte
}

type invocation struct {
	id       string
	payload  []byte
	deadline time.Time
	done     chan struct{} // closed once result is set
	result   Result
}

// Start runs binary as Lambda would: with AWS_LAMBDA_RUNTIME_API pointing at a Runtime API
// served for this test, the standard Lambda variables, PATH, an empty HOME (so no ~/.aws
// configuration leaks in) and env, and nothing else from the test's environment, so a setting
// the test does not give is really missing. A value in env replaces a default; an empty value
// removes it. The function's name is the binary's folder name (Build names it after the
// package). The process is stopped when the test ends; its stdout and stderr are in Logs.
func Start(t testing.TB, binary string, env map[string]string) *Runtime {
	t.Helper()
	name := filepath.Base(filepath.Dir(binary))
	rt := &Runtime{
		name:       name,
		arn:        "arn:aws:lambda:us-east-1:123456789012:function:" + name,
		queue:      make(chan *invocation, 64),
		stop:       make(chan struct{}),
		exited:     make(chan struct{}),
		polled:     make(chan struct{}),
		initPosted: make(chan struct{}),
		pending:    map[string]*invocation{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", rt.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", rt.answer)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", rt.answer)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", rt.initError)
	rt.srv = httptest.NewServer(mux)

	vars := map[string]string{
		"PATH":                            os.Getenv("PATH"),
		"HOME":                            t.TempDir(),
		"AWS_LAMBDA_FUNCTION_NAME":        name,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/" + name,
		"AWS_LAMBDA_LOG_STREAM_NAME":      time.Now().UTC().Format("2006/01/02") + "/[$LATEST]" + randomHex(16),
		"AWS_REGION":                      "us-east-1",
		"AWS_DEFAULT_REGION":              "us-east-1",
		"LAMBDA_TASK_ROOT":                filepath.Dir(binary),
		"TZ":                              ":UTC",
		"_HANDLER":                        "bootstrap",
	}
	for k, v := range env {
		if v == "" {
			delete(vars, k)
		} else {
			vars[k] = v
		}
	}
	vars["AWS_LAMBDA_RUNTIME_API"] = strings.TrimPrefix(rt.srv.URL, "http://")

	rt.cmd = exec.Command(binary)
	rt.cmd.Dir = filepath.Dir(binary) // /var/task
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		rt.cmd.Env = append(rt.cmd.Env, k+"="+vars[k])
	}
	// One writer for both streams: os/exec then uses one pipe, so lines stay whole and in order.
	rt.cmd.Stdout, rt.cmd.Stderr = &rt.logs, &rt.logs
	rt.cmd.WaitDelay = time.Second
	if err := rt.cmd.Start(); err != nil {
		rt.srv.Close()
		t.Fatalf("lambdaruntime: start %s: %v", binary, err)
	}
	go func() {
		rt.exitErr = rt.cmd.Wait()
		close(rt.exited)
	}()
	t.Cleanup(func() {
		rt.Stop()
		close(rt.stop)
		rt.srv.Close()
		if t.Failed() {
			t.Logf("lambdaruntime: %s logs:\n%s", rt.name, rt.Logs())
		}
	})
	return rt
}

// Invoke sends payload as one event with a fresh request id and a deadline timeout from now,
// and waits for the function's response or error. It returns an error wrapping ErrExited when
// the process ends first, and ErrTimedOut (after stopping the process, as Lambda does) when no
// answer comes by the deadline plus Grace.
func (rt *Runtime) Invoke(ctx context.Context, payload []byte, timeout time.Duration) (Result, error) {
	inv := &invocation{
		id:       newRequestID(),
		payload:  payload,
		deadline: time.Now().Add(timeout),
		done:     make(chan struct{}),
	}
	rt.mu.Lock()
	rt.pending[inv.id] = inv
	rt.mu.Unlock()
	base := Result{RequestID: inv.id, Deadline: inv.deadline}
	select {
	case rt.queue <- inv:
	case <-ctx.Done():
		rt.forget(inv)
		return base, ctx.Err()
	}
	timer := time.NewTimer(time.Until(inv.deadline) + Grace)
	defer timer.Stop()
	select {
	case <-inv.done:
		return inv.result, nil
	case <-rt.exited:
		if !rt.forget(inv) {
			return inv.result, nil // answered just before the end
		}
		return base, fmt.Errorf("%w before answering request %s (%v)", ErrExited, inv.id, rt.exitErr)
	case <-timer.C:
		if !rt.forget(inv) {
			return inv.result, nil
		}
		rt.Stop()
		return base, fmt.Errorf("%w: request %s not answered within %s; the process was stopped", ErrTimedOut, inv.id, timeout)
	case <-ctx.Done():
		if !rt.forget(inv) {
			return inv.result, nil
		}
		return base, ctx.Err()
	}
}

// forget withdraws an unanswered invocation; false means an answer has claimed it, and its
// result is (about to be) set.
func (rt *Runtime) forget(inv *invocation) bool {
	rt.mu.Lock()
	_, ok := rt.pending[inv.id]
	delete(rt.pending, inv.id)
	rt.mu.Unlock()
	if !ok {
		<-inv.done
	}
	return ok
}

// InitError waits for the function's cold start to fail: a POST to /runtime/init/error (after
// which the process is stopped, as Lambda stops it) or the process exiting before it asks for
// an event. It returns ErrInitSucceeded when the runtime asks for an event instead.
func (rt *Runtime) InitError(ctx context.Context) (InitFailure, error) {
	select {
	case <-rt.initPosted:
		rt.kill()
	case <-rt.exited:
	case <-rt.polled:
		return InitFailure{}, ErrInitSucceeded
	case <-ctx.Done():
		return InitFailure{}, ctx.Err()
	}
	<-rt.exited
	f := InitFailure{ExitCode: rt.cmd.ProcessState.ExitCode()}
	rt.mu.Lock()
	f.Payload = rt.initErr
	rt.mu.Unlock()
	if f.Payload != nil {
		f.Error = decodeError(f.Payload, "")
	}
	return f, nil
}

// Logs returns what the process has written to stdout and stderr: its CloudWatch log. While
// the process runs, a line written just before an answer may arrive just after it; once the
// process has ended (Stop), the log is complete.
func (rt *Runtime) Logs() string { return rt.logs.String() }

// Stop ends the process (SIGKILL, as Lambda ends a sandbox without extensions) and waits until
// it has exited and its output is in Logs. Invocations waiting for it fail with ErrExited.
func (rt *Runtime) Stop() {
	rt.kill()
	<-rt.exited
}

func (rt *Runtime) kill() {
	select {
	case <-rt.exited:
	default:
		_ = rt.cmd.Process.Kill()
	}
}

// next hands the runtime the next event, waiting for one as long as the runtime waits.
func (rt *Runtime) next(w http.ResponseWriter, r *http.Request) {
	rt.pollOnce.Do(func() { close(rt.polled) })
	select {
	case inv := <-rt.queue:
		h := w.Header()
		h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
		h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.deadline.UnixMilli(), 10))
		h.Set("Lambda-Runtime-Invoked-Function-Arn", rt.arn)
		h.Set("Lambda-Runtime-Trace-Id", "Root=1-"+strconv.FormatInt(time.Now().Unix(), 16)+"-"+randomHex(12)+
			";Parent="+randomHex(8)+";Sampled=0")
		h.Set("Content-Type", "application/json")
		_, _ = w.Write(inv.payload)
	case <-r.Context().Done():
	case <-rt.stop:
		http.Error(w, "the execution environment is shutting down", http.StatusGone)
	}
}

// answer takes a response or error post for a running invocation.
func (rt *Runtime) answer(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	if err != nil {
		apiError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	if len(body) > maxPayload {
		apiError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "payload over 6 MB")
		return
	}
	id := r.PathValue("id")
	rt.mu.Lock()
	inv := rt.pending[id]
	delete(rt.pending, id)
	rt.mu.Unlock()
	if inv == nil {
		apiError(w, http.StatusBadRequest, "InvalidRequestID", "no invocation "+id+" is waiting for an answer")
		return
	}
	inv.result = Result{RequestID: id, Deadline: inv.deadline, Answered: time.Now(), Payload: body}
	if strings.HasSuffix(r.URL.Path, "/error") {
		inv.result.Error = decodeError(body, r.Header.Get("Lambda-Runtime-Function-Error-Type"))
	}
	close(inv.done)
	accepted(w)
}

func (rt *Runtime) initError(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxPayload))
	rt.mu.Lock()
	if rt.initErr == nil {
		rt.initErr = append([]byte{}, body...)
		close(rt.initPosted)
	}
	rt.mu.Unlock()
	accepted(w)
}

func decodeError(body []byte, typ string) *FunctionError {
	e := &FunctionError{}
	if json.Unmarshal(body, e) != nil {
		e.Message = string(body)
	}
	if e.Type == "" {
		e.Type = typ
	}
	return e
}

func accepted(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"status":"OK"}`))
}

func apiError(w http.ResponseWriter, status int, typ, msg string) {
	b, _ := json.Marshal(FunctionError{Type: typ, Message: msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// newRequestID is a random UUID (version 4), as Lambda's request ids are.
func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// logBuffer collects the process's output while tests read it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
