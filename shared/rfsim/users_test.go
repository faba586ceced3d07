package rfsim_test

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

var codeRE = regexp.MustCompile(`^[A-Za-z]{8}$`)

// twoCampaigns seeds the demo plus a second campaign with a user sharing Alice's email.
func twoCampaigns(t *testing.T) *rfsimtest.Sim {
	t.Helper()
	s := newSim(t)
	d := s.SeedDemo(t)
	d.Campaigns = append(d.Campaigns, rfsim.SeedCampaign{Campaign: rfsim.Campaign{ID: 2, Name: "Other", Code: "OTHER"}})
	d.Users = append(d.Users, rfsim.SeedUser{ID: 10, CampaignID: 2, Code: "oThErRef", FirstName: "Alice", Email: "alice@example.com"})
	s.MustSeed(t, d)
	return s
}

func TestCreateReferrer(t *testing.T) {
	s := demo(t)
	r := s.Do(t, "POST", "/users", map[string]any{
		"campaign_id": 1, "first_name": " Frank ", "email": " frank@example.com ",
		"meta": []map[string]any{{"field": "Company", "value": "Acme"}}, "promotion": true,
	})
	wantStatus(t, r, http.StatusCreated)
	u := data[rfsim.User](t, r)
	if u.ID != 6 || u.CampaignID != 1 || u.ReferrerID != nil || u.Type != "person_referring" || u.Source != "Api" {
		t.Fatalf("user %+v", u)
	}
	if u.FirstName != "Frank" || u.Email != "frank@example.com" || u.Reach != "0" || u.SignedUpAt != today || u.QualifiedAt != nil || u.UnsubscribedAt != nil {
		t.Fatalf("user %+v", u)
	}
	if !codeRE.MatchString(u.Code) || u.URL != "https://demo2026.referral-factory.com/"+u.Code {
		t.Fatalf("code %q url %q", u.Code, u.URL)
	}
	if len(u.Meta) != 1 || u.Meta[0].Field != "Company" || u.Meta[0].Value != "Acme" {
		t.Fatalf("meta %+v", u.Meta)
	}
	if len(u.Sharing.Socials) == 0 || u.QR.Src == "" || u.IP == "" {
		t.Fatalf("sharing/qr/ip %+v %+v %q", u.Sharing, u.QR, u.IP)
	}
	if strings.Contains(string(r.Body), "promotion") {
		t.Fatalf("promotion without Stripe: %s", r.Body)
	}
	// GET renders what POST returned.
	got := data[rfsim.User](t, s.Do(t, "GET", "/users/6", nil))
	if got.Code != u.Code || got.Email != u.Email {
		t.Fatalf("GET %+v", got)
	}
}

func TestCreateLeadReferrerResolution(t *testing.T) {
	tests := []struct {
		field, value string
	}{
		{"id", "1"},
		{"code", "aLiCeRef"},
		{"email", "ALICE@example.com "},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			s := demo(t)
			r := s.Do(t, "POST", "/users", map[string]any{"campaign_id": 1, "first_name": "Gina",
				"email": "gina@example.com", "referrer": map[string]any{"field": tt.field, "value": tt.value}})
			wantStatus(t, r, 201)
			u := data[rfsim.User](t, r)
			if u.Type != "person_invited" || u.Source != "Referred" || u.ReferrerID == nil || *u.ReferrerID != 1 {
				t.Fatalf("lead %+v", u)
			}
		})
	}
	t.Run("numeric id value", func(t *testing.T) {
		s := demo(t)
		r := s.Do(t, "POST", "/users", map[string]any{"campaign_id": "1", "first_name": "Gina",
			"email": "gina@example.com", "referrer": map[string]any{"field": "id", "value": 2}})
		wantStatus(t, r, 201)
		if u := data[rfsim.User](t, r); *u.ReferrerID != 2 {
			t.Fatalf("lead %+v", u)
		}
	})
}

func TestCreateUserValidation(t *testing.T) {
	base := func(kv ...any) map[string]any {
		m := map[string]any{"campaign_id": 1, "first_name": "Hal", "email": "hal@example.com"}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
				continue
			}
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	ref := func(field, value any) map[string]any { return map[string]any{"field": field, "value": value} }
	tests := []struct {
		name   string
		body   map[string]any
		fields []string
	}{
		{"empty body", map[string]any{}, []string{"campaign_id", "first_name", "email"}},
		{"blank strings", base("first_name", "  ", "email", ""), []string{"first_name", "email"}},
		{"unknown campaign", base("campaign_id", 99), []string{"campaign_id"}},
		{"campaign not integer", base("campaign_id", "abc"), []string{"campaign_id"}},
		{"bad email", base("email", "not-an-email"), []string{"email"}},
		{"email with name", base("email", "Hal <hal@example.com>"), []string{"email"}},
		{"email not string", base("email", 5), []string{"email"}},
		{"duplicate email", base("email", " ALICE@Example.com"), []string{"email"}},
		{"referrer unknown code", base("referrer", ref("code", "nobody12")), []string{"referrer"}},
		{"referrer code wrong case", base("referrer", ref("code", "alicerEF")), []string{"referrer"}},
		{"referrer in other campaign", base("referrer", ref("code", "oThErRef")), []string{"referrer"}},
		{"referrer id in other campaign", base("referrer", ref("id", 10)), []string{"referrer"}},
		{"referrer bad field", base("referrer", ref("phone", "123")), []string{"referrer.field"}},
		{"referrer missing value", base("referrer", map[string]any{"field": "code"}), []string{"referrer.value"}},
		{"referrer missing field", base("referrer", map[string]any{"value": "x"}), []string{"referrer.field"}},
		{"referrer not object", base("referrer", "aLiCeRef"), []string{"referrer"}},
		{"meta not array", base("meta", "x"), []string{"meta"}},
		{"meta item without field", base("meta", []any{map[string]any{"value": 1}}), []string{"meta.0.field"}},
		{"notify not boolean", base("notify", "perhaps"), []string{"notify"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := twoCampaigns(t)
			before := len(s.Server.Users())
			wantInvalid(t, s.Do(t, "POST", "/users", tt.body), tt.fields...)
			if n := len(s.Server.Users()); n != before {
				t.Fatalf("a user was created: %d users, had %d", n, before)
			}
		})
	}

	t.Run("documented shape", func(t *testing.T) {
		s := demo(t)
		r := s.Do(t, "POST", "/users", base("email", nil))
		wantJSON(t, r, `{"code":422,"message":"Validation errors in your request",
			"errors":{"email":[{"field":"email","message":"The email field is required."}]}}`)
	})
	t.Run("messages", func(t *testing.T) {
		s := twoCampaigns(t)
		errs := wantInvalid(t, s.Do(t, "POST", "/users", base("email", "alice@example.com")), "email")
		if errs["email"][0].Message != "The email has already been taken." {
			t.Fatalf("%+v", errs)
		}
		errs = wantInvalid(t, s.Do(t, "POST", "/users", base("referrer", ref("code", "zzzzzzzz"))), "referrer")
		if errs["referrer"][0].Message != "The selected referrer is invalid." {
			t.Fatalf("%+v", errs)
		}
	})
	t.Run("same email in another campaign is fine", func(t *testing.T) {
		s := twoCampaigns(t)
		wantStatus(t, s.Do(t, "POST", "/users", base("campaign_id", 2, "email", "bob@example.com")), 201)
	})
}

func TestCreateUserNotify(t *testing.T) {
	s := demo(t)
	body := map[string]any{"campaign_id": 1, "first_name": "Ivy", "email": "ivy@example.com", "notify": true}
	wantStatus(t, s.Do(t, "POST", "/users", body), 201)
	body = map[string]any{"campaign_id": 1, "first_name": "Jo", "email": "jo@example.com", "notify": false}
	wantStatus(t, s.Do(t, "POST", "/users", body), 201)
	if n := s.Server.Counters().Notifications; n != 1 {
		t.Fatalf("notifications %d, want 1", n)
	}
}

func TestUserCodesUniqueAndDeterministic(t *testing.T) {
	run := func() []string {
		s := demo(t, rfsim.WithSeed(42))
		var codes []string
		seen := map[string]bool{}
		for i := range 200 {
			u := s.Referrer(t, 1, "r"+strconv.Itoa(i)+"@example.com")
			if !codeRE.MatchString(u.Code) || seen[strings.ToLower(u.Code)] {
				t.Fatalf("code %q repeated or malformed", u.Code)
			}
			seen[strings.ToLower(u.Code)] = true
			codes = append(codes, u.Code)
		}
		return codes
	}
	a, b := run(), run()
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Fatal("the same RNG seed gave different codes")
	}
}

func TestGetUserIdentifier(t *testing.T) {
	s := demo(t)
	tests := []struct {
		ident  string
		wantID int
	}{
		{"4", 4},
		{"dAvEdLed", 4},
		{"davedled", 0}, // codes match exactly
		{"dave@example.com", 0},
		{"999", 0},
	}
	for _, tt := range tests {
		t.Run(tt.ident, func(t *testing.T) {
			r := s.Do(t, "GET", "/users/"+tt.ident, nil)
			if tt.wantID == 0 {
				wantStatus(t, r, 404)
				wantJSON(t, r, `{"code":404,"message":"User not found."}`)
				return
			}
			wantStatus(t, r, 200)
			if u := data[rfsim.User](t, r); u.ID != tt.wantID {
				t.Fatalf("got user %d", u.ID)
			}
		})
	}
}

func TestListUsersIgnoresCampaignID(t *testing.T) {
	s := twoCampaigns(t)
	var page struct {
		Data []rfsim.User
		Meta struct{ Total int }
	}
	s.Do(t, "GET", "/users?campaign_id=2", nil).Decode(t, &page)
	if page.Meta.Total != 6 || len(page.Data) != 6 {
		t.Fatalf("campaign_id filtered the list: %d users", page.Meta.Total)
	}
}

func TestUpdateUser(t *testing.T) {
	s := demo(t)
	r := s.Do(t, "PUT", "/users/5", map[string]any{"first_name": "Erin B.", "email": "erin.b@example.com",
		"meta": []map[string]any{{"field": "Company", "value": "Erin Ltd"}}})
	wantStatus(t, r, 200)
	u := data[rfsim.User](t, r)
	if u.FirstName != "Erin B." || u.Email != "erin.b@example.com" || len(u.Meta) != 1 || u.Code != "eRiNlEad" {
		t.Fatalf("updated %+v", u)
	}

	wantInvalid(t, s.Do(t, "PUT", "/users/5", map[string]any{"email": "ALICE@example.com"}), "email")
	wantInvalid(t, s.Do(t, "PUT", "/users/5", map[string]any{"email": "nope", "first_name": ""}), "email", "first_name")
	wantStatus(t, s.Do(t, "PUT", "/users/5", map[string]any{"email": "erin.b@example.com"}), 200) // its own email
	wantStatus(t, s.Do(t, "PUT", "/users/99", map[string]any{"first_name": "X"}), 404)
	wantStatus(t, s.Do(t, "PUT", "/users/eRiNlEad", map[string]any{"first_name": "X"}), 404)

	// Legacy v1 qualification through PUT /users/{id}.
	r = s.Do(t, "PUT", "/users/5", map[string]any{"qualified": 1})
	wantStatus(t, r, 200)
	if u := data[rfsim.User](t, r); u.QualifiedAt == nil || *u.QualifiedAt != today {
		t.Fatalf("qualified_at %v", u.QualifiedAt)
	}
	if due := dueFor(s.Server.DueRewards("amount"), 2); len(due) != 1 {
		t.Fatalf("bob's due rewards %+v", due)
	}
	r = s.Do(t, "PUT", "/users/1", map[string]any{"qualified": true, "first_name": "Not applied"})
	wantStatus(t, r, 422)
	wantJSON(t, r, `{"code":422,"message":"Only referred users (leads) can be qualified."}`)
	if u, _ := s.Server.User(1); u.FirstName != "Alice" {
		t.Fatalf("a rejected update changed the user: %+v", u)
	}
}

func TestDeleteUser(t *testing.T) {
	s := demo(t)
	r := s.Do(t, "DELETE", "/users/1", nil)
	wantStatus(t, r, 200)
	if u := data[rfsim.User](t, r); u.ID != 1 || u.Email != "alice@example.com" {
		t.Fatalf("deleted %+v", u)
	}
	wantStatus(t, s.Do(t, "GET", "/users/1", nil), 404)
	wantStatus(t, s.Do(t, "DELETE", "/users/1", nil), 404)
	// Leads keep the deleted referrer's id and due rewards stay.
	if u, _ := s.Server.User(4); u.ReferrerID == nil || *u.ReferrerID != 1 {
		t.Fatalf("lead %+v", u)
	}
	if due := dueFor(s.Server.DueRewards("amount"), 1); len(due) != 1 {
		t.Fatalf("deleted referrer's due rewards %+v", due)
	}
	// A new lead cannot name the deleted referrer.
	wantInvalid(t, s.Do(t, "POST", "/users", map[string]any{"campaign_id": 1, "first_name": "K",
		"email": "k@example.com", "referrer": map[string]any{"field": "code", "value": "aLiCeRef"}}), "referrer")
}

func dueFor(due []rfsim.DueReward, recipient int) []rfsim.DueReward {
	var out []rfsim.DueReward
	for _, d := range due {
		if d.RecipientID == recipient {
			out = append(out, d)
		}
	}
	return out
}
