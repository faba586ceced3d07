package rfevents

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"
)

// fieldMap reads a field map the way config reads RF_WEBHOOK_FIELDS ("code=referral_code,…"),
// leniently: the fuzzer's map may be anything.
func fieldMap(s string) FieldNames {
	names := FieldNames{}
	for _, pair := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(pair, "="); ok && strings.TrimSpace(k) != "" && strings.TrimSpace(v) != "" {
			names[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return names
}

// FuzzParse reads arbitrary bodies, content types and field maps: a result names a user (and
// its values are trimmed), an error is ErrNoIdentity or says which encoding failed, and a JSON
// object says the same as its fields sent as a form.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("..", "..", "events", "rf", "*.*"))
	if err != nil || len(files) < 8 {
		f.Fatalf("samples: %v %v", files, err)
	}
	for _, file := range files {
		if strings.HasSuffix(file, ".md") {
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		ct := "application/json"
		if strings.HasSuffix(file, ".form") {
			ct = "application/x-www-form-urlencoded"
		}
		f.Add(b, ct, "code=referral_code")
		f.Add(b, "", "")
	}
	f.Add([]byte(`{"data":{"user_id":"7","referral_code":" x "}}`), "application/json; charset=utf-8", "")
	f.Add([]byte(`code=a&code=b&email=`), "application/x-www-form-urlencoded", "email=mail")
	f.Add([]byte(`{"id":99999999999999999999,"reward_issued_id":-1}`), "text/plain", "id=uid,reward_id=rid")
	f.Add([]byte(`%zz`), "", "")
	f.Fuzz(func(t *testing.T, body []byte, contentType, fields string) {
		names := fieldMap(fields)
		id, err := Parse(body, contentType, names)
		if err != nil {
			if !errors.Is(err, ErrNoIdentity) && !errors.Is(err, ErrMalformedJSON) && !errors.Is(err, ErrMalformedForm) {
				t.Fatalf("error %v", err)
			}
			if id != (Identity{}) {
				t.Fatalf("an error with an identity: %+v", id)
			}
			return
		}
		if !id.Usable() {
			t.Fatalf("no error, no identity: %+v", id)
		}
		if id.Code != strings.TrimSpace(id.Code) || id.Email != strings.TrimSpace(id.Email) {
			t.Fatalf("untrimmed %+v", id)
		}
		// The same fields as a form body name the same user.
		values, err := flatten(body, contentType)
		if err != nil {
			t.Fatalf("Parse succeeded, flatten failed: %v", err)
		}
		form := url.Values{}
		for k, v := range values {
			form.Set(k, v)
		}
		again, err := Parse([]byte(form.Encode()), "application/x-www-form-urlencoded", names)
		if err != nil || again != id {
			// A value that is not valid UTF-8 survives a form only as bytes; the identity is
			// still the same unless percent-encoding changed it.
			if utf8.Valid(body) {
				t.Fatalf("as a form: %+v %v, want %+v", again, err, id)
			}
		}
	})
}

// FuzzAuthorized: a header is authorized exactly when it equals a configured, non-empty secret.
func FuzzAuthorized(f *testing.F) {
	f.Add("rf-shared-secret", "rf-shared-secret", "rotated")
	f.Add("rf-shared-secret ", "rf-shared-secret", "")
	f.Add("", "", "")
	f.Add("RF-SHARED-SECRET", "rf-shared-secret", "x")
	f.Add("old,new", "new", "old")
	f.Fuzz(func(t *testing.T, header, secret, other string) {
		want := header != "" && (header == secret || header == other) // an empty secret matches nothing
		if got := Authorized(header, []string{other, secret}); got != want {
			t.Fatalf("Authorized(%q, [%q %q]) = %v, want %v", header, other, secret, got, want)
		}
		if Authorized(header, nil) {
			t.Fatal("authorized without secrets")
		}
	})
}

// FuzzKindFromPath: a path names a kind only by its last segment, exactly.
func FuzzKindFromPath(f *testing.F) {
	for _, p := range []string{"/rf/webhook/lead-created", "/rf/webhook/reward-issued/", "/lead-qualified", "referrer-joined",
		"/rf/webhook/../lead-created", "/rf/webhook/lead-created%00", "//", ""} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		kind, ok := KindFromPath(path)
		switch kind {
		case ReferrerJoined, LeadCreated, LeadQualified, RewardIssued:
		case "":
			if ok {
				t.Fatal("ok without a kind")
			}
			return
		default:
			t.Fatalf("kind %q", kind)
		}
		trimmed := strings.TrimRight(path, "/")
		if !ok || !strings.HasSuffix(trimmed, string(kind)) {
			t.Fatalf("KindFromPath(%q) = %q, %v", path, kind, ok)
		}
		if rest := strings.TrimSuffix(trimmed, string(kind)); rest != "" && !strings.HasSuffix(rest, "/") {
			t.Fatalf("KindFromPath(%q) = %q from a partial segment", path, kind)
		}
	})
}

// TestParseIsBounded: bodies up to the 1 MiB limit built to be expensive (many fields, deep
// nesting, long values) allocate at most a fixed multiple of their size.
func TestParseIsBounded(t *testing.T) {
	const maxBody = 1 << 20
	fill := func(prefix, unit, suffix string) []byte {
		n := (maxBody - len(prefix) - len(suffix)) / len(unit)
		return []byte(prefix + strings.TrimSuffix(strings.Repeat(unit, n), ",") + suffix)
	}
	cases := []struct {
		name, contentType string
		body              []byte
	}{
		{"deep JSON", "application/json", []byte(`{"data":` + strings.Repeat("[", maxBody/2-20) + strings.Repeat("]", maxBody/2-20) + "}")},
		{"many JSON fields", "application/json", fill(`{`, `"k00000":"v",`, `}`)},
		{"many JSON numbers", "application/json", fill(`{"a":[`, `1,`, `]}`)},
		{"many JSON objects", "application/json", fill(`{"a":[`, `{},`, `]}`)},
		{"many form keys", "application/x-www-form-urlencoded", fill(``, `a&`, ``)},
		{"many distinct form keys", "application/x-www-form-urlencoded", func() []byte {
			var b strings.Builder
			for i := 0; b.Len() < maxBody-16; i++ {
				fmt.Fprintf(&b, "k%d=&", i)
			}
			return []byte(b.String())
		}()},
		{"many percent escapes", "application/x-www-form-urlencoded", []byte("code=" + strings.Repeat("%41", (maxBody-5)/3))},
		{"one long value", "application/json", []byte(`{"code":"` + strings.Repeat("x", maxBody-20) + `"}`)},
	}
	for _, c := range cases {
		if len(c.body) > maxBody {
			t.Fatalf("%s: %d bytes", c.name, len(c.body))
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, _ = Parse(c.body, c.contentType, nil)
		runtime.ReadMemStats(&after)
		allocated := after.TotalAlloc - before.TotalAlloc
		// 64× the body, 64 MiB at the limit (rf-webhook has 256 MB).
		if limit := uint64(64 * len(c.body)); allocated > limit {
			t.Errorf("%s: %d bytes allocated for %d, over %d", c.name, allocated, len(c.body), limit)
		}
		t.Logf("%s: %.1f× the body", c.name, float64(allocated)/float64(len(c.body)))
	}
}
