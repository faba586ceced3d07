package rfsim

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"slices"
)

// The Go methods below give in-process tests the same reach as the control API.

// Token is the current API token.
func (s *Server) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.token
}

// WebhookToken is the current inbound-webhook token.
func (s *Server) WebhookToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.webhookToken
}

// RotateToken makes a new API token and returns it; the old one gets 401 from now on, as RF's
// single per-account token does (§1.2).
func (s *Server) RotateToken() string {
	tok := "sim_" + rand.Text()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w.token = tok
	return tok
}

// User returns a user as GET /users/{id} renders it.
func (s *Server) User(id int) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.w.users[id]
	if u == nil {
		return User{}, false
	}
	return s.w.renderUser(u, nil), true
}

// Users returns every user, by id.
func (s *Server) Users() []User {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []User{}
	for _, u := range sortedValues(s.w.users) {
		out = append(out, s.w.renderUser(u, nil))
	}
	return out
}

// Campaigns returns every campaign, by id.
func (s *Server) Campaigns() []Campaign {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Campaign{}
	for _, c := range sortedValues(s.w.campaigns) {
		out = append(out, s.w.renderCampaign(c, nil))
	}
	return out
}

// RewardDefinitions returns the reward definitions of one metric, by id.
func (s *Server) RewardDefinitions(metric string) []RewardDefinition {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []RewardDefinition{}
	for _, d := range sortedValues(s.w.defs) {
		if d.Metric == metric {
			out = append(out, d.render())
		}
	}
	return out
}

// DueRewards returns the due rewards of one metric, by id.
func (s *Server) DueRewards(metric string) []DueReward {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []DueReward{}
	for _, r := range s.w.rewardsOf(metric, true) {
		out = append(out, s.w.renderDue(r))
	}
	return out
}

// IssuedRewards returns the issued and cancelled rewards of one metric, by id.
func (s *Server) IssuedRewards(metric string) []IssuedReward {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []IssuedReward{}
	for _, r := range s.w.rewardsOf(metric, false) {
		out = append(out, s.w.renderIssued(r))
	}
	return out
}

// CreateUser does what POST /users does, webhooks and join rewards included. A validation
// failure is a 422 *Error.
func (s *Server) CreateUser(in NewUser) (User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.createUserLocked(in, &validation{})
	if err != nil {
		return User{}, err
	}
	return s.w.renderUser(u, nil), nil
}

// Qualify does what PUT /users/qualification does. An unknown user is a 404 *Error, a referrer a
// 422 *Error.
func (s *Server) Qualify(ref UserRef, qualified bool) (User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.qualifyLocked(ref, qualified)
	if err != nil {
		return User{}, err
	}
	return s.w.renderUser(u, nil), nil
}

// IssueReward does what POST /rewards/issue/{id} does.
func (s *Server) IssueReward(dueID int) (IssuedReward, error) { return s.settleGo(dueID, true) }

// CancelReward does what POST /rewards/cancel/{id} does.
func (s *Server) CancelReward(dueID int) (IssuedReward, error) { return s.settleGo(dueID, false) }

func (s *Server) settleGo(id int, issue bool) (IssuedReward, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out, err := s.settleLocked(id, issue)
	if err != nil {
		return IssuedReward{}, err
	}
	return out, nil
}

// SetCanBeIssued changes a due reward's can_be_issued, e.g. to model RF holding a reward back.
func (s *Server) SetCanBeIssued(dueID int, can bool) (DueReward, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.w.rewards[dueID]
	if r == nil || !r.due() {
		return DueReward{}, newError(http.StatusNotFound, "Due reward not found.")
	}
	r.CanBeIssued = can
	return s.w.renderDue(r), nil
}

// SetIssuedStatus changes an issued reward's status, e.g. to Sent or Failed as RF's delivery of
// the reward progresses.
func (s *Server) SetIssuedStatus(id int, status string) (IssuedReward, error) {
	if !slices.Contains(issuedStatuses, status) {
		return IssuedReward{}, invalid("status", fmt.Sprintf("The selected status is invalid (one of %v).", issuedStatuses))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.w.rewards[id]
	if r == nil || r.due() {
		return IssuedReward{}, newError(http.StatusNotFound, "Issued reward not found.")
	}
	r.Status = status
	return s.w.renderIssued(r), nil
}
