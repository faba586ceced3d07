package rfsim

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
)

// routes registers the API (§2.1) and the inbound webhook (§4). Patterns double as the keys of
// the per-route request counters.
func (s *Server) routes() {
	s.mux = http.NewServeMux()
	s.api("POST /api/v2/users", s.createUser)
	s.api("GET /api/v2/users", s.listUsers)
	s.api("POST /api/v2/users/search", s.listUsers)
	s.api("PUT /api/v2/users/qualification", s.qualification)
	s.api("GET /api/v2/users/{identifier}", s.getUser)
	s.api("PUT /api/v2/users/{id}", s.updateUser)
	s.api("DELETE /api/v2/users/{id}", s.deleteUser)

	s.api("GET /api/v2/campaigns", s.listCampaigns)
	s.api("POST /api/v2/campaigns/search", s.listCampaigns)
	s.api("GET /api/v2/campaigns/{identifier}", s.getCampaign)

	for _, kind := range []string{kindDashboard, kindDue, kindIssued} {
		s.api("GET /api/v2/rewards/"+kind+"/{metric}", s.listRewards(kind))
		s.api("POST /api/v2/rewards/"+kind+"/{metric}/search", s.listRewards(kind))
	}
	// POST is what the vendor docs' transcript shows; PUT is accepted too in case the original
	// pages say otherwise (§2.1 note).
	for _, m := range []string{http.MethodPost, http.MethodPut} {
		s.api(m+" /api/v2/rewards/issue/{id}", s.issueReward)
		s.api(m+" /api/v2/rewards/cancel/{id}", s.cancelReward)
	}

	s.public("POST /webhook/{token}/qualify", s.inboundQualify)
}

// inboundQualify is RF's inbound webhook: qualify the lead named by code, coupon, or email plus
// campaign_id. It always answers 200 {} and ignores what it cannot match, as RF does for unknown
// coupons; only a wrong token is a 404, since the token is what makes the URL exist.
func (s *Server) inboundQualify(rq *request) *response {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rq.PathValue("token") != s.w.webhookToken {
		return errResponse(newError(http.StatusNotFound, msgNotFound))
	}
	in := inboundValues(rq)
	var u *user
	switch {
	case in.Get("code") != "":
		u = s.w.userByCode(in.Get("code"))
	case in.Get("coupon") != "":
		u = s.w.couponHolder(in.Get("coupon"))
	case in.Get("email") != "":
		if cid, isID := atoi(in.Get("campaign_id")); isID {
			u = s.w.userByEmail(cid, in.Get("email"))
		}
	}
	if u != nil && u.Type == TypeInvited {
		s.setQualifiedLocked(u, true)
	}
	return &response{status: http.StatusOK, body: map[string]any{}}
}

// inboundValues reads a form-encoded body (what RF's curl example sends) or a JSON object.
func inboundValues(rq *request) url.Values {
	ct := rq.Header.Get("Content-Type")
	body := bytes.TrimSpace(rq.body)
	if strings.Contains(ct, "json") || (ct == "" && bytes.HasPrefix(body, []byte("{"))) {
		m, err := parseBody(body)
		out := url.Values{}
		if err == nil {
			for k, v := range m {
				if str, isScalar := scalarString(v); isScalar {
					out.Set(k, str)
				}
			}
		}
		return out
	}
	vals, _ := url.ParseQuery(string(body))
	for k, vs := range vals {
		vals[k] = []string{strings.TrimSpace(vs[0])}
	}
	return vals
}

// couponHolder finds the lead that received a coupon. Coupons match case-insensitively because
// people type them.
func (w *world) couponHolder(coupon string) *user {
	for _, r := range sortedValues(w.rewards) {
		if w.metricOf(r) != MetricCoupon || !strings.EqualFold(r.Coupon, coupon) {
			continue
		}
		if u := w.users[r.RecipientID]; u != nil && u.Type == TypeInvited {
			return u
		}
	}
	return nil
}
