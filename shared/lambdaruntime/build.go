package lambdaruntime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// builds are the bootstraps built by this test binary, by package path.
var builds struct {
	mu   sync.Mutex
	dir  string // made at the first build, removed by RemoveBuilds
	bins map[string]*build
}

// compiling lets one go build run at a time: bootstraps share nearly all their packages, and on
// a cold build cache concurrent builds would each compile them (three times the work); one
// after the other, the second and third only compile their main package and link.
var compiling sync.Mutex

type build struct {
	once sync.Once
	path string
	err  error
}

// Build builds the main package pkg (a path relative to the module root, such as
// "./functions/stripe-webhook") as Lambda's provided.al2023 runtime gets it, a `bootstrap` built
// with CGO_ENABLED=0 -tags lambda.norpc -trimpath, but for this machine's OS and architecture,
// and returns the binary's path. Each package is built once per test binary and shared by every
// test; the binary sits in a folder named after the package, which Start takes as the
// function's name. Call RemoveBuilds from TestMain to delete them when the tests end.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	builds.mu.Lock()
	if builds.bins == nil {
		builds.bins = map[string]*build{}
	}
	b := builds.bins[pkg]
	if b == nil {
		b = &build{}
		builds.bins[pkg] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() { b.path, b.err = compile(pkg) })
	if b.err != nil {
		t.Fatalf("lambdaruntime: build %s: %v", pkg, b.err)
	}
	return b.path
}

// RemoveBuilds deletes every binary Build made. Call it from TestMain after m.Run.
func RemoveBuilds() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
	}
	builds.dir, builds.bins = "", nil
}

func compile(pkg string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := buildDir()
	if err != nil {
		return "", err
	}
	// The folder is the function's name; two packages of one name would share it.
	out := filepath.Join(dir, path.Base(filepath.ToSlash(pkg)))
	if err := os.Mkdir(out, 0o755); err != nil {
		return "", fmt.Errorf("a package named %s was built already: %w", path.Base(pkg), err)
	}
	out = filepath.Join(out, "bootstrap")
	compiling.Lock()
	defer compiling.Unlock()
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, msg)
	}
	return out, nil
}

func buildDir() (string, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir == "" {
		d, err := os.MkdirTemp("", "lambdaruntime-")
		if err != nil {
			return "", err
		}
		builds.dir = d
	}
	return builds.dir, nil
}

// moduleRoot is the folder of the go.mod governing the working directory (a test's package).
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	return filepath.Dir(mod), nil
}
