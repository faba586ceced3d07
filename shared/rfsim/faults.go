package rfsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// When a fault strikes.
const (
	// WhenBefore fails the call without processing it: nothing changes.
	WhenBefore = "before"
	// WhenAfter processes the call (state changes, webhooks fire) and then replaces the answer:
	// the "response lost, outcome unknown" case a caller must reconcile by reading state back.
	// It cannot be combined with status 429, which RF only sends before processing.
	WhenAfter = "after"
)

// Fault is an injected failure for the calls it matches.
type Fault struct {
	ID int `json:"id"`
	// Match selects calls: "METHOD PATH" or "PATH"; the method may be "*". PATH is exact, may
	// use {name} for one segment, and is a prefix when it ends in "/" or "*"; "*" matches all.
	// Examples: "PUT /api/v2/users/qualification", "/api/v2/rewards/issue/", "*".
	Match string `json:"match"`
	// Status is the status to answer with; Body is the raw body (default RF's error JSON).
	Status int    `json:"status,omitempty"`
	Body   string `json:"body,omitempty"`
	// Probability (0 < p ≤ 1) makes the fault strike at random, from the seeded generator;
	// 0 means every matching call.
	Probability float64 `json:"probability,omitempty"`
	// Count limits the fault to the next Count calls it strikes; 0 means no limit.
	Count int `json:"count,omitempty"`
	// Latency is added before the call is processed.
	Latency time.Duration `json:"-"`
	// Reset closes the connection abruptly (TCP RST) instead of answering.
	Reset bool   `json:"reset,omitempty"`
	When  string `json:"when,omitempty"`
	// Fired counts the calls the fault struck.
	Fired int `json:"fired"`
}

type faultJSON Fault

// MarshalJSON writes Latency as a Go duration string ("250ms").
func (f Fault) MarshalJSON() ([]byte, error) {
	out := struct {
		faultJSON
		Latency string `json:"latency,omitempty"`
	}{faultJSON: faultJSON(f)}
	if f.Latency > 0 {
		out.Latency = f.Latency.String()
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads Latency as a Go duration string ("250ms"). Unknown keys are errors: a
// misspelt "status" would otherwise make a fault that never fails.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var in struct {
		faultJSON
		Latency string `json:"latency"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return err
	}
	*f = Fault(in.faultJSON)
	if in.Latency != "" {
		d, err := time.ParseDuration(in.Latency)
		if err != nil {
			return fmt.Errorf("fault latency: %w", err)
		}
		f.Latency = d
	}
	return nil
}

func (f *Fault) fails() bool { return f.Status != 0 || f.Reset }

// msgThrottleAfter refuses a 429 that strikes after processing. RF's throttle answers 429
// before a request reaches its handler, so a 429 means "nothing happened" and clients retry it,
// creates included; a 429 after a processed call would make them create twice, which RF never
// causes.
const msgThrottleAfter = "A 429 fault cannot strike after processing: Referral Factory's rate limiter answers 429 " +
	"before handling a request, and clients retry 429s (even creates) on that premise. Use when \"before\", " +
	"or another status such as 500 or 503 for the \"response lost\" case."

func (f *Fault) validate() *Error {
	var v validation
	if strings.TrimSpace(f.Match) == "" {
		v.add("match", msgRequired("match"))
	}
	if f.Status != 0 && (f.Status < 100 || f.Status > 599) {
		v.add("status", "The status field must be between 100 and 599.")
	}
	if f.Status != 0 && f.Reset {
		v.add("reset", "A fault either answers with a status or resets the connection.")
	}
	if !f.fails() && f.Latency <= 0 {
		v.add("status", "A fault needs a status, reset or latency.")
	}
	if f.Probability < 0 || f.Probability > 1 {
		v.add("probability", "The probability field must be between 0 and 1.")
	}
	if f.Count < 0 {
		v.add("count", "The count field must be at least 0.")
	}
	if f.When != "" && f.When != WhenBefore && f.When != WhenAfter {
		v.add("when", msgInvalid("when"))
	}
	if f.When == WhenAfter && f.Status == http.StatusTooManyRequests {
		v.add("when", msgThrottleAfter)
	}
	return v.err()
}

func (f *Fault) matches(r *http.Request) bool {
	method, path := "*", strings.TrimSpace(f.Match)
	if m, p, found := strings.Cut(path, " "); found {
		method, path = m, strings.TrimSpace(p)
	}
	if method != "*" && !strings.EqualFold(method, r.Method) {
		return false
	}
	return matchPath(path, r.URL.Path)
}

func matchPath(pattern, path string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(path, strings.TrimSuffix(pattern, "*"))
	case strings.HasSuffix(pattern, "/"):
		return strings.HasPrefix(path, pattern)
	}
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i, seg := range ps {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") && xs[i] != "" {
			continue
		}
		if seg != xs[i] {
			return false
		}
	}
	return true
}

// response is the answer a status fault sends instead of the real one.
func (f *Fault) response() *response {
	resp := errResponse(newError(f.Status, http.StatusText(f.Status)))
	if f.Body != "" {
		resp.raw = []byte(f.Body)
	}
	if f.Status == http.StatusTooManyRequests {
		resp.setHeader("Retry-After", "1") // a client honouring Retry-After must not wait long
	}
	return resp
}

// pickFault returns a copy of the first active fault that strikes this call, counting it.
func (s *Server) pickFault(r *http.Request) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Count > 0 && f.Fired >= f.Count {
			continue
		}
		if !f.matches(r) {
			continue
		}
		if f.Probability > 0 && s.faultRNG.Float64() >= f.Probability {
			continue
		}
		f.Fired++
		c := *f
		return &c
	}
	return nil
}

// abort resets the connection: SO_LINGER 0 makes Close send a RST, so the client sees
// "connection reset by peer" rather than a clean EOF.
func abort(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // HTTP/2 or a wrapped writer: abort the stream instead
	}
	if tc, isTCP := conn.(*net.TCPConn); isTCP {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// AddFault installs a fault and returns it with its id. Faults are tried in the order added;
// the first that strikes wins.
func (s *Server) AddFault(f Fault) (Fault, error) {
	if err := f.validate(); err != nil {
		return Fault{}, err
	}
	if f.When == "" {
		f.When = WhenBefore
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f.ID, f.Fired = s.nextFault, 0
	s.nextFault++
	s.faults = append(s.faults, &f)
	return f, nil
}

// Faults lists the installed faults with how often each struck.
func (s *Server) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Fault{}
	for _, f := range s.faults {
		out = append(out, *f)
	}
	return out
}

// RemoveFault removes one fault; it reports whether it existed.
func (s *Server) RemoveFault(id int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.ID == id {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
			return true
		}
	}
	return false
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}
