package rfsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
)

// The control API under /_sim/ has no authentication: it exists for tests and local rehearsal
// and must never be reachable from outside the machine. Every answer is JSON; results are
// wrapped in {"data": ...} like the API's.

func (s *Server) controlRoutes() {
	s.ctl = http.NewServeMux()
	h := s.ctl.HandleFunc
	h("POST /_sim/seed", s.ctlSeed)
	h("POST /_sim/reset", func(w http.ResponseWriter, _ *http.Request) {
		s.Reset()
		writeResponse(w, ok(map[string]any{}))
	})
	h("GET /_sim/state", func(w http.ResponseWriter, _ *http.Request) { writeResponse(w, ok(s.State())) })
	h("GET /_sim/calls", func(w http.ResponseWriter, r *http.Request) {
		since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
		writeResponse(w, ok(s.CallsSince(since)))
	})
	h("DELETE /_sim/calls", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearCalls()
		writeResponse(w, ok(map[string]any{}))
	})
	h("GET /_sim/counters", func(w http.ResponseWriter, _ *http.Request) { writeResponse(w, ok(s.Counters())) })
	h("GET /_sim/faults", func(w http.ResponseWriter, _ *http.Request) { writeResponse(w, ok(s.Faults())) })
	h("POST /_sim/faults", s.ctlAddFault)
	h("DELETE /_sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearFaults()
		writeResponse(w, ok(map[string]any{}))
	})
	h("DELETE /_sim/faults/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := atoi(r.PathValue("id"))
		if !s.RemoveFault(id) {
			writeResponse(w, errResponse(newError(http.StatusNotFound, "Fault not found.")))
			return
		}
		writeResponse(w, ok(map[string]any{}))
	})
	h("POST /_sim/rotate-token", func(w http.ResponseWriter, _ *http.Request) {
		writeResponse(w, ok(map[string]string{"token": s.RotateToken()}))
	})
	h("GET /_sim/clock", s.ctlClock)
	h("POST /_sim/clock", s.ctlClock)
	h("GET /_sim/webhooks", func(w http.ResponseWriter, _ *http.Request) { writeResponse(w, ok(s.Webhooks())) })
	h("POST /_sim/webhooks", s.ctlAddWebhook)
	h("DELETE /_sim/webhooks", func(w http.ResponseWriter, _ *http.Request) {
		_ = s.SetWebhooks(nil)
		writeResponse(w, ok(map[string]any{}))
	})
	h("GET /_sim/webhooks/deliveries", func(w http.ResponseWriter, _ *http.Request) { writeResponse(w, ok(s.Deliveries())) })
	h("DELETE /_sim/webhooks/deliveries", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearDeliveries()
		writeResponse(w, ok(map[string]any{}))
	})
	h("POST /_sim/webhooks/flush", s.ctlFlush)
	h("PATCH /_sim/rewards/due/{id}", s.ctlDue)
	h("POST /_sim/rewards/issued/{id}/status", s.ctlIssuedStatus)
}

// decodeControl reads a control body strictly, so a misspelt key is an error, not a no-op.
func decodeControl(w http.ResponseWriter, r *http.Request, v any) *Error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<20))
	if err != nil {
		return newError(http.StatusBadRequest, "The request body could not be read.")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return newError(http.StatusBadRequest, "The request body is not valid: "+err.Error())
	}
	return nil
}

// asResponse maps an error from a Go method to its JSON answer.
func asResponse(err error) *response {
	var e *Error
	if errors.As(err, &e) {
		return errResponse(e)
	}
	return errResponse(newError(http.StatusUnprocessableEntity, err.Error()))
}

func (s *Server) ctlSeed(w http.ResponseWriter, r *http.Request) {
	var d SeedData
	if err := decodeControl(w, r, &d); err != nil {
		writeResponse(w, errResponse(err))
		return
	}
	if err := s.Seed(d); err != nil {
		writeResponse(w, asResponse(err))
		return
	}
	s.mu.Lock()
	summary := map[string]int{"campaigns": len(s.w.campaigns), "reward_definitions": len(s.w.defs),
		"users": len(s.w.users), "rewards": len(s.w.rewards), "webhooks": len(s.w.webhooks)}
	s.mu.Unlock()
	writeResponse(w, ok(summary))
}

func (s *Server) ctlAddFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if err := decodeControl(w, r, &f); err != nil {
		writeResponse(w, errResponse(err))
		return
	}
	added, err := s.AddFault(f)
	if err != nil {
		writeResponse(w, asResponse(err))
		return
	}
	writeResponse(w, data(http.StatusCreated, added))
}

func (s *Server) ctlClock(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		var in struct {
			Now     string `json:"now"`
			Advance string `json:"advance"`
		}
		if err := decodeControl(w, r, &in); err != nil {
			writeResponse(w, errResponse(err))
			return
		}
		switch {
		case in.Now != "" && in.Advance != "":
			writeResponse(w, errResponse(invalid("now", "Give either now or advance, not both.")))
			return
		case in.Now != "":
			t, err := time.Parse(time.RFC3339Nano, in.Now)
			if err != nil {
				writeResponse(w, errResponse(invalid("now", "The now field must be an RFC 3339 time.")))
				return
			}
			s.SetNow(t)
		case in.Advance != "":
			d, err := time.ParseDuration(in.Advance)
			if err != nil {
				writeResponse(w, errResponse(invalid("advance", "The advance field must be a Go duration such as 72h.")))
				return
			}
			s.Advance(d)
		default:
			writeResponse(w, errResponse(invalid("now", "Give now or advance.")))
			return
		}
	}
	now := s.Now()
	writeResponse(w, ok(map[string]string{"now": now.Format(time.RFC3339Nano), "today": now.Format(dateLayout)}))
}

func (s *Server) ctlAddWebhook(w http.ResponseWriter, r *http.Request) {
	var h Webhook
	if err := decodeControl(w, r, &h); err != nil {
		writeResponse(w, errResponse(err))
		return
	}
	if err := s.AddWebhook(h); err != nil {
		writeResponse(w, asResponse(err))
		return
	}
	writeResponse(w, data(http.StatusCreated, s.Webhooks()))
}

// ctlFlush waits (up to 30 s, or until the caller gives up) for webhook deliveries in flight,
// for out-of-process tests that cannot call WaitIdle.
func (s *Server) ctlFlush(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := s.WaitIdle(ctx); err != nil {
		writeResponse(w, errResponse(newError(http.StatusGatewayTimeout, err.Error())))
		return
	}
	writeResponse(w, ok(s.Deliveries()))
}

func (s *Server) ctlDue(w http.ResponseWriter, r *http.Request) {
	var in struct {
		CanBeIssued *bool `json:"can_be_issued"`
	}
	if err := decodeControl(w, r, &in); err != nil {
		writeResponse(w, errResponse(err))
		return
	}
	if in.CanBeIssued == nil {
		writeResponse(w, errResponse(invalid("can_be_issued", msgRequired("can_be_issued"))))
		return
	}
	id, _ := atoi(r.PathValue("id"))
	out, err := s.SetCanBeIssued(id, *in.CanBeIssued)
	if err != nil {
		writeResponse(w, asResponse(err))
		return
	}
	writeResponse(w, ok(out))
}

func (s *Server) ctlIssuedStatus(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Status string `json:"status"`
	}
	if err := decodeControl(w, r, &in); err != nil {
		writeResponse(w, errResponse(err))
		return
	}
	id, _ := atoi(r.PathValue("id"))
	out, err := s.SetIssuedStatus(id, in.Status)
	if err != nil {
		writeResponse(w, asResponse(err))
		return
	}
	writeResponse(w, ok(out))
}
