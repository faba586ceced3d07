// Package logtest gives tests the production logger (observe.NewLogger, JSON, emails masked)
// writing where the whole test suite's logs can be checked: when REFBRIDGE_TEST_LOG_DIR is set
// (make test sets it), each test process appends its lines to a file in that directory, and
// TestSuiteLogs, run after the suite, fails on any test secret or unmasked email in them.
// Without the variable the lines are discarded.
//
// The logger is given no secrets to redact, unlike production's: a secret that reaches a log
// line is a bug the scan must see, not hide.
package logtest

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/refbridge/refbridge/shared/observe"
)

// DirEnv names the directory the suite's logs go to.
const DirEnv = "REFBRIDGE_TEST_LOG_DIR"

// Secrets are the test suite's secret values: none may appear in any log line.
var Secrets = []string{
	"whsec_refbridge_test", "whsec_rotated_new", "whsec_refbridge_demo", "whsec_local_test",
	"rf-shared-secret", "rotated-new", "demo-rf-webhook-secret", "local-secret",
	"sim_test_token", "sim_webhook_token", "tok_secret_value",
}

var (
	once sync.Once
	out  io.Writer = io.Discard
)

// Writer is where this process's test logs go (io.Discard without DirEnv).
func Writer(t testing.TB) io.Writer {
	t.Helper()
	once.Do(func() {
		dir := os.Getenv(DirEnv)
		if dir == "" {
			return
		}
		name := fmt.Sprintf("%s-%d.log", strings.ReplaceAll(filepath.Base(os.Args[0]), ".test", ""), os.Getpid())
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatalf("logtest: %v", err)
		}
		out = observe.Sync(f) // shared by every test of the process; closed at exit
	})
	return out
}

// Logger is observe.NewLogger at debug level on Writer, for the function (or component) named.
func Logger(t testing.TB, function string) *slog.Logger {
	t.Helper()
	return observe.NewLogger(Writer(t), observe.LogOptions{Function: function, Level: slog.LevelDebug})
}
