package security

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// references are docs/security.md's "(test: dir/TestName, …; template: file TestName)".
var references = regexp.MustCompile(`\((?:test|template)s?: [^)]*\)`)

// TestSecurityDocReferences: every test or template assertion docs/security.md cites exists, as
// a top-level test (Test…, or Fuzz…) in the package or file it names; each section the review
// needs is there; and a claim without a reference is rare enough to be read.
func TestSecurityDocReferences(t *testing.T) {
	doc, err := os.ReadFile("../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(doc)), " ") // references may wrap lines
	found := 0
	for _, group := range references.FindAllString(text, -1) {
		for _, part := range strings.Split(strings.Trim(group, "()"), ";") {
			kind, refs, ok := strings.Cut(strings.TrimSpace(part), ": ")
			if !ok {
				t.Errorf("%s: want kind: references", group)
				continue
			}
			for _, r := range strings.Split(refs, ",") {
				r = strings.TrimSpace(r)
				found++
				var files []string
				var name string
				switch kind {
				case "template":
					file, n, ok := strings.Cut(r, " ")
					if !ok || !strings.HasPrefix(file, "deploy/") {
						t.Errorf("%q: want deploy/<file>_test.go TestName", r)
						continue
					}
					files, name = []string{filepath.Join("..", file)}, n
				case "test", "tests":
					dir, n := filepath.Split(r)
					files, _ = filepath.Glob(filepath.Join("..", dir, "*_test.go"))
					name = n
				default:
					t.Errorf("%q: unknown kind %q", group, kind)
					continue
				}
				if !regexp.MustCompile(`^(Test|Fuzz)\w+$`).MatchString(name) {
					t.Errorf("%q: %q is not a top-level test", r, name)
					continue
				}
				if !defines(t, files, name) {
					t.Errorf("%q: no func %s in %v", r, name, files)
				}
			}
		}
	}
	if found < 40 {
		t.Errorf("only %d references", found)
	}
	for _, section := range []string{"## Trust boundaries", "## The entry points", "## Why the Function URLs are public",
		"## IAM, per function", "## What is stored", "## Retention", "## Secrets", "**Rotation**", "## Logs and answers"} {
		if !strings.Contains(string(doc), section) {
			t.Errorf("docs/security.md has no %q", section)
		}
	}
}

func defines(t *testing.T, files []string, name string) bool {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^func ` + name + `\(\w+ \*testing\.[TF]\)`)
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Error(err)
			continue
		}
		if decl.Match(src) {
			return true
		}
	}
	return false
}
