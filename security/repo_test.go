package security

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// repoFiles calls fn for every Go test file of the repository (its module, not node_modules or
// hidden directories), with its directory relative to the root.
func repoFiles(t *testing.T, fn func(dir, path string, src []byte)) {
	t.Helper()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != ".." && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dir, _ := filepath.Rel("..", filepath.Dir(path))
		fn(filepath.ToSlash(dir), path, src)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var fuzzFunc = regexp.MustCompile(`(?m)^func (Fuzz\w*)\(\w+ \*testing\.F\)`)

// TestFuzzTargetsAreListed: the Makefile's FUZZ_TARGETS, which make fuzz and make test run,
// names exactly the repository's fuzz targets, so a new target cannot be forgotten; and make
// test runs make fuzz.
func TestFuzzTargetsAreListed(t *testing.T) {
	var found []string
	repoFiles(t, func(dir, _ string, src []byte) {
		for _, m := range fuzzFunc.FindAllSubmatch(src, -1) {
			found = append(found, dir+":"+string(m[1]))
		}
	})
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	listed := makeVariable(string(mk), "FUZZ_TARGETS")
	slices.Sort(found)
	sorted := slices.Sorted(slices.Values(listed))
	if !slices.Equal(found, sorted) {
		t.Errorf("the repository's fuzz targets\n  %v\nFUZZ_TARGETS in the Makefile\n  %v", found, sorted)
	}
	if len(found) < 9 {
		t.Errorf("only %d fuzz targets found: %v", len(found), found)
	}
	if !regexp.MustCompile(`(?m)^\t.*\$\(MAKE\).* fuzz FUZZTIME=\$\(FUZZ_CI_TIME\)`).Match(mk) {
		t.Error("make test does not run make fuzz FUZZTIME=$(FUZZ_CI_TIME)")
	}
	for _, want := range []string{"FUZZTIME ?= 30s", `-fuzztime=$(FUZZTIME)`, `-run='^$$'`} {
		if !strings.Contains(string(mk), want) {
			t.Errorf("the Makefile lacks %s", want)
		}
	}
}

// makeVariable returns the words of a Makefile variable (NAME = …, with line continuations).
func makeVariable(mk, name string) []string {
	var words []string
	in := false
	for _, line := range strings.Split(mk, "\n") {
		if !in {
			k, v, ok := strings.Cut(line, "=")
			if !ok || strings.TrimRight(strings.TrimSpace(k), ":?+") != name {
				continue
			}
			in, line = true, v
		}
		more := strings.HasSuffix(strings.TrimSpace(line), `\`)
		words = append(words, strings.Fields(strings.TrimSuffix(strings.TrimSpace(line), `\`))...)
		if !more {
			break
		}
	}
	return words
}
