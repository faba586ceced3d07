package rfsim

import (
	"net/http"
	"slices"
)

// Reward lists come in three kinds, each per metric: the definitions (dashboard), the rewards
// due and the rewards issued (including cancelled ones).
const (
	kindDashboard = "dashboard"
	kindDue       = "due"
	kindIssued    = "issued"
)

func (s *Server) listRewards(kind string) handlerFunc {
	return func(rq *request) *response {
		metric := rq.PathValue("metric")
		if !slices.Contains(metrics, metric) {
			return errResponse(newError(http.StatusNotFound, msgNotFound))
		}
		s.mu.Lock()
		var items []any
		switch kind {
		case kindDashboard:
			for _, d := range sortedValues(s.w.defs) {
				if d.Metric == metric {
					items = append(items, d.render())
				}
			}
		case kindDue:
			for _, r := range s.w.rewardsOf(metric, true) {
				items = append(items, s.w.renderDue(r))
			}
		default:
			for _, r := range s.w.rewardsOf(metric, false) {
				items = append(items, s.w.renderIssued(r))
			}
		}
		s.mu.Unlock()
		return s.list(rq, items, rewardSearchFields(kind, metric))
	}
}

// rewardSearchFields are the fields a reward of that kind and metric renders, found by rendering
// a sample: the coupon metric has coupon, the others count and total.
func rewardSearchFields(kind, metric string) map[string]bool {
	def := &rewardDef{SeedReward: SeedReward{ID: 1, Metric: metric}}
	w := &world{defs: map[int]*rewardDef{1: def}}
	r := &reward{RewardID: 1}
	switch kind {
	case kindDashboard:
		return fieldsOf(def.render())
	case kindDue:
		return fieldsOf(w.renderDue(r))
	}
	return fieldsOf(w.renderIssued(r))
}

// earnLocked creates the due rewards a lead's join or qualification earns: one per active
// definition of the lead's campaign with that trigger. The recipient is the lead's referrer or
// the lead, per the definition. A definition pays once per lead: a new due reward is created
// only if the lead has no due or issued-and-not-cancelled reward for it, so qualifying again
// after an unqualification does not pay twice, while a cancelled reward can be earned again.
func (s *Server) earnLocked(lead *user, trigger string) {
	for _, d := range sortedValues(s.w.defs) {
		if d.CampaignID != lead.CampaignID || d.Status != "active" || d.Trigger != trigger {
			continue
		}
		recipient := lead.ID
		if d.Recipient == TypeReferring {
			// A lead whose referrer was deleted earns nothing for the referrer: there is nobody
			// to pay.
			if lead.ReferrerID == nil || s.w.users[*lead.ReferrerID] == nil {
				continue
			}
			recipient = *lead.ReferrerID
		}
		if s.w.earned(d.ID, lead.ID) {
			continue
		}
		r := &reward{ID: s.w.nextReward, RewardID: d.ID, RecipientID: recipient, LeadID: lead.ID,
			CanBeIssued: true, Count: 1}
		s.w.nextReward++
		switch d.Metric {
		case MetricAmount:
			r.Total = d.Amount
		case MetricCoupon:
			r.Count = 0
			r.Coupon = d.nextCoupon()
			r.CanBeIssued = r.Coupon != "" // an exhausted pool leaves nothing to hand out
		}
		// Commission and custom rewards start at total 0: RF sets the spend through an
		// undocumented endpoint that the simulator does not offer.
		s.w.rewards[r.ID] = r
		if d.AutoIssue && r.CanBeIssued {
			s.settleLocked(r.ID, true)
		}
	}
}

func (w *world) earned(defID, leadID int) bool {
	for _, r := range w.rewards {
		if r.RewardID == defID && r.LeadID == leadID && r.Status != StatusCanceled {
			return true
		}
	}
	return false
}

func (s *Server) issueReward(rq *request) *response  { return s.settle(rq, true) }
func (s *Server) cancelReward(rq *request) *response { return s.settle(rq, false) }

func (s *Server) settle(rq *request, issue bool) *response {
	id, _ := atoi(rq.PathValue("id"))
	s.mu.Lock()
	defer s.mu.Unlock()
	out, err := s.settleLocked(id, issue)
	if err != nil {
		return errResponse(err)
	}
	return ok(out)
}

// settleLocked issues or cancels a due reward. The issued record keeps the due reward's id, so a
// caller that lost the response can find the outcome in /rewards/issued by the id it sent.
func (s *Server) settleLocked(id int, issue bool) (IssuedReward, *Error) {
	r := s.w.rewards[id]
	switch {
	case r == nil:
		return IssuedReward{}, newError(http.StatusNotFound, msgRewardNotFound)
	case !r.due():
		return IssuedReward{}, newError(http.StatusUnprocessableEntity, msgNotDue)
	case issue && !r.CanBeIssued:
		return IssuedReward{}, newError(http.StatusUnprocessableEntity, msgCannotIssue)
	}
	r.Status, r.IssuedAt = StatusCanceled, s.todayLocked()
	if issue {
		r.Status = StatusIssued
		if recipient := s.w.users[r.RecipientID]; recipient != nil {
			s.fireLocked(EventRewardIssued, recipient, r)
		}
	}
	return s.w.renderIssued(r), nil
}
