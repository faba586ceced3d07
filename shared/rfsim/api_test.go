package rfsim_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/refbridge/refbridge/shared/rfsim"
)

func TestAuth(t *testing.T) {
	s := demo(t)
	url := s.URL + "/campaigns"
	tests := []struct {
		name   string
		header string
		want   int
	}{
		{"no header", "", 401},
		{"wrong token", "Bearer nope", 401},
		{"basic scheme", "Basic c2ltX3Rlc3RfdG9rZW4=", 401},
		{"empty bearer", "Bearer ", 401},
		{"valid", "Bearer sim_test_token", 200},
		{"scheme is case-insensitive", "bearer sim_test_token", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.header != "" {
				h.Set("Authorization", tt.header)
			}
			r := s.DoRaw(t, "GET", url, nil, h)
			wantStatus(t, r, tt.want)
			if tt.want == 401 {
				wantJSON(t, r, `{"code":401,"message":"Unauthenticated."}`)
			}
		})
	}
}

func TestRotateToken(t *testing.T) {
	s := demo(t)
	old := s.Token
	fresh := s.RotateToken(t)
	if fresh == old || fresh == "" {
		t.Fatalf("rotated token %q", fresh)
	}
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	wantStatus(t, s.DoRaw(t, "GET", s.URL+"/users", nil, bearer(old)), 401)
	wantStatus(t, s.DoRaw(t, "GET", s.URL+"/users", nil, bearer(fresh)), 200)

	// The control API rotates too.
	r := s.DoRaw(t, "POST", s.HTTP.URL+"/_sim/rotate-token", nil, nil)
	wantStatus(t, r, 200)
	again := data[struct{ Token string }](t, r).Token
	wantStatus(t, s.DoRaw(t, "GET", s.URL+"/users", nil, bearer(fresh)), 401)
	wantStatus(t, s.DoRaw(t, "GET", s.URL+"/users", nil, bearer(again)), 200)
}

func TestAccept(t *testing.T) {
	s := demo(t)
	tests := []struct {
		accept string
		want   int
	}{
		{"", 200},
		{"application/json", 200},
		{"*/*", 200},
		{"application/*", 200},
		{"application/vnd.api+json", 200},
		{"text/html, application/json;q=0.9", 200},
		{"text/html", 406},
		{"text/html, application/xml", 406},
		{"application/json;q=0", 406},
	}
	for _, tt := range tests {
		t.Run(tt.accept, func(t *testing.T) {
			h := http.Header{"Authorization": {"Bearer " + s.Token}}
			if tt.accept != "" {
				h.Set("Accept", tt.accept)
			}
			r := s.DoRaw(t, "GET", s.URL+"/campaigns", nil, h)
			wantStatus(t, r, tt.want)
			if tt.want == 406 {
				wantJSON(t, r, `{"code":406,"message":"Only JSON responses are supported."}`)
			}
		})
	}
}

func TestRouting(t *testing.T) {
	s := demo(t)
	tests := []struct {
		method, path string
		auth         bool
		want         int
		allow        string
	}{
		{"GET", "/api/v2/nope", true, 404, ""},
		{"GET", "/api/v2", true, 404, ""},
		{"GET", "/api/v2/rewards/due/points", true, 404, ""},
		{"GET", "/elsewhere", false, 404, ""},
		{"DELETE", "/api/v2/users", true, 405, "GET, POST"},
		{"PATCH", "/api/v2/users/1", true, 405, "GET, PUT, DELETE"},
		{"GET", "/api/v2/rewards/issue/1", false, 405, "POST, PUT"}, // routing comes before auth
		{"GET", "/webhook/sim_webhook_token/qualify", false, 405, "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			h := http.Header{}
			if tt.auth {
				h.Set("Authorization", "Bearer "+s.Token)
			}
			r := s.DoRaw(t, tt.method, s.HTTP.URL+tt.path, nil, h)
			wantStatus(t, r, tt.want)
			var e rfsim.Error
			r.Decode(t, &e)
			if e.Code != tt.want || e.Message == "" {
				t.Fatalf("body %s", r.Body)
			}
			if got := r.Header.Get("Allow"); got != tt.allow {
				t.Fatalf("Allow %q, want %q", got, tt.allow)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
		})
	}
}

func TestMalformedBody(t *testing.T) {
	s := demo(t)
	for _, body := range []string{`{"campaign_id":`, `[1,2]`, `{"a":1} {"b":2}`} {
		r := s.Do(t, "POST", "/users", []byte(body))
		wantStatus(t, r, 400)
	}
	huge := strings.Repeat("x", 1<<20+1)
	wantStatus(t, s.Do(t, "POST", "/users", []byte(`{"first_name":"`+huge+`"}`)), 413)
}

func TestCampaigns(t *testing.T) {
	s := demo(t)
	for _, ident := range []string{"1", "DEMO2026"} {
		r := s.Do(t, "GET", "/campaigns/"+ident, nil)
		wantStatus(t, r, 200)
		c := data[rfsim.Campaign](t, r)
		if c.ID != 1 || c.Code != "DEMO2026" || c.Status != "launched" || c.Reach != "0" || c.CreatedAt != "2026-01-02" {
			t.Fatalf("campaign %+v", c)
		}
		if c.Analytics != nil || strings.Contains(string(r.Body), "analytics") {
			t.Fatalf("analytics without with=: %s", r.Body)
		}
		if len(c.Fields.PersonInvited) != 3 || c.Assets.Logo.Type != "circle" || c.Assets.Logo.Path != nil {
			t.Fatalf("fields/assets %+v %+v", c.Fields, c.Assets)
		}
	}
	r := s.Do(t, "GET", "/campaigns/nope", nil)
	wantStatus(t, r, 404)
	wantJSON(t, r, `{"code":404,"message":"Campaign not found."}`)

	r = s.Do(t, "GET", "/campaigns/DEMO2026?with=campaign.analytics", nil)
	got := data[rfsim.Campaign](t, r).Analytics
	// Demo: 5 users, 2 leads, 1 qualified.
	if got == nil || *got != (rfsim.CampaignAnalytics{Users: 5, Referrals: 2, QualifiedReferrals: 1}) {
		t.Fatalf("analytics %+v", got)
	}
	list := s.Do(t, "GET", "/campaigns?with=campaign.analytics", nil)
	var page struct{ Data []rfsim.Campaign }
	list.Decode(t, &page)
	if len(page.Data) != 1 || page.Data[0].Analytics == nil || page.Data[0].Analytics.Users != 5 {
		t.Fatalf("list %s", list.Body)
	}
}

func TestUserAnalytics(t *testing.T) {
	s := demo(t)
	r := s.Do(t, "GET", "/users/1?with=user.analytics", nil) // Alice: Dave (qualified)
	if a := data[rfsim.User](t, r).Analytics; a == nil || *a != (rfsim.UserAnalytics{Referrals: 1, QualifiedReferrals: 1}) {
		t.Fatalf("alice analytics %s", r.Body)
	}
	r = s.Do(t, "GET", "/users/bObbYRef?with=user.analytics", nil) // Bob: Erin (pending)
	if a := data[rfsim.User](t, r).Analytics; a == nil || *a != (rfsim.UserAnalytics{Referrals: 1}) {
		t.Fatalf("bob analytics %s", r.Body)
	}
	r = s.Do(t, "GET", "/users/1", nil)
	if strings.Contains(string(r.Body), "analytics") {
		t.Fatalf("analytics without with=: %s", r.Body)
	}
	var page struct{ Data []rfsim.User }
	s.Do(t, "GET", "/users?with=user.analytics", nil).Decode(t, &page)
	for _, u := range page.Data {
		if u.Analytics == nil {
			t.Fatalf("user %d lacks analytics in list", u.ID)
		}
	}
}
