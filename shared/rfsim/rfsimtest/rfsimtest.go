// Package rfsimtest owns the test harness around the Referral Factory simulator: it starts an
// rfsim.Server on an httptest server for one test, tears it down afterwards, and offers
// one-line setups (the demo seed, a referrer, a lead, a qualification) and an authenticated
// request helper, so any package's tests can run against a stateful RF.
package rfsimtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/refbridge/refbridge/shared/rfsim"
)

// Sim is a running simulator.
type Sim struct {
	Server *rfsim.Server
	HTTP   *httptest.Server
	// URL is the API base, HTTP.URL + "/api/v2": what a client's base URL setting takes.
	URL string
	// Token is the API token; MustSeed, RotateToken and Reset keep it current (after calling
	// Server.Seed, Server.RotateToken or Server.Reset directly it may be stale).
	Token string
	// WebhookURL is the inbound qualify webhook, token included.
	WebhookURL string
}

// New starts a simulator for the test and stops it (and its webhook deliveries) at cleanup.
func New(t testing.TB, opts ...rfsim.Option) *Sim {
	t.Helper()
	srv := rfsim.New(opts...)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	s := &Sim{Server: srv, HTTP: hs, URL: hs.URL + "/api/v2"}
	s.refresh()
	return s
}

func (s *Sim) refresh() {
	s.Token = s.Server.Token()
	s.WebhookURL = s.HTTP.URL + "/webhook/" + s.Server.WebhookToken() + "/qualify"
}

// MustSeed replaces the simulator's state with d.
func (s *Sim) MustSeed(t testing.TB, d rfsim.SeedData) {
	t.Helper()
	if err := s.Server.Seed(d); err != nil {
		t.Fatalf("rfsimtest: seed: %v", err)
	}
	s.refresh()
}

// SeedDemo loads the demo seed (rfsim.DemoSeed: campaign 1 "DEMO2026", an amount reward for
// referrers, a join coupon for leads, three referrers, one qualified and one pending lead) and
// returns what it loaded.
func (s *Sim) SeedDemo(t testing.TB) rfsim.SeedData {
	t.Helper()
	d := DemoSeed(t)
	s.MustSeed(t, d)
	return d
}

// DemoSeed returns the demo seed (rfsim.DemoSeed), for tests that change it before seeding.
func DemoSeed(t testing.TB) rfsim.SeedData {
	t.Helper()
	return rfsim.DemoSeed()
}

// Reset returns the simulator to its state right after New (rfsim.Server.Reset: no state,
// faults, logs or webhooks, deliveries in flight stopped) and refreshes Token and WebhookURL,
// which revert to the options' tokens.
func (s *Sim) Reset(t testing.TB) {
	t.Helper()
	s.Server.Reset()
	s.refresh()
}

// RotateToken rotates the API token and returns the new one.
func (s *Sim) RotateToken(t testing.TB) string {
	t.Helper()
	tok := s.Server.RotateToken()
	s.refresh()
	return tok
}

// Referrer creates a referrer in the campaign, as POST /users without a referrer would.
func (s *Sim) Referrer(t testing.TB, campaignID int, email string) rfsim.User {
	t.Helper()
	u, err := s.Server.CreateUser(rfsim.NewUser{CampaignID: campaignID, FirstName: "Referrer", Email: email})
	if err != nil {
		t.Fatalf("rfsimtest: create referrer %s: %v", email, err)
	}
	return u
}

// Lead creates a lead referred by the user with referrerCode, as POST /users with
// referrer {field: code} would (webhooks and join rewards included).
func (s *Sim) Lead(t testing.TB, campaignID int, referrerCode, email string) rfsim.User {
	t.Helper()
	u, err := s.Server.CreateUser(rfsim.NewUser{CampaignID: campaignID, FirstName: "Lead", Email: email,
		Referrer: &rfsim.ReferrerRef{Field: "code", Value: referrerCode}})
	if err != nil {
		t.Fatalf("rfsimtest: create lead %s: %v", email, err)
	}
	return u
}

// Qualify qualifies a lead by id, as PUT /users/qualification would.
func (s *Sim) Qualify(t testing.TB, userID int) rfsim.User {
	t.Helper()
	u, err := s.Server.Qualify(rfsim.UserRef{ID: userID}, true)
	if err != nil {
		t.Fatalf("rfsimtest: qualify %d: %v", userID, err)
	}
	return u
}

// WaitIdle waits for the webhook deliveries in flight.
func (s *Sim) WaitIdle(t testing.TB) {
	t.Helper()
	if err := s.Server.WaitIdle(t.Context()); err != nil {
		t.Fatalf("rfsimtest: %v", err)
	}
}

// Response is an answer read in full.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Decode unmarshals the body into v.
func (r *Response) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("rfsimtest: decode %s: %v", r.Body, err)
	}
}

// Do calls the API with the current token: path is relative to URL (e.g. "/users?page=2") or an
// absolute URL (e.g. a links.next). A non-nil body is sent as JSON, or as is if it is []byte.
func (s *Sim) Do(t testing.TB, method, path string, body any) *Response {
	t.Helper()
	target := path
	if len(path) == 0 || path[0] == '/' {
		target = s.URL + path
	}
	return s.DoRaw(t, method, target, body, http.Header{"Authorization": {"Bearer " + s.Token}})
}

// DoRaw sends a request with exactly the given headers (plus a JSON Content-Type for a body).
func (s *Sim) DoRaw(t testing.TB, method, url string, body any, h http.Header) *Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("rfsimtest: encode body: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatalf("rfsimtest: %v", err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	if rd != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.HTTP.Client().Do(req)
	if err != nil {
		t.Fatalf("rfsimtest: %s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("rfsimtest: read %s %s: %v", method, url, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}
