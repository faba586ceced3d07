package rfevents

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKindFromPath(t *testing.T) {
	tests := []struct {
		path string
		want Kind
		ok   bool
	}{
		{"/rf/webhook/lead-created", LeadCreated, true},
		{"/rf/webhook/referrer-joined/", ReferrerJoined, true},
		{"/lead-qualified", LeadQualified, true},
		{"/rf/webhook/reward-issued", RewardIssued, true},
		{"/rf/webhook/lead-deleted", "", false},
		{"/rf/webhook/", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got, ok := KindFromPath(tt.path); got != tt.want || ok != tt.ok {
			t.Errorf("KindFromPath(%q) = %q, %v", tt.path, got, ok)
		}
	}
}

func TestAuthorized(t *testing.T) {
	secrets := []string{"new-secret", "old-secret"}
	tests := []struct {
		header string
		want   bool
	}{
		{"new-secret", true}, {"old-secret", true}, {"", false}, {"new-secre", false},
		{"new-secret ", false}, {"NEW-SECRET", false},
	}
	for _, tt := range tests {
		if got := Authorized(tt.header, secrets); got != tt.want {
			t.Errorf("Authorized(%q) = %v", tt.header, got)
		}
	}
	if Authorized("", []string{""}) || Authorized("x", nil) {
		t.Error("an empty secret list or an empty secret authorizes")
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, body, contentType string
		names                   FieldNames
		want                    Identity
		wantErr                 bool
	}{
		{"JSON defaults", `{"id":42,"code":"aLiCeRef","email":"A@b.c","campaign_id":1}`, "application/json", nil,
			Identity{ID: 42, Code: "aLiCeRef", Email: "A@b.c", CampaignID: 1}, false},
		{"JSON wrapped in data", `{"data":{"user_id":"7","referral_code":"x"}}`, "application/json", nil,
			Identity{ID: 7, Code: "x"}, false},
		{"form defaults", "email=ann%40example.com&code=abc&reward_issued_id=9", "application/x-www-form-urlencoded", nil,
			Identity{Code: "abc", Email: "ann@example.com", IssuedRewardID: 9}, false},
		{"form without content type", "code=abc", "", nil, Identity{Code: "abc"}, false},
		{"renamed fields", `{"ref":"zz","mail":"m@x.io","uid":3}`, "application/json", FieldNames{"code": "ref", "email": "mail", "id": "uid"},
			Identity{ID: 3, Code: "zz", Email: "m@x.io"}, false},
		{"a renamed field replaces the defaults", `{"code":"default","ref":"chosen"}`, "application/json", FieldNames{"code": "ref"},
			Identity{Code: "chosen"}, false},
		{"no identity", `{"first_name":"Ann"}`, "application/json", nil, Identity{}, true},
		// A number beyond int64 is no number (ParseInt would clamp it to the largest int64).
		{"ids beyond int64", `{"id":9223372036854775808,"code":"x","campaign_id":"99999999999999999999","reward_issued_id":1e3}`,
			"application/json", nil, Identity{Code: "x"}, false},
		{"only an id beyond int64", `{"id":99999999999999999999}`, "application/json", nil, Identity{}, true},
		{"not JSON", `{"id":`, "application/json", nil, Identity{}, true},
		{"bad form", "%zz", "application/x-www-form-urlencoded", nil, Identity{}, true},
		// A field given twice: its last value, in either encoding.
		{"form with a duplicate key", "code=first&code=last", "application/x-www-form-urlencoded", nil, Identity{Code: "last"}, false},
		{"JSON with a duplicate key", `{"code":"first","code":"last"}`, "application/json", nil, Identity{Code: "last"}, false},
		{"form whose duplicate key ends empty", "code=first&code=", "application/x-www-form-urlencoded", nil, Identity{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.body), tt.contentType, tt.names)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("Parse = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	for body, want := range map[string]error{`{"id":`: ErrMalformedJSON, `[1]`: ErrMalformedJSON, ``: ErrMalformedJSON} {
		if _, err := Parse([]byte(body), "application/json", nil); !errors.Is(err, want) {
			t.Errorf("%q: %v, want %v", body, err, want)
		}
	}
	if _, err := Parse([]byte("code=%zz"), "application/x-www-form-urlencoded", nil); !errors.Is(err, ErrMalformedForm) {
		t.Errorf("bad form: %v", err)
	}
	_, err := Parse([]byte(`{"name":"x"}`), "application/json", FieldNames{"email": "mail"})
	if !errors.Is(err, ErrNoIdentity) || !strings.Contains(err.Error(), "email (mail)") || !strings.Contains(err.Error(), "code (code, referral_code") {
		t.Fatalf("the error must name the fields looked for: %v", err)
	}
}

// TestSampleEvents parses every sample in events/rf with the field map its README names.
func TestSampleEvents(t *testing.T) {
	names := FieldNames{"code": "referral_code"}
	samples := map[string]Identity{
		"lead-created":    {ID: 6, Code: "fAyLiNrf", Email: "fay@example.com", CampaignID: 1},
		"lead-qualified":  {Code: "fAyLiNrf", Email: "fay@example.com", CampaignID: 1},
		"reward-issued":   {ID: 1, Code: "aLiCeRef", Email: "alice@example.com", CampaignID: 1, IssuedRewardID: 5},
		"referrer-joined": {Code: "gUsPaRkR", Email: "gus@example.com", CampaignID: 1},
	}
	files := map[string]Identity{}
	for kind, want := range samples {
		files[kind+".json"], files[kind+".form"] = want, want
	}
	for file, want := range files {
		body, err := os.ReadFile(filepath.Join("..", "..", "events", "rf", file))
		if err != nil {
			t.Fatal(err)
		}
		ct := "application/json"
		if strings.HasSuffix(file, ".form") {
			ct = "application/x-www-form-urlencoded"
		}
		got, err := Parse(body, ct, names)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v, want %+v", file, got, err, want)
		}
	}
}
