package rfsim

import (
	"net/http"
	"strconv"
	"time"
)

// limiter implements RF's "600 calls per minute per token" (§1.3) the way Laravel's throttle
// does: a fixed window that opens at the token's first call, with X-RateLimit-* headers. RF also
// blocks the caller's IP after it exceeds the limit "more than three times"; the simulator counts
// the windows in which an IP was refused and blocks it once that count passes blockAfter.
type limiter struct {
	windows map[string]*rateWindow // by token
	excess  map[string]int         // by IP: windows with a refusal since the last block
	blocked map[string]time.Time   // by IP: end of the block
}

type rateWindow struct {
	start    time.Time
	count    int
	exceeded bool
}

// take counts one call of tok from ip. It returns the headers for a call that may proceed, or
// the 429 to send.
func (s *Server) take(tok, ip string) (http.Header, *response) {
	now := s.cfg.rateClock()
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := s.w.rate
	if limit <= 0 {
		return nil, nil
	}
	if s.lim.windows == nil {
		s.lim = limiter{windows: map[string]*rateWindow{}, excess: map[string]int{}, blocked: map[string]time.Time{}}
	}
	win := s.lim.windows[tok]
	if win == nil || !now.Before(win.start.Add(s.cfg.window)) {
		win = &rateWindow{start: now}
		s.lim.windows[tok] = win
	}
	end := win.start.Add(s.cfg.window)
	if win.count < limit {
		win.count++
		h := http.Header{}
		h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(limit-win.count))
		return h, nil
	}
	if !win.exceeded {
		win.exceeded = true
		s.lim.excess[ip]++
		if s.cfg.blockFor > 0 && s.lim.excess[ip] > s.cfg.blockAfter {
			s.lim.blocked[ip] = now.Add(s.cfg.blockFor)
			s.lim.excess[ip] = 0
			s.counters.IPBlocks++
		}
	}
	s.countLimitedLocked(Fingerprint(tok))
	return nil, tooMany(limit, now, end)
}

// blocked reports whether ip is serving a block, and until when.
func (s *Server) blocked(ip string) (time.Time, bool) {
	now := s.cfg.rateClock()
	s.mu.Lock()
	defer s.mu.Unlock()
	until, found := s.lim.blocked[ip]
	if !found {
		return time.Time{}, false
	}
	if !now.Before(until) {
		delete(s.lim.blocked, ip)
		return time.Time{}, false
	}
	return until, true
}

func (s *Server) blockedResponse(ex *exchange, until time.Time) *response {
	now := s.cfg.rateClock()
	s.mu.Lock()
	defer s.mu.Unlock()
	fp := ex.fingerprint
	if fp == "" {
		fp = "none"
	}
	s.countLimitedLocked(fp)
	return tooMany(s.w.rate, now, until)
}

func (s *Server) countLimitedLocked(fp string) {
	if s.counters.RateLimited == nil {
		s.counters.RateLimited = map[string]int{}
	}
	s.counters.RateLimited[fp]++
}

// tooMany is the 429: Retry-After in whole seconds (at least 1) and X-RateLimit-Reset as the
// Unix time the caller may try again, as Laravel sends them.
func tooMany(limit int, now, until time.Time) *response {
	resp := errResponse(newError(http.StatusTooManyRequests, msgTooMany))
	wait := max(1, int((until.Sub(now)+time.Second-1)/time.Second))
	resp.setHeader("Retry-After", strconv.Itoa(wait))
	resp.setHeader("X-RateLimit-Reset", strconv.FormatInt(now.Add(time.Duration(wait)*time.Second).Unix(), 10))
	resp.setHeader("X-RateLimit-Limit", strconv.Itoa(limit))
	resp.setHeader("X-RateLimit-Remaining", "0")
	return resp
}
