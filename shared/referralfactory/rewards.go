package referralfactory

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Campaigns lists campaigns (or searches them when opts.Filter is set).
func (c *Client) Campaigns(opts ListOptions) *Pager[Campaign] {
	return newPager[Campaign](c, "/campaigns", opts)
}

// GetCampaign reads a campaign by id or code.
func (c *Client) GetCampaign(ctx context.Context, identifier string) (Campaign, error) {
	if strings.TrimSpace(identifier) == "" {
		return Campaign{}, fmt.Errorf("get campaign: %w: empty identifier", ErrInvalidInput)
	}
	var env struct {
		Data Campaign `json:"data"`
	}
	if err := c.do(ctx, call{method: "GET", target: "/campaigns/" + url.PathEscape(identifier), idempotent: true}, &env); err != nil {
		return Campaign{}, fmt.Errorf("get campaign %s: %w", identifier, err)
	}
	return env.Data, nil
}

func rewardsPager[T any](c *Client, kind string, m Metric, opts ListOptions) *Pager[T] {
	p := newPager[T](c, "/rewards/"+kind+"/"+string(m), opts)
	if !m.Valid() {
		p.err = fmt.Errorf("list %s rewards: %w: unknown metric %q", kind, ErrInvalidInput, m)
	}
	return p
}

// RewardDefinitions lists the rewards configured for a metric (GET /rewards/dashboard/{metric}).
func (c *Client) RewardDefinitions(m Metric, opts ListOptions) *Pager[RewardDefinition] {
	return rewardsPager[RewardDefinition](c, "dashboard", m, opts)
}

// DueRewards lists rewards earned but not yet issued (GET /rewards/due/{metric}).
func (c *Client) DueRewards(m Metric, opts ListOptions) *Pager[DueReward] {
	return rewardsPager[DueReward](c, "due", m, opts)
}

// IssuedRewards lists rewards that left the due list (GET /rewards/issued/{metric}).
func (c *Client) IssuedRewards(m Metric, opts ListOptions) *Pager[IssuedReward] {
	return rewardsPager[IssuedReward](c, "issued", m, opts)
}

// IssueReward issues one due reward (POST /rewards/issue/{id}, id of the due reward). It is
// never retried once sent: on ErrOutcomeUnknown, read IssuedRewards before deciding anything.
func (c *Client) IssueReward(ctx context.Context, dueID int64) (IssuedReward, error) {
	return c.settleReward(ctx, "issue", dueID)
}

// CancelReward cancels one due reward (POST /rewards/cancel/{id}). Same rules as IssueReward.
func (c *Client) CancelReward(ctx context.Context, dueID int64) (IssuedReward, error) {
	return c.settleReward(ctx, "cancel", dueID)
}

func (c *Client) settleReward(ctx context.Context, verb string, dueID int64) (IssuedReward, error) {
	if dueID <= 0 {
		return IssuedReward{}, fmt.Errorf("%s reward: %w: id %d", verb, ErrInvalidInput, dueID)
	}
	var env struct {
		Data IssuedReward `json:"data"`
	}
	target := "/rewards/" + verb + "/" + strconv.FormatInt(dueID, 10)
	if err := c.do(ctx, call{method: "POST", target: target}, &env); err != nil {
		return IssuedReward{}, fmt.Errorf("%s reward %d: %w", verb, dueID, err)
	}
	return env.Data, nil
}
