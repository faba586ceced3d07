package rfsim

import (
	"maps"
	"net/url"
	"slices"
	"strings"
)

// world is the domain state that Seed replaces as a whole.
type world struct {
	token        string
	webhookToken string
	rate         int

	campaigns map[int]*Campaign
	defs      map[int]*rewardDef
	users     map[int]*user
	rewards   map[int]*reward // due and issued share one id space: issuing keeps the id
	webhooks  []Webhook

	// userCodes holds every user code ever handed out, lower-cased, so a generated code never
	// collides with another even under a case-insensitive collation, and a deleted user's code
	// is not reused.
	userCodes map[string]bool

	nextCampaign, nextDef, nextUser, nextReward int
}

func newWorld(c *config) *world {
	return &world{
		token:        c.token,
		webhookToken: c.webhookToken,
		rate:         c.rate,
		campaigns:    map[int]*Campaign{},
		defs:         map[int]*rewardDef{},
		users:        map[int]*user{},
		rewards:      map[int]*reward{},
		userCodes:    map[string]bool{},
		nextCampaign: 1, nextDef: 1, nextUser: 1, nextReward: 1,
	}
}

type user struct {
	ID             int
	CampaignID     int
	ReferrerID     *int
	Code           string
	FirstName      string
	Email          string
	Source         string
	Type           string
	IP             string
	SignedUpAt     string
	QualifiedAt    *string
	UnsubscribedAt *string
	Meta           []Meta
}

// rewardDef is a reward definition plus the simulator-only trigger and coupon pool.
type rewardDef struct {
	SeedReward
	CampaignID int
	used       map[string]bool // coupons of the pool already handed out
}

// reward is a due reward (Status "") or an issued/cancelled one.
type reward struct {
	ID          int
	RewardID    int
	RecipientID int
	LeadID      int // the lead whose join or qualification earned it; 0 if unknown (seeded)
	CanBeIssued bool
	Coupon      string
	Count       int
	Total       float64
	Status      string
	IssuedAt    string
}

func (r *reward) due() bool { return r.Status == "" }

func sortedValues[V any](m map[int]V) []V {
	keys := slices.Sorted(maps.Keys(m))
	out := make([]V, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

func normEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func (w *world) userByCode(code string) *user {
	// Codes match exactly: RF's codes are mixed-case and whether its collation folds case is
	// unknown, so a client that changes a code's case should fail here rather than in production.
	for _, u := range w.users {
		if u.Code == code {
			return u
		}
	}
	return nil
}

func (w *world) userByEmail(campaignID int, email string) *user {
	e := normEmail(email)
	for _, u := range w.users {
		if u.CampaignID == campaignID && normEmail(u.Email) == e {
			return u
		}
	}
	return nil
}

// campaignByIdentifier resolves a numeric id first, then a code.
func (w *world) campaignByIdentifier(ident string) *Campaign {
	if id, ok := atoi(ident); ok {
		if c := w.campaigns[id]; c != nil {
			return c
		}
	}
	for _, c := range w.campaigns {
		if c.Code == ident {
			return c
		}
	}
	return nil
}

func (w *world) metricOf(r *reward) string {
	if d := w.defs[r.RewardID]; d != nil {
		return d.Metric
	}
	return ""
}

// subdomain stands in for RF's campaign subdomain in links: the campaign code, lower-cased.
func (w *world) subdomain(campaignID int) string {
	if c := w.campaigns[campaignID]; c != nil {
		return strings.ToLower(c.Code)
	}
	return "campaign"
}

// stats are the counts behind the analytics objects, computed once per request.
type stats struct {
	referrals, qualified map[int]int // by referrer id
	users                map[int]int // by campaign id
	leads, qualifiedLead map[int]int // by campaign id
}

func (w *world) stats() *stats {
	st := &stats{map[int]int{}, map[int]int{}, map[int]int{}, map[int]int{}, map[int]int{}}
	for _, u := range w.users {
		st.users[u.CampaignID]++
		if u.Type != TypeInvited {
			continue
		}
		st.leads[u.CampaignID]++
		if u.QualifiedAt != nil {
			st.qualifiedLead[u.CampaignID]++
		}
		if u.ReferrerID != nil {
			st.referrals[*u.ReferrerID]++
			if u.QualifiedAt != nil {
				st.qualified[*u.ReferrerID]++
			}
		}
	}
	return st
}

func (w *world) renderUser(u *user, st *stats) User {
	link := "https://" + w.subdomain(u.CampaignID) + ".referral-factory.com/" + u.Code
	name := "our program"
	if c := w.campaigns[u.CampaignID]; c != nil {
		name = c.Name
	}
	subject := "Join me on " + name
	text := "I think you'd like " + name + ". Sign up with my link:"
	esc := url.QueryEscape
	out := User{
		ID:             u.ID,
		CampaignID:     u.CampaignID,
		ReferrerID:     clonePtr(u.ReferrerID),
		Code:           u.Code,
		URL:            link,
		FirstName:      u.FirstName,
		Email:          u.Email,
		Reach:          "0",
		Source:         u.Source,
		Type:           u.Type,
		IP:             u.IP,
		SignedUpAt:     u.SignedUpAt,
		QualifiedAt:    clonePtr(u.QualifiedAt),
		UnsubscribedAt: clonePtr(u.UnsubscribedAt),
		Meta:           append([]Meta{}, u.Meta...),
		Sharing: Sharing{
			Socials: []Social{
				{"facebook", "https://www.facebook.com/sharer/sharer.php?u=" + esc(link)},
				{"twitter", "https://twitter.com/intent/tweet?text=" + esc(text+" "+link)},
				{"linkedin", "https://www.linkedin.com/sharing/share-offsite/?url=" + esc(link)},
				{"whatsapp", "https://wa.me/?text=" + esc(text+" "+link)},
				{"email", "mailto:?subject=" + esc(subject) + "&body=" + esc(text+" "+link)},
			},
			Subject: subject,
			Text:    text,
		},
		QR: QR{
			Src:      "https://" + w.subdomain(u.CampaignID) + ".referral-factory.com/qr/" + u.Code + ".png",
			Download: "https://" + w.subdomain(u.CampaignID) + ".referral-factory.com/qr/" + u.Code + ".png?download=1",
		},
	}
	if st != nil {
		out.Analytics = &UserAnalytics{Referrals: st.referrals[u.ID], QualifiedReferrals: st.qualified[u.ID]}
	}
	return out
}

func (w *world) renderCampaign(c *Campaign, st *stats) Campaign {
	out := *c
	out.StartsAt, out.EndsAt = clonePtr(c.StartsAt), clonePtr(c.EndsAt)
	out.Fields.PersonReferring = append([]CampaignField{}, c.Fields.PersonReferring...)
	out.Fields.PersonInvited = append([]CampaignField{}, c.Fields.PersonInvited...)
	out.Assets.Logo.Path = clonePtr(c.Assets.Logo.Path)
	out.Analytics = nil
	if st != nil {
		out.Analytics = &CampaignAnalytics{
			Users:              st.users[c.ID],
			Referrals:          st.leads[c.ID],
			QualifiedReferrals: st.qualifiedLead[c.ID],
		}
	}
	return out
}

func labelled(labels map[string]string, v string) LabelValue {
	if l, ok := labels[v]; ok {
		return LabelValue{Label: l, Value: v}
	}
	return LabelValue{Label: v, Value: v}
}

func (d *rewardDef) render() RewardDefinition {
	out := RewardDefinition{
		ID:         d.ID,
		Metric:     d.Metric,
		CampaignID: d.CampaignID,
		Name:       d.Name,
		Status:     d.Status,
		AutoIssue:  d.AutoIssue,
		CreatedAt:  d.CreatedAt,
		Type:       labelled(typeLabels, d.Type),
		Recipient:  labelled(recipientLabels, d.Recipient),
		Method:     labelled(methodLabels, d.Method),
	}
	switch d.Metric {
	case MetricAmount:
		out.Currency, out.Amount = d.Currency, ptr(d.Amount)
	case MetricCommission:
		out.Currency = d.Currency
		out.CommissionTerms = &CommissionTerms{Commission: d.Commission, CommissionCap: clonePtr(d.CommissionCap)}
	}
	return out
}

// nextCoupon hands out the pool's next unused code, or "" when the pool is exhausted.
func (d *rewardDef) nextCoupon() string {
	for _, c := range d.Coupons {
		if !d.used[c] {
			d.used[c] = true
			return c
		}
	}
	return ""
}

// value fields: a coupon for the coupon metric, count and total for the others.
func (w *world) rewardValue(r *reward) (coupon *string, count *int, total *float64) {
	if w.metricOf(r) == MetricCoupon {
		return ptr(r.Coupon), nil, nil
	}
	return nil, ptr(r.Count), ptr(r.Total)
}

func (w *world) renderDue(r *reward) DueReward {
	coupon, count, total := w.rewardValue(r)
	return DueReward{ID: r.ID, RewardID: r.RewardID, RecipientID: r.RecipientID, CanBeIssued: r.CanBeIssued,
		Coupon: coupon, Count: count, Total: total}
}

func (w *world) renderIssued(r *reward) IssuedReward {
	coupon, count, total := w.rewardValue(r)
	return IssuedReward{ID: r.ID, RewardID: r.RewardID, RecipientID: r.RecipientID, Status: r.Status,
		Coupon: coupon, Count: count, Total: total, IssuedAt: r.IssuedAt}
}

// rewardsOf lists due (wantDue) or issued rewards of one metric, by id.
func (w *world) rewardsOf(metric string, wantDue bool) []*reward {
	var out []*reward
	for _, r := range sortedValues(w.rewards) {
		if r.due() == wantDue && w.metricOf(r) == metric {
			out = append(out, r)
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
