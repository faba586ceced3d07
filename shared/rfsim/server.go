package rfsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxBody caps request bodies; RF's own limit is unknown, refbridge's bodies are tiny.
const maxBody = 1 << 20

// StatusClientClosed is logged for a call whose client went away during an injected latency,
// before the call was processed (nginx's "client closed request"). No client ever sees it.
const StatusClientClosed = 499

// Server is the simulator. It implements http.Handler; all state lives behind one mutex.
type Server struct {
	cfg config
	mux *http.ServeMux // /api/v2 and the inbound webhook
	ctl *http.ServeMux // /_sim/

	// ctx is cancelled by Close and is the parent of every generation's context.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	w           *world
	offset      time.Duration // SetNow/Advance shift of cfg.clock
	codeRNG     *rand.Rand
	faultRNG    *rand.Rand
	faults      []*Fault
	nextFault   int
	calls       []Call
	callSeq     int64
	deliveries  []Delivery
	deliverySeq int64
	counters    Counters
	lim         limiter
	pending     int           // webhook deliveries in flight
	idle        chan struct{} // closed when pending drops to zero
	// gen numbers the current generation of state; Reset and Seed start a new one. genCtx
	// bounds the generation's webhook deliveries (requests and backoff sleeps), so starting a
	// new generation stops the old one's deliveries; stale attempts are never recorded.
	gen       int
	genCtx    context.Context
	genCancel context.CancelFunc
	closed    bool

	// searchCache holds the objects searches filter, by the JSON they were decoded from
	// (searchable); searchMu guards it apart from mu, since searches filter outside mu.
	searchMu    sync.Mutex
	searchCache map[string]map[string]any
}

// New returns a simulator with empty state; use Seed to load campaigns, rewards and users.
func New(opts ...Option) *Server {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{cfg: cfg}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.routes()
	s.controlRoutes()
	s.mu.Lock()
	s.resetLocked()
	s.mu.Unlock()
	return s
}

// Reset returns the simulator to its state right after New: no campaigns, users, rewards or
// webhooks, the configured tokens and rate, the clock unshifted, and no faults, calls, counters,
// rate-limit windows, IP blocks or deliveries. Webhook deliveries in flight are stopped: a
// request on the wire is aborted, a retry not yet sent is dropped, and neither is recorded.
// Reset returns without waiting for their goroutines; WaitIdle returns as soon as they exit.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
}

func (s *Server) resetLocked() {
	s.w = newWorld(&s.cfg)
	s.offset = 0
	seed := uint64(s.cfg.seed)
	s.codeRNG = rand.New(rand.NewPCG(seed, 0x5eed_c0de))
	s.faultRNG = rand.New(rand.NewPCG(seed, 0xfa017))
	s.faults, s.nextFault = nil, 1
	s.calls, s.deliveries = nil, nil
	s.counters = Counters{}
	s.lim = limiter{}
	s.newGenLocked()
}

// newGenLocked starts a new generation: it cancels the deliveries of the previous one.
func (s *Server) newGenLocked() {
	if s.genCancel != nil {
		s.genCancel()
	}
	s.genCtx, s.genCancel = context.WithCancel(s.ctx)
	s.gen++
}

// Close stops webhook deliveries in flight and waits for them to return. The handler keeps
// serving; new deliveries are dropped.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// ServeHTTP routes /api/v2 and /webhook/ through the tracked pipeline (faults, call log) and
// /_sim/ to the control API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/_sim" || strings.HasPrefix(p, "/_sim/"):
		serveJSONMux(s.ctl, w, r)
	case isAPIPath(p) || strings.HasPrefix(p, "/webhook/"):
		s.serveTracked(w, r)
	default:
		writeResponse(w, errResponse(newError(http.StatusNotFound, msgNotFound)))
	}
}

func isAPIPath(p string) bool { return p == "/api/v2" || strings.HasPrefix(p, "/api/v2/") }

// exchange carries what the pipeline learns about one call to the call log.
type exchange struct {
	body        []byte
	route       string
	fingerprint string
	resp        *response
}

type exchangeKey struct{}

// request is what an API handler sees.
type request struct {
	*http.Request
	body []byte
}

type handlerFunc func(*request) *response

// response is a handler's result. Handlers never write to the connection themselves, so the
// pipeline can log the outcome, or swap it for an injected fault after the state changed.
type response struct {
	status int
	header http.Header
	body   any
	raw    []byte // sent as is instead of body (an injected fault's custom body)
}

func data(status int, v any) *response {
	return &response{status: status, body: map[string]any{"data": v}}
}
func ok(v any) *response { return data(http.StatusOK, v) }

func errResponse(e *Error) *response { return &response{status: e.Code, body: e} }

func (r *response) setHeader(k, v string) {
	if r.header == nil {
		r.header = http.Header{}
	}
	r.header.Set(k, v)
}

func writeResponse(w http.ResponseWriter, r *response) {
	for k, vs := range r.header {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Type", "application/json")
	if r.raw != nil {
		w.WriteHeader(r.status)
		_, _ = w.Write(r.raw)
		return
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep & in links readable, as PHP's json_encode with slashes does
	if err := enc.Encode(r.body); err != nil {
		http.Error(w, `{"code":500,"message":"Server Error"}`, http.StatusInternalServerError)
		return
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(buf.Bytes())
}

// serveTracked runs one API or inbound-webhook call: read the body, apply an injected fault
// (before or after the real processing), dispatch, log, and answer.
func (s *Server) serveTracked(w http.ResponseWriter, r *http.Request) {
	ex := &exchange{}
	_, ex.route = s.mux.Handler(r)
	if tok := bearer(r); tok != "" {
		ex.fingerprint = Fingerprint(tok)
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	ex.body = body
	if err != nil {
		e := newError(http.StatusBadRequest, msgBadJSON)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			e = newError(http.StatusRequestEntityTooLarge, msgTooLarge)
		}
		s.finish(w, r, ex, errResponse(e), nil)
		return
	}

	fault := s.pickFault(r)
	if fault != nil && fault.Latency > 0 {
		t := time.NewTimer(fault.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			// The client gave up during the injected latency: like a request that never left a
			// proxy's queue, it is not processed. Logged as 499, nothing is written.
			t.Stop()
			s.record(r, ex, StatusClientClosed, fault)
			return
		}
	}
	var resp *response
	if fault == nil || !fault.fails() || fault.When == WhenAfter {
		resp = s.dispatch(r, ex)
	}
	s.finish(w, r, ex, resp, fault)
}

// dispatch routes through the mux and returns the handler's response. Unknown paths are 404 and
// known paths with the wrong method 405, both as JSON, before any auth (as Laravel routes do).
func (s *Server) dispatch(r *http.Request, ex *exchange) *response {
	if isAPIPath(r.URL.Path) {
		if until, blocked := s.blocked(clientIP(r)); blocked {
			return s.blockedResponse(ex, until)
		}
	}
	if ex.route == "" {
		return routeMiss(s.mux, r)
	}
	r = r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex))
	s.mux.ServeHTTP(discard{}, r)
	if ex.resp == nil { // a mux redirect for a non-canonical path
		return errResponse(newError(http.StatusNotFound, msgNotFound))
	}
	return ex.resp
}

// routeMiss tells a 405 from a 404 by asking the mux whether another method would match.
func routeMiss(mux *http.ServeMux, r *http.Request) *response {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := mux.Handler(probe); p != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		return errResponse(newError(http.StatusNotFound, msgNotFound))
	}
	resp := errResponse(newError(http.StatusMethodNotAllowed, msgMethod))
	resp.setHeader("Allow", strings.Join(allow, ", "))
	return resp
}

func serveJSONMux(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	if _, p := mux.Handler(r); p == "" {
		writeResponse(w, routeMiss(mux, r))
		return
	}
	mux.ServeHTTP(w, r)
}

// discard is the ResponseWriter given to the mux: handlers return responses instead of writing.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// api registers an authenticated /api/v2 route.
func (s *Server) api(pattern string, h handlerFunc) {
	s.mux.HandleFunc(pattern, func(_ http.ResponseWriter, r *http.Request) {
		ex := r.Context().Value(exchangeKey{}).(*exchange)
		ex.resp = s.guard(&request{Request: r, body: ex.body}, h)
	})
}

// public registers a route without bearer auth or rate limiting (the inbound webhook).
func (s *Server) public(pattern string, h handlerFunc) {
	s.mux.HandleFunc(pattern, func(_ http.ResponseWriter, r *http.Request) {
		ex := r.Context().Value(exchangeKey{}).(*exchange)
		ex.resp = h(&request{Request: r, body: ex.body})
	})
}

// guard applies content negotiation, auth and the rate limit, in that order, then the handler.
func (s *Server) guard(rq *request, h handlerFunc) *response {
	if !acceptsJSON(rq.Header.Values("Accept")) {
		return errResponse(newError(http.StatusNotAcceptable, msgNotAcceptable))
	}
	tok := bearer(rq.Request)
	s.mu.Lock()
	valid := tok != "" && tok == s.w.token
	s.mu.Unlock()
	if !valid {
		return errResponse(newError(http.StatusUnauthorized, msgUnauthenticated))
	}
	hdr, limited := s.take(tok, clientIP(rq.Request))
	if limited != nil {
		return limited
	}
	resp := h(rq)
	for k, vs := range hdr {
		resp.setHeader(k, vs[0])
	}
	return resp
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Fingerprint identifies a token in logs and counters without revealing it: "…" and its last
// four characters.
func Fingerprint(token string) string {
	if len(token) <= 4 {
		return "…"
	}
	return "…" + token[len(token)-4:]
}

// acceptsJSON reports whether an Accept header allows a JSON answer. No header means anything.
func acceptsJSON(values []string) bool {
	var seen bool
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			media, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			media = strings.ToLower(strings.TrimSpace(media))
			if media == "" {
				continue
			}
			seen = true
			if q, found := strings.CutPrefix(strings.TrimSpace(params), "q="); found {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
					continue
				}
			}
			switch {
			case media == "*/*", media == "application/*", media == "application/json", strings.HasSuffix(media, "+json"):
				return true
			}
		}
	}
	return !seen
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// baseURL is the absolute scheme://host used in pagination links.
func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.baseURL != "" {
		return s.cfg.baseURL
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		proto = strings.TrimSpace(strings.Split(p, ",")[0])
	}
	host := r.Host
	if h := r.Header.Get("X-Forwarded-Host"); h != "" {
		host = strings.TrimSpace(strings.Split(h, ",")[0])
	}
	return proto + "://" + host
}

// Now is the simulated time; dates in API objects are its UTC date.
func (s *Server) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nowLocked()
}

func (s *Server) nowLocked() time.Time { return s.cfg.clock().Add(s.offset).UTC() }

func (s *Server) todayLocked() string { return s.nowLocked().Format(dateLayout) }

// SetNow moves the simulated clock to t; it keeps ticking from there with the base clock.
func (s *Server) SetNow(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset = t.Sub(s.cfg.clock())
}

// Advance moves the simulated clock forward by d (backwards if negative).
func (s *Server) Advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
}

const dateLayout = "2006-01-02"

func validDate(s string) bool {
	_, err := time.Parse(dateLayout, s)
	return err == nil
}
