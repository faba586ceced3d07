package ledger_test

import (
	"testing"

	"github.com/refbridge/refbridge/shared/ledger"
)

func TestHashEmail(t *testing.T) {
	want := ledger.HashEmail("frank@example.com")
	if len(want) != 64 {
		t.Fatalf("HashEmail = %q", want)
	}
	for _, in := range []string{"frank@example.com", "  Frank@Example.COM\n", "FRANK@EXAMPLE.COM"} {
		if got := ledger.HashEmail(in); got != want {
			t.Errorf("HashEmail(%q) = %s, want %s", in, got, want)
		}
	}
	if ledger.HashEmail("other@example.com") == want {
		t.Error("different emails hash alike")
	}
	if got := ledger.HashEmail("   "); got != "" {
		t.Errorf("HashEmail(blank) = %q, want empty", got)
	}
}

func TestMaskEmail(t *testing.T) {
	cases := map[string]string{
		"frank@example.com":   "f***@example.com",
		" Frank@Example.com ": "f***@example.com",
		"é@exemple.fr":        "é***@exemple.fr",
		"@example.com":        "***@example.com",
		"not-an-email":        "***",
		"":                    "",
	}
	for in, want := range cases {
		if got := ledger.MaskEmail(in); got != want {
			t.Errorf("MaskEmail(%q) = %q, want %q", in, got, want)
		}
	}
}
