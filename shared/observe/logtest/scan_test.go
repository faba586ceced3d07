package logtest

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// unmasked is an address whose local part was not masked (observe masks it as x***@domain), in
// any script.
var unmasked = regexp.MustCompile(`[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}\-]+(\.[\p{L}\p{N}\-]+)+`)

// TestSuiteLogs reads every log line the test suite wrote to REFBRIDGE_TEST_LOG_DIR: each must
// be JSON, and none may hold a test secret, an unmasked email or a bearer token. make test runs it
// after the suite, with REFBRIDGE_SCAN_TEST_LOGS=1; otherwise there is nothing to scan yet.
func TestSuiteLogs(t *testing.T) {
	dir := os.Getenv(DirEnv)
	if os.Getenv("REFBRIDGE_SCAN_TEST_LOGS") != "1" || dir == "" {
		t.Skip("run by make test after the suite (REFBRIDGE_SCAN_TEST_LOGS=1 and " + DirEnv + ")")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	// The packages whose handlers log: a run that wrote none of them proves nothing.
	for _, pkg := range []string{"stripewebhook", "rfwebhook", "sweep", "referrals", "refbridge", "runtime", "security"} {
		found := false
		for _, f := range files {
			found = found || strings.HasPrefix(filepath.Base(f), pkg+"-")
		}
		if !found {
			t.Errorf("no logs from the %s tests in %s", pkg, dir)
		}
	}
	lines := 0
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if strings.TrimSpace(line) == "" {
				continue
			}
			lines++
			where := filepath.Base(f) + ":" + itoa(n)
			if !json.Valid([]byte(line)) {
				t.Errorf("%s is not JSON: %.300s", where, line)
			}
			for _, s := range Secrets {
				if strings.Contains(line, s) {
					t.Errorf("%s holds the secret %q: %.300s", where, s, line)
				}
			}
			if strings.Contains(line, "Bearer ") {
				t.Errorf("%s holds a bearer token: %.300s", where, line)
			}
			if m := unmasked.FindString(line); m != "" {
				t.Errorf("%s holds the email %s: %.300s", where, m, line)
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d log lines in %d files scanned", lines, len(files))
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
