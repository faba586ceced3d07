package referralfactory

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const testToken = "tok_secret_123"

// recorded is one request the fake server saw.
type recorded struct {
	Method, Path, Query, Auth, Accept, ContentType string
	Body                                           string
}

// fakeRF is an httptest server whose answers a test scripts.
type fakeRF struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

func newFakeRF(t *testing.T, h http.HandlerFunc) *fakeRF {
	t.Helper()
	f := &fakeRF{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"),
			r.Header.Get("Accept"), r.Header.Get("Content-Type"), string(b)})
		f.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeRF) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// sleeps records backoff sleeps instead of sleeping.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

func newClient(t *testing.T, base string, opts ...Option) *Client {
	t.Helper()
	opts = append([]Option{WithLimiter(nil), withSleep((&sleeps{}).sleep)}, opts...)
	c, err := New(base, testToken, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func TestNew(t *testing.T) {
	tests := []struct {
		name, base, token string
		wantErr           bool
	}{
		{"default base", "", "tok_zz9", false},
		{"custom base with slash", "http://127.0.0.1:8081/api/v2/", "tok_zz9", false},
		{"relative base", "/api/v2", "tok_zz9", true},
		{"ftp base", "ftp://x/api/v2", "tok_zz9", true},
		{"empty token", "", "  ", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.base, tt.token)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && strings.HasSuffix(c.base.Path, "/") {
				t.Errorf("base path %q keeps a trailing slash", c.base.Path)
			}
			if err != nil && strings.Contains(err.Error(), tt.token) && strings.TrimSpace(tt.token) != "" {
				t.Errorf("error leaks token: %v", err)
			}
		})
	}
}

// TestRequestShapes checks the method, path, query and body every client method sends.
func TestRequestShapes(t *testing.T) {
	ctx := context.Background()
	userJSON := `{"data":{"id":7,"campaign_id":1,"referrer_id":3,"code":"AbCdEfGh","type":"person_invited","qualified_at":"2026-11-20"}}`
	listJSON := `{"data":[],"links":{"next":null}}`
	rewardJSON := `{"data":{"id":9,"reward_id":2,"recipient_id":3,"status":"Issued","issued_at":"2026-11-24"}}`
	campJSON := `{"data":{"id":1,"name":"Demo","code":"cp0fYnuj","status":"launched"}}`
	filter := Or(Eq("type", "person_invited"), And(Where("id", ">", 3), Where("email", "like", "%@x.io")))

	tests := []struct {
		name                string
		resp                string
		call                func(c *Client) error
		method, path, query string
		body                string // JSON, compared semantically; "" = no body
	}{
		{"create lead", userJSON, func(c *Client) error {
			_, err := c.CreateUser(ctx, CreateUserInput{CampaignID: 1, FirstName: "Ann", Email: " Ann@Example.COM ", Referrer: ReferrerByCode("XyZ12345")})
			return err
		}, "POST", "/api/v2/users", "", `{"campaign_id":1,"first_name":"Ann","email":"ann@example.com","referrer":{"field":"code","value":"XyZ12345"},"notify":false}`},
		{"create referrer with meta and notify", userJSON, func(c *Client) error {
			_, err := c.CreateUser(ctx, CreateUserInput{CampaignID: 2, FirstName: "Bo", Email: "bo@x.io", Notify: true,
				Meta: []MetaField{{Field: "Last Name", Value: json.RawMessage(`"Li"`)}}})
			return err
		}, "POST", "/api/v2/users", "", `{"campaign_id":2,"first_name":"Bo","email":"bo@x.io","meta":[{"field":"Last Name","value":"Li"}],"notify":true}`},
		{"create lead by referrer id", userJSON, func(c *Client) error {
			_, err := c.CreateUser(ctx, CreateUserInput{CampaignID: 1, FirstName: "C", Email: "c@x.io", Referrer: ReferrerByID(3)})
			return err
		}, "POST", "/api/v2/users", "", `{"campaign_id":1,"first_name":"C","email":"c@x.io","referrer":{"field":"id","value":3},"notify":false}`},
		{"get user by code", userJSON, func(c *Client) error { _, err := c.GetUser(ctx, "AbCdEfGh"); return err },
			"GET", "/api/v2/users/AbCdEfGh", "", ""},
		{"get user by id with analytics", userJSON, func(c *Client) error {
			_, err := c.GetUserByID(ctx, 7, "user.analytics")
			return err
		}, "GET", "/api/v2/users/7", "with=user.analytics", ""},
		{"get user escapes identifier", userJSON, func(c *Client) error { _, err := c.GetUser(ctx, "a/b?c"); return err },
			"GET", "/api/v2/users/a/b?c", "", ""},
		{"list users", listJSON, func(c *Client) error { _, err := c.Users(ListOptions{PerPage: 250}).Collect(ctx); return err },
			"GET", "/api/v2/users", "per_page=250", ""},
		{"search users nested", listJSON, func(c *Client) error {
			_, err := c.Users(ListOptions{Filter: &filter}).Collect(ctx)
			return err
		}, "POST", "/api/v2/users/search", "",
			`{"filters":{"operator":"OR","value":[{"field":"type","operator":"=","value":"person_invited"},{"operator":"AND","value":[{"field":"id","operator":">","value":3},{"field":"email","operator":"like","value":"%@x.io"}]}]}}`},
		{"find by email", listJSON, func(c *Client) error { _, err := c.FindUsersByEmail(ctx, 4, "Z@X.io"); return err },
			"POST", "/api/v2/users/search", "per_page=250",
			`{"filters":{"operator":"AND","value":[{"field":"email","operator":"=","value":"z@x.io"},{"field":"campaign_id","operator":"=","value":4}]}}`},
		{"qualify by id", userJSON, func(c *Client) error { _, err := c.Qualify(ctx, UserRef{ID: 7}); return err },
			"PUT", "/api/v2/users/qualification", "", `{"id":7,"qualified":true}`},
		{"qualify by code", userJSON, func(c *Client) error { _, err := c.Qualify(ctx, UserRef{Code: "ueONFmUp"}); return err },
			"PUT", "/api/v2/users/qualification", "", `{"code":"ueONFmUp","qualified":true}`},
		{"qualify by email", userJSON, func(c *Client) error {
			_, err := c.Qualify(ctx, UserRef{Email: "A@B.c ", CampaignID: 5})
			return err
		}, "PUT", "/api/v2/users/qualification", "", `{"email":"a@b.c","campaign_id":5,"qualified":true}`},
		{"unqualify sends false", userJSON, func(c *Client) error { _, err := c.Unqualify(ctx, UserRef{ID: 7}); return err },
			"PUT", "/api/v2/users/qualification", "", `{"id":7,"qualified":false}`},
		{"list campaigns", listJSON, func(c *Client) error { _, err := c.Campaigns(ListOptions{}).Collect(ctx); return err },
			"GET", "/api/v2/campaigns", "", ""},
		{"get campaign", campJSON, func(c *Client) error { _, err := c.GetCampaign(ctx, "cp0fYnuj"); return err },
			"GET", "/api/v2/campaigns/cp0fYnuj", "", ""},
		{"reward definitions", listJSON, func(c *Client) error {
			_, err := c.RewardDefinitions(MetricCommission, ListOptions{}).Collect(ctx)
			return err
		}, "GET", "/api/v2/rewards/dashboard/commission", "", ""},
		{"due rewards", listJSON, func(c *Client) error {
			_, err := c.DueRewards(MetricAmount, ListOptions{PerPage: 999}).Collect(ctx)
			return err
		}, "GET", "/api/v2/rewards/due/amount", "per_page=250", ""},
		{"search due rewards", listJSON, func(c *Client) error {
			f := Eq("recipient_id", 3)
			_, err := c.DueRewards(MetricCoupon, ListOptions{Filter: &f}).Collect(ctx)
			return err
		}, "POST", "/api/v2/rewards/due/coupon/search", "", `{"filters":{"operator":"AND","value":[{"field":"recipient_id","operator":"=","value":3}]}}`},
		{"issued rewards", listJSON, func(c *Client) error {
			_, err := c.IssuedRewards(MetricCustom, ListOptions{}).Collect(ctx)
			return err
		}, "GET", "/api/v2/rewards/issued/custom", "", ""},
		{"issue reward", rewardJSON, func(c *Client) error { _, err := c.IssueReward(ctx, 9); return err },
			"POST", "/api/v2/rewards/issue/9", "", ""},
		{"cancel reward", rewardJSON, func(c *Client) error { _, err := c.CancelReward(ctx, 9); return err },
			"POST", "/api/v2/rewards/cancel/9", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRF(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, tt.resp) })
			c := newClient(t, f.URL+"/api/v2")
			if err := tt.call(c); err != nil {
				t.Fatalf("call: %v", err)
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != tt.method || r.Path != tt.path || r.Query != tt.query {
				t.Errorf("request = %s %s ?%s, want %s %s ?%s", r.Method, r.Path, r.Query, tt.method, tt.path, tt.query)
			}
			if r.Auth != "Bearer "+testToken || r.Accept != "application/json" {
				t.Errorf("headers: Authorization %q, Accept %q", r.Auth, r.Accept)
			}
			if tt.body == "" {
				if r.Body != "" || r.ContentType != "" {
					t.Errorf("unexpected body %q (Content-Type %q)", r.Body, r.ContentType)
				}
				return
			}
			if r.ContentType != "application/json" {
				t.Errorf("Content-Type = %q", r.ContentType)
			}
			assertJSONEqual(t, r.Body, tt.body)
		})
	}
}

func assertJSONEqual(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("got body is not JSON: %q", got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want body is not JSON: %q", want)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("body\n got %s\nwant %s", gb, wb)
	}
}

func TestInvalidInputIsRefusedLocally(t *testing.T) {
	ctx := context.Background()
	f := newFakeRF(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, `{"data":{}}`) })
	c := newClient(t, f.URL+"/api/v2")
	tests := []struct {
		name string
		call func() error
	}{
		{"create without email", func() error {
			_, err := c.CreateUser(ctx, CreateUserInput{CampaignID: 1, FirstName: "A"})
			return err
		}},
		{"create without campaign", func() error {
			_, err := c.CreateUser(ctx, CreateUserInput{FirstName: "A", Email: "a@b.c"})
			return err
		}},
		{"create with bad referrer field", func() error {
			_, err := c.CreateUser(ctx, CreateUserInput{CampaignID: 1, FirstName: "A", Email: "a@b.c", Referrer: &ReferrerRef{Field: "name", Value: "x"}})
			return err
		}},
		{"create with empty referrer code", func() error {
			_, err := c.CreateUser(ctx, CreateUserInput{CampaignID: 1, FirstName: "A", Email: "a@b.c", Referrer: ReferrerByCode("")})
			return err
		}},
		{"qualify nobody", func() error { _, err := c.Qualify(ctx, UserRef{}); return err }},
		{"qualify by id and code", func() error { _, err := c.Qualify(ctx, UserRef{ID: 1, Code: "x"}); return err }},
		{"qualify by email without campaign", func() error { _, err := c.Qualify(ctx, UserRef{Email: "a@b.c"}); return err }},
		{"get empty identifier", func() error { _, err := c.GetUser(ctx, " "); return err }},
		{"get empty campaign", func() error { _, err := c.GetCampaign(ctx, ""); return err }},
		{"issue id 0", func() error { _, err := c.IssueReward(ctx, 0); return err }},
		{"unknown metric", func() error { _, err := c.DueRewards("points", ListOptions{}).Collect(ctx); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("err = %v, want ErrInvalidInput", err)
			}
		})
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests were sent for invalid input", n)
	}
}

func TestDecodeUser(t *testing.T) {
	body := `{"data":{"id":42,"campaign_id":1,"referrer_id":null,"code":"ueONFmUp","url":"https://demo.referral-factory.com/ueONFmUp",
	"first_name":"Ann","email":"ann@example.com","reach":"12","source":"Api","type":"person_referring","ip":"1.2.3.4",
	"signed_up_at":"2024-12-27","qualified_at":null,"unsubscribed_at":null,
	"meta":[{"field":"Last Name","value":"Lee"},{"field":"Seats","value":3}],
	"sharing":{"socials":[{"social":"email","url":"mailto:"}],"subject":"s","text":"t"},
	"analytics":{"reach":5,"referrals":"2","qualified_referrals":1},
	"qr":{"src":"q","download":"d"},"unknown_future_field":{"x":1}}}`
	f := newFakeRF(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, body) })
	c := newClient(t, f.URL+"/api/v2")
	u, err := c.GetUser(context.Background(), "ueONFmUp")
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != 42 || u.ReferrerID != 0 || u.IsLead() || u.Qualified() || u.Reach != "12" {
		t.Errorf("decoded %+v", u)
	}
	if got := u.SignedUpAt.String(); got != "2024-12-27" {
		t.Errorf("signed_up_at = %q", got)
	}
	if n, _ := u.Analytics.Referrals.Float64(); n != 2 {
		t.Errorf("analytics.referrals = %v", n)
	}
	if len(u.Meta) != 2 || string(u.Meta[1].Value) != "3" || u.Sharing == nil || u.QR == nil {
		t.Errorf("meta/sharing/qr = %+v %+v %+v", u.Meta, u.Sharing, u.QR)
	}
}

func TestDateAndNumber(t *testing.T) {
	dates := []struct {
		in, want string
		err      bool
	}{
		{`null`, "", false}, {`""`, "", false}, {`"2026-11-24"`, "2026-11-24", false},
		{`"2026-11-24 13:01:02"`, "2026-11-24", false}, {`"2026-11-24T23:30:00-05:00"`, "2026-11-25", false},
		{`"24/11/2026"`, "", true}, {`12`, "", true},
	}
	for _, tt := range dates {
		var d Date
		err := json.Unmarshal([]byte(tt.in), &d)
		if (err != nil) != tt.err || d.String() != tt.want {
			t.Errorf("Date(%s) = %q, %v", tt.in, d.String(), err)
		}
		if err == nil {
			out, _ := json.Marshal(d)
			if tt.want == "" && string(out) != "null" || tt.want != "" && string(out) != `"`+tt.want+`"` {
				t.Errorf("Date(%s) marshals to %s", tt.in, out)
			}
		}
	}
	nums := []struct{ in, text, out string }{
		{`"20"`, "20", `20`}, {`20.5`, "20.5", `20.5`}, {`null`, "", `null`}, {`"n/a"`, "n/a", `"n/a"`},
		{`"NaN"`, "NaN", `"NaN"`}, {`"1_000"`, "1_000", `"1_000"`}, {`"-3e2"`, "-3e2", `-3e2`}, {`"Inf"`, "Inf", `"Inf"`},
	}
	for _, tt := range nums {
		var n Number
		if err := json.Unmarshal([]byte(tt.in), &n); err != nil || string(n) != tt.text {
			t.Errorf("Number(%s) = %q, %v", tt.in, n, err)
		}
		if out, _ := json.Marshal(n); string(out) != tt.out {
			t.Errorf("Number(%s) marshals to %s", tt.in, out)
		}
	}
}
