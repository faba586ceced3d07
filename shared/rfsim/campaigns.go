package rfsim

import "net/http"

var campaignFields = fieldsOf(Campaign{Analytics: &CampaignAnalytics{}})

func (s *Server) listCampaigns(rq *request) *response {
	withAnalytics := withRelations(rq.Request)["campaign.analytics"]
	s.mu.Lock()
	var st *stats
	if withAnalytics {
		st = s.w.stats()
	}
	var items []any
	for _, c := range sortedValues(s.w.campaigns) {
		items = append(items, s.w.renderCampaign(c, st))
	}
	s.mu.Unlock()
	return s.list(rq, items, campaignFields)
}

func (s *Server) getCampaign(rq *request) *response {
	withAnalytics := withRelations(rq.Request)["campaign.analytics"]
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.w.campaignByIdentifier(rq.PathValue("identifier"))
	if c == nil {
		return errResponse(newError(http.StatusNotFound, msgCampaignMissing))
	}
	var st *stats
	if withAnalytics {
		st = s.w.stats()
	}
	return ok(s.w.renderCampaign(c, st))
}
