package ledger_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/refbridge/refbridge/shared/ledger"
)

// FuzzEmail: the forms of an email the ledger keeps (emails come from Stripe events and RF
// payloads). Normalising is idempotent, so an address hashes alike however often it was
// normalised on the way; the hash is empty exactly when the address is blank; the mask keeps at
// most the first character of the local part, the domain and valid UTF-8, never the rest.
func FuzzEmail(f *testing.F) {
	for _, s := range []string{"frank@example.com", "  Frank@Example.COM\n", "é@exemple.fr", "@example.com", "not-an-email", "",
		"a@b@c.d", "Jörg.Müller@Exämple.com", "\u212Aate@example.com", "\xff\xfe@x.y", "İstanbul@example.com", " \t "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, email string) {
		n := ledger.NormalizeEmail(email)
		if again := ledger.NormalizeEmail(n); again != n {
			t.Fatalf("NormalizeEmail is not idempotent: %q → %q → %q", email, n, again)
		}
		h := ledger.HashEmail(email)
		if h != ledger.HashEmail(n) || (h == "") != (n == "") || h != "" && len(h) != 64 {
			t.Fatalf("HashEmail(%q) = %q, of the normalised %q", email, h, ledger.HashEmail(n))
		}
		if strings.ToLower(email) == email && strings.TrimSpace(email) == email && utf8.ValidString(email) && h != ledger.HashEmail(strings.ToUpper(email)) &&
			strings.ToLower(strings.ToUpper(email)) == email {
			t.Fatalf("%q and its upper case hash apart", email)
		}
		m := ledger.MaskEmail(email)
		if (m == "") != (n == "") || !utf8.ValidString(m) {
			t.Fatalf("MaskEmail(%q) = %q", email, m)
		}
		if n == "" || m == "***" {
			return
		}
		at := strings.LastIndexByte(n, '@')
		local, domain := n[:at], n[at+1:]
		first, _ := utf8.DecodeRuneInString(local)
		want := "***@" + domain
		if local != "" {
			want = string(first) + want
		}
		if m != want {
			t.Fatalf("MaskEmail(%q) = %q, want %q", email, m, want)
		}
	})
}
