package deploy

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// environments are samconfig.toml's environments (`sam deploy --config-env <name>`).
var environments = []string{"default", "dev", "prod"}

func TestSamconfig(t *testing.T) {
	raw, err := os.ReadFile("../samconfig.toml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := toml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if v := cfg["version"]; v != 0.1 {
		t.Errorf("version = %v, want 0.1", v)
	}
	if get(cfg, "default", "build", "parameters") == nil {
		t.Error("no [default.build.parameters]")
	}
	for name := range cfg {
		if name != "version" && !slices.Contains(environments, name) {
			t.Errorf("environment %q is not tested (add it to environments)", name)
		}
	}
	s := load(t)
	// The longest "<stack>-<function>" name must fit Lambda's 64 characters.
	longest := 0
	for _, folder := range functions {
		longest = max(longest, len("-"+folder))
	}
	stacks := map[string]string{}
	overrides := map[string]map[string]string{}
	for _, env := range environments {
		t.Run(env, func(t *testing.T) {
			deploy, ok := get(cfg, env, "deploy", "parameters").(map[string]any)
			if !ok {
				t.Fatalf("no [%s.deploy.parameters]", env)
			}
			if deploy["resolve_s3"] != true {
				t.Errorf("resolve_s3 = %v, want true", deploy["resolve_s3"])
			}
			if c := fmt.Sprint(deploy["capabilities"]); !strings.Contains(c, "CAPABILITY_IAM") {
				t.Errorf("capabilities = %v: the stack creates IAM roles", c)
			}
			stack := str(deploy["stack_name"])
			if stack == "" {
				stack = str(get(cfg, env, "global", "parameters", "stack_name"))
			}
			if !regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]*$`).MatchString(stack) || len(stack)+longest > 64 {
				t.Errorf("stack_name %q: a CloudFormation stack name of at most %d characters (function names add %d)", stack, 64-longest, longest)
			}
			if other, dup := stacks[stack]; dup {
				t.Errorf("stack_name %q is also %s's", stack, other)
			}
			stacks[stack] = env
			po, err := parseOverrides(str(deploy["parameter_overrides"]))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range po {
				p := s.param(k)
				if p == nil {
					t.Errorf("parameter_overrides: %s is not a parameter of template.yaml", k)
					continue
				}
				if err := allows(p, v); err != nil {
					t.Errorf("parameter_overrides: %s: %v", k, err)
				}
			}
			overrides[env] = po
		})
	}
	if p := overrides["prod"]; p["StripeMode"] != "live" || p["DryRun"] == "true" {
		t.Errorf("prod: StripeMode=%q DryRun=%q, want live and not a dry run", p["StripeMode"], p["DryRun"])
	}
	if p := overrides["dev"]; p["StripeMode"] == "live" || p["DryRun"] != "true" {
		t.Errorf("dev: StripeMode=%q DryRun=%q, want test mode and a dry run", p["StripeMode"], p["DryRun"])
	}
}

// parseOverrides reads SAM's parameter_overrides: Key=Value pairs separated by spaces, a value
// in double quotes when it has spaces (Key="rate(15 minutes)").
func parseOverrides(s string) (map[string]string, error) {
	pair := regexp.MustCompile(`^\s*([A-Za-z0-9]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*))(\s+|$)`)
	out := map[string]string{}
	for rest := strings.TrimSpace(s); rest != ""; {
		m := pair.FindStringSubmatch(rest)
		if m == nil {
			return nil, fmt.Errorf("parameter_overrides: cannot read %q", rest)
		}
		if _, dup := out[m[1]]; dup {
			return nil, fmt.Errorf("parameter_overrides: %s given twice", m[1])
		}
		out[m[1]] = m[2] + m[3]
		rest = rest[len(m[0]):]
	}
	return out, nil
}

func TestParseOverrides(t *testing.T) {
	got, err := parseOverrides(`StripeMode="live" SweepSchedule="rate(15 minutes)" DryRun=false Empty=""`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"StripeMode": "live", "SweepSchedule": "rate(15 minutes)", "DryRun": "false", "Empty": ""}
	if !equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{`StripeMode="live`, `=x`, `A=1 A=2`, `A="x"B=1`} {
		if _, err := parseOverrides(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
