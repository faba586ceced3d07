package rfsim

import (
	"maps"
	"net/http"
	"strings"
	"time"
)

const (
	maxLoggedBody = 64 << 10
	maxLogEntries = 10000 // calls and deliveries kept; older ones are dropped
)

// Call is one logged request to the API or the inbound webhook. Headers are not kept, so the
// Authorization header is never stored; Token is the token's fingerprint.
type Call struct {
	Seq           int64     `json:"seq"`
	Time          time.Time `json:"time"`
	Method        string    `json:"method"`
	Path          string    `json:"path"`
	Query         string    `json:"query,omitempty"`
	Route         string    `json:"route,omitempty"`
	Token         string    `json:"token,omitempty"`
	Body          string    `json:"body,omitempty"`
	BodyTruncated bool      `json:"body_truncated,omitempty"`
	Status        int       `json:"status"` // 0 when an injected fault reset the connection
	Fault         int       `json:"fault,omitempty"`
}

// Counters summarise the traffic since the last Reset.
type Counters struct {
	// Requests counts calls by route pattern ("unmatched" for none) and the status the client
	// saw (0 for a reset connection).
	Requests map[string]map[int]int `json:"requests"`
	// RateLimited counts 429s from the rate limiter or an IP block, by token fingerprint.
	RateLimited map[string]int `json:"rate_limited"`
	IPBlocks    int            `json:"ip_blocks"`
	// Notifications counts welcome emails RF would have sent (POST /users with notify: true).
	Notifications   int            `json:"notifications"`
	WebhookAttempts map[string]int `json:"webhook_attempts"` // by event
	WebhookFailures map[string]int `json:"webhook_failures"` // attempts without a 2xx, by event
}

func (c Counters) clone() Counters {
	out := c
	out.Requests = map[string]map[int]int{}
	for k, v := range c.Requests {
		out.Requests[k] = maps.Clone(v)
	}
	out.RateLimited = nonNil(maps.Clone(c.RateLimited))
	out.WebhookAttempts = nonNil(maps.Clone(c.WebhookAttempts))
	out.WebhookFailures = nonNil(maps.Clone(c.WebhookFailures))
	return out
}

func nonNil(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return m
}

// finish logs the call and answers it: with resp, or, when a fault fails the call, with the
// fault's error or by resetting the connection. A latency-only fault is logged but answers resp.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, ex *exchange, resp *response, fault *Fault) {
	status := 0
	switch {
	case fault != nil && fault.Reset:
	case fault != nil && fault.fails():
		resp = fault.response()
		status = resp.status
	default:
		status = resp.status
	}
	s.record(r, ex, status, fault)
	if fault != nil && fault.Reset {
		abort(w)
		return
	}
	writeResponse(w, resp)
}

func (s *Server) record(r *http.Request, ex *exchange, status int, fault *Fault) {
	c := Call{
		Method: r.Method,
		Path:   redactPath(r.URL.Path),
		Query:  r.URL.RawQuery,
		Route:  ex.route,
		Token:  ex.fingerprint,
		Status: status,
	}
	body := ex.body
	if len(body) > maxLoggedBody {
		body, c.BodyTruncated = body[:maxLoggedBody], true
	}
	c.Body = string(body)
	if fault != nil {
		c.Fault = fault.ID
	}
	route := ex.route
	if route == "" {
		route = "unmatched"
	}

	s.mu.Lock()
	s.callSeq++
	c.Seq, c.Time = s.callSeq, s.nowLocked()
	s.calls = append(s.calls, c)
	if len(s.calls) > maxLogEntries {
		s.calls = append([]Call(nil), s.calls[len(s.calls)-maxLogEntries:]...)
	}
	if s.counters.Requests == nil {
		s.counters.Requests = map[string]map[int]int{}
	}
	if s.counters.Requests[route] == nil {
		s.counters.Requests[route] = map[int]int{}
	}
	s.counters.Requests[route][status]++
	s.mu.Unlock()

	s.cfg.log.Info("rfsim call", "method", c.Method, "path", c.Path, "status", status, "fault", c.Fault)
}

// redactPath hides the inbound webhook's secret token in the log.
func redactPath(p string) string {
	rest, found := strings.CutPrefix(p, "/webhook/")
	if !found {
		return p
	}
	tok, tail, _ := strings.Cut(rest, "/")
	return "/webhook/" + Fingerprint(tok) + "/" + tail
}

// Calls returns the logged calls, oldest first.
func (s *Server) Calls() []Call {
	return s.CallsSince(0)
}

// CallsSince returns the logged calls with a sequence number greater than seq.
func (s *Server) CallsSince(seq int64) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Call{}
	for _, c := range s.calls {
		if c.Seq > seq {
			out = append(out, c)
		}
	}
	return out
}

// ClearCalls empties the call log; sequence numbers keep increasing.
func (s *Server) ClearCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
}

// Counters returns a copy of the traffic counters.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters.clone()
}
