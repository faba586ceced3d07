package rfsim_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/refbridge/refbridge/shared/rfsim"
	"github.com/refbridge/refbridge/shared/rfsim/rfsimtest"
)

func addFault(t *testing.T, s *rfsimtest.Sim, f rfsim.Fault) rfsim.Fault {
	t.Helper()
	added, err := s.Server.AddFault(f)
	if err != nil {
		t.Fatalf("add fault: %v", err)
	}
	return added
}

var qualifyErin = map[string]any{"code": "eRiNlEad", "qualified": true}

func erinQualified(s *rfsimtest.Sim) bool {
	u, _ := s.Server.User(5)
	return u.QualifiedAt != nil
}

func TestFaultStatusBefore(t *testing.T) {
	s := demo(t)
	f := addFault(t, s, rfsim.Fault{Match: "PUT /api/v2/users/qualification", Status: 503, Count: 1})
	r := s.Do(t, "PUT", "/users/qualification", qualifyErin)
	wantStatus(t, r, 503)
	wantJSON(t, r, `{"code":503,"message":"Service Unavailable"}`)
	if erinQualified(s) {
		t.Fatal("a before-fault processed the call")
	}
	wantStatus(t, s.Do(t, "PUT", "/users/qualification", qualifyErin), 200) // count exhausted
	if !erinQualified(s) {
		t.Fatal("lead not qualified")
	}
	calls := s.Server.Calls()
	if calls[0].Fault != f.ID || calls[0].Status != 503 || calls[1].Fault != 0 {
		t.Fatalf("calls %+v", calls)
	}
	if got := s.Server.Faults(); len(got) != 1 || got[0].Fired != 1 {
		t.Fatalf("faults %+v", got)
	}
}

func TestFaultStatusAfter(t *testing.T) {
	s := demo(t)
	addFault(t, s, rfsim.Fault{Match: "PUT /api/v2/users/qualification", Status: 500, When: rfsim.WhenAfter, Body: `{"oops":true}`})
	r := s.Do(t, "PUT", "/users/qualification", qualifyErin)
	wantStatus(t, r, 500)
	wantJSON(t, r, `{"oops":true}`)
	// The response was lost but the outcome happened: the caller must reconcile by reading.
	if !erinQualified(s) || len(dueFor(s.Server.DueRewards("amount"), 2)) != 1 {
		t.Fatal("an after-fault did not process the call")
	}
}

func TestFaultReset(t *testing.T) {
	for _, when := range []string{rfsim.WhenBefore, rfsim.WhenAfter} {
		t.Run(when, func(t *testing.T) {
			s := demo(t)
			addFault(t, s, rfsim.Fault{Match: "/api/v2/rewards/issue/", Reset: true, When: when, Count: 1})
			// A fresh connection per request, so the transport cannot retry on another one.
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			req, _ := http.NewRequestWithContext(t.Context(), "POST", s.URL+"/rewards/issue/1", nil)
			req.Header.Set("Authorization", "Bearer "+s.Token)
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("got status %d, want a connection error", resp.StatusCode)
			}
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Logf("connection error (not ECONNRESET on this platform): %v", err)
			}
			issued := len(s.Server.IssuedRewards("amount")) == 1
			if issued != (when == rfsim.WhenAfter) {
				t.Fatalf("issued=%v after a %s reset", issued, when)
			}
			if calls := s.Server.Calls(); len(calls) != 1 || calls[0].Status != 0 {
				t.Fatalf("calls %+v", calls)
			}
			if c := s.Server.Counters(); c.Requests["POST /api/v2/rewards/issue/{id}"][0] != 1 {
				t.Fatalf("counters %+v", c.Requests)
			}
		})
	}
}

func TestFaultLatency(t *testing.T) {
	s := demo(t)
	addFault(t, s, rfsim.Fault{Match: "GET /api/v2/users/{identifier}", Latency: 15 * time.Millisecond})
	start := time.Now()
	wantStatus(t, s.Do(t, "GET", "/users/1", nil), 200) // latency only: the call still succeeds
	if elapsed := time.Since(start); elapsed < 15*time.Millisecond {
		t.Fatalf("answered after %v, before the injected latency", elapsed)
	}
}

func TestFaultMatching(t *testing.T) {
	tests := []struct {
		match  string
		method string
		path   string
		hit    bool
	}{
		{"*", "GET", "/campaigns", true},
		{"* /api/v2/campaigns", "GET", "/campaigns", true},
		{"POST /api/v2/campaigns", "GET", "/campaigns", false},
		{"/api/v2/rewards/issue/", "POST", "/rewards/issue/3", true},
		{"/api/v2/rewards/*", "GET", "/rewards/due/amount", true},
		{"GET /api/v2/users/{identifier}", "GET", "/users/aLiCeRef", true},
		{"GET /api/v2/users/{identifier}", "GET", "/users", false},
		{"/api/v2/users", "GET", "/users/1", false},
		{"POST /webhook/{token}/qualify", "POST", "webhook", true},
	}
	for _, tt := range tests {
		t.Run(tt.match+" "+tt.path, func(t *testing.T) {
			s := demo(t)
			addFault(t, s, rfsim.Fault{Match: tt.match, Status: 418})
			var r *rfsimtest.Response
			if tt.path == "webhook" {
				r = s.DoRaw(t, tt.method, s.WebhookURL, []byte("code=x"), nil)
			} else {
				r = s.Do(t, tt.method, tt.path, nil)
			}
			if (r.Status == 418) != tt.hit {
				t.Fatalf("status %d, hit=%v", r.Status, tt.hit)
			}
		})
	}
	t.Run("control API is never faulted", func(t *testing.T) {
		s := demo(t)
		addFault(t, s, rfsim.Fault{Match: "*", Status: 500})
		wantStatus(t, s.DoRaw(t, "GET", s.HTTP.URL+"/_sim/state", nil, nil), 200)
	})
}

func TestFaultProbabilityIsSeeded(t *testing.T) {
	run := func() []int {
		s := demo(t, rfsim.WithSeed(7))
		addFault(t, s, rfsim.Fault{Match: "GET /api/v2/campaigns", Status: 502, Probability: 0.3})
		var statuses []int
		for range 100 {
			statuses = append(statuses, s.Do(t, "GET", "/campaigns", nil).Status)
		}
		return statuses
	}
	a, b := run(), run()
	if !slices.Equal(a, b) {
		t.Fatal("the same seed gave different fault sequences")
	}
	n := 0
	for _, st := range a {
		if st == 502 {
			n++
		}
	}
	if n < 10 || n > 60 {
		t.Fatalf("%d of 100 calls faulted at p=0.3", n)
	}
}

func TestFaultRateLimitStatusHasRetryAfter(t *testing.T) {
	s := demo(t)
	addFault(t, s, rfsim.Fault{Match: "*", Status: 429, Count: 1})
	r := s.Do(t, "GET", "/campaigns", nil)
	if r.Status != 429 || r.Header.Get("Retry-After") != "1" {
		t.Fatalf("status %d headers %v", r.Status, r.Header)
	}
}

func TestFaultControlAPI(t *testing.T) {
	s := demo(t)
	ctl := s.HTTP.URL + "/_sim/faults"
	r := s.DoRaw(t, "POST", ctl, []byte(`{"match":"GET /api/v2/campaigns","status":504,"latency":"2ms","count":2}`), nil)
	wantStatus(t, r, 201)
	f := data[rfsim.Fault](t, r)
	if f.ID == 0 || f.Latency != 2*time.Millisecond || f.When != "before" || f.Count != 2 {
		t.Fatalf("fault %+v", f)
	}
	if !bytes.Contains(r.Body, []byte(`"latency":"2ms"`)) {
		t.Fatalf("latency not rendered as a duration: %s", r.Body)
	}
	wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 504)
	list := data[[]rfsim.Fault](t, s.DoRaw(t, "GET", ctl, nil, nil))
	if len(list) != 1 || list[0].Fired != 1 {
		t.Fatalf("faults %+v", list)
	}
	wantStatus(t, s.DoRaw(t, "DELETE", ctl, nil, nil), 200)
	wantStatus(t, s.Do(t, "GET", "/campaigns", nil), 200)

	// One fault can be removed by id.
	f2 := addFault(t, s, rfsim.Fault{Match: "*", Status: 500})
	wantStatus(t, s.DoRaw(t, "DELETE", ctl+"/"+strconv.Itoa(f2.ID), nil, nil), 200)
	wantStatus(t, s.DoRaw(t, "DELETE", ctl+"/"+strconv.Itoa(f2.ID), nil, nil), 404)

	for _, bad := range []string{
		`{"match":"*","status":500,"reset":true}`,
		`{"match":"*"}`,
		`{"status":500}`,
		`{"match":"*","status":500,"probability":2}`,
		`{"match":"*","status":500,"when":"during"}`,
		`{"match":"*","status":99}`,
	} {
		if r := s.DoRaw(t, "POST", ctl, []byte(bad), nil); r.Status != 422 {
			t.Fatalf("%s: status %d", bad, r.Status)
		}
	}
	if r := s.DoRaw(t, "POST", ctl, []byte(`{"match":"*","status":500,"latency":"soon"}`), nil); r.Status != 400 {
		t.Fatalf("bad latency: status %d", r.Status)
	}
	if r := s.DoRaw(t, "POST", ctl, []byte(`{"match":"*","staus":500}`), nil); r.Status != 400 {
		t.Fatalf("misspelt key: status %d", r.Status)
	}
}

// RF's throttle answers 429 before handling a request, and clients retry 429s (creates
// included) on that premise; a 429 after processing would make them create twice, which RF
// never causes. The combination is refused, in Go and through the control API.
func TestFaultRejects429After(t *testing.T) {
	s := demo(t)
	_, err := s.Server.AddFault(rfsim.Fault{Match: "POST /api/v2/users", Status: 429, When: rfsim.WhenAfter})
	var e *rfsim.Error
	if !errors.As(err, &e) || e.Code != 422 || len(e.Errors["when"]) != 1 ||
		!strings.Contains(e.Errors["when"][0].Message, "A 429 fault cannot strike after processing") {
		t.Fatalf("AddFault: %v (%+v)", err, e)
	}
	r := s.DoRaw(t, "POST", s.HTTP.URL+"/_sim/faults", []byte(`{"match":"*","status":429,"when":"after"}`), nil)
	errs := wantInvalid(t, r, "when")
	if !strings.Contains(errs["when"][0].Message, "before handling a request") {
		t.Fatalf("message %q", errs["when"][0].Message)
	}
	if len(s.Server.Faults()) != 0 {
		t.Fatalf("a refused fault was installed: %+v", s.Server.Faults())
	}
	// 429 before processing, and other statuses after, are fine.
	addFault(t, s, rfsim.Fault{Match: "*", Status: 429, When: rfsim.WhenBefore})
	addFault(t, s, rfsim.Fault{Match: "*", Status: 429})
	addFault(t, s, rfsim.Fault{Match: "*", Status: 503, When: rfsim.WhenAfter})
}

// A client that gives up during an injected latency never gets its call processed: it is
// logged with status 499 and changes nothing (no user, no webhook).
func TestFaultLatencyClientGone(t *testing.T) {
	s := fastSim(t)
	rc := newReceiver(t)
	addWebhook(t, s, rfsim.Webhook{Event: "lead_created", URL: rc.URL})
	f := addFault(t, s, rfsim.Fault{Match: "POST /api/v2/users", Latency: 5 * time.Second})
	before := len(s.Server.Users())

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	body := `{"campaign_id":1,"first_name":"Gone","email":"gone@example.com","referrer":{"field":"code","value":"aLiCeRef"}}`
	req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+"/users", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := s.HTTP.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the client got an answer (%d) before giving up", resp.StatusCode)
	}
	waitFor(t, "the call to be logged", func() bool { return len(s.Server.Calls()) == 1 })
	c := s.Server.Calls()[0]
	if c.Status != 499 || c.Fault != f.ID {
		t.Fatalf("call %+v", c)
	}
	if n := len(s.Server.Users()); n != before {
		t.Fatalf("users %d -> %d: the abandoned call was processed", before, n)
	}
	if got := s.Server.Counters().Requests["POST /api/v2/users"]; got[499] != 1 || len(got) != 1 {
		t.Fatalf("counters %v", got)
	}
	s.WaitIdle(t)
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("lead_created delivered %d times for an abandoned call", n)
	}
}
