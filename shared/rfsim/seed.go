package rfsim

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// SeedData is the simulator's whole domain state, as loaded by Seed, the -seed file and
// POST /_sim/seed, and as dumped by State and GET /_sim/state (a dump seeds an identical state).
// Ids are optional and assigned after the highest given one. Seeding never fires webhooks and
// never creates rewards implicitly: due and issued rewards are listed explicitly.
type SeedData struct {
	Token         string         `json:"token,omitempty"`
	WebhookToken  string         `json:"webhook_token,omitempty"`
	RatePerMinute int            `json:"rate_per_minute,omitempty"` // 0: the configured rate (WithRatePerMinute)
	Now           string         `json:"now,omitempty"`             // RFC 3339; moves the simulated clock
	Campaigns     []SeedCampaign `json:"campaigns,omitempty"`
	Users         []SeedUser     `json:"users,omitempty"`
	DueRewards    []SeedDue      `json:"due_rewards,omitempty"`
	IssuedRewards []SeedIssued   `json:"issued_rewards,omitempty"`
	Webhooks      []Webhook      `json:"webhooks,omitempty"`
}

// SeedCampaign is a campaign (every field optional except, in practice, name and code) and its
// reward definitions.
type SeedCampaign struct {
	Campaign
	Rewards []SeedReward `json:"rewards,omitempty"`
}

// SeedReward is a reward definition. Type, Recipient and Method are the plain values
// ("standard", "person_referring", "manual"); labels are added when rendered.
type SeedReward struct {
	ID            int      `json:"id,omitempty"`
	Metric        string   `json:"metric"`
	Name          string   `json:"name,omitempty"`
	Status        string   `json:"status,omitempty"` // active (default) or inactive
	AutoIssue     bool     `json:"auto_issue,omitempty"`
	CreatedAt     string   `json:"created_at,omitempty"`
	Type          string   `json:"type,omitempty"`
	Recipient     string   `json:"recipient,omitempty"`
	Method        string   `json:"method,omitempty"`
	Currency      string   `json:"currency,omitempty"`
	Amount        float64  `json:"amount,omitempty"`
	Commission    string   `json:"commission,omitempty"`
	CommissionCap *float64 `json:"commission_cap,omitempty"`
	// Trigger is simulator-only: "qualification" (default) earns the reward when a lead is
	// qualified, "join" when a lead is created. Never rendered by the API.
	Trigger string `json:"trigger,omitempty"`
	// Coupons is the coupon metric's pool; each due reward takes the next unused code.
	Coupons []string `json:"coupons,omitempty"`
}

// SeedUser is a user. Giving ReferrerCode or ReferrerID makes a lead (person_invited);
// ReferrerCode must name a seeded user of the same campaign, while ReferrerID may name a user
// that no longer exists, to model a deleted referrer.
type SeedUser struct {
	ID             int     `json:"id,omitempty"`
	CampaignID     int     `json:"campaign_id"`
	ReferrerID     *int    `json:"referrer_id,omitempty"`
	ReferrerCode   string  `json:"referrer_code,omitempty"`
	Code           string  `json:"code,omitempty"`
	FirstName      string  `json:"first_name"`
	Email          string  `json:"email"`
	Type           string  `json:"type,omitempty"`
	Source         string  `json:"source,omitempty"`
	IP             string  `json:"ip,omitempty"`
	SignedUpAt     string  `json:"signed_up_at,omitempty"`
	QualifiedAt    *string `json:"qualified_at,omitempty"`
	UnsubscribedAt *string `json:"unsubscribed_at,omitempty"`
	Meta           []Meta  `json:"meta,omitempty"`
}

// SeedDue is a due reward. LeadID is the lead that earned it, which keeps a later
// qualification of that lead from earning the same definition twice.
type SeedDue struct {
	ID          int      `json:"id,omitempty"`
	RewardID    int      `json:"reward_id"`
	Metric      string   `json:"metric,omitempty"`
	RecipientID int      `json:"recipient_id"`
	LeadID      int      `json:"lead_id,omitempty"`
	CanBeIssued *bool    `json:"can_be_issued,omitempty"`
	Coupon      string   `json:"coupon,omitempty"`
	Count       int      `json:"count,omitempty"`
	Total       *float64 `json:"total,omitempty"`
}

// SeedIssued is an issued or cancelled reward.
type SeedIssued struct {
	SeedDue
	Status   string `json:"status,omitempty"` // Issued (default), Canceled, Sending, Sent, Failed
	IssuedAt string `json:"issued_at,omitempty"`
}

// ParseSeed decodes seed JSON strictly: an unknown key is an error, so a typo in a seed file
// does not silently drop data.
func ParseSeed(b []byte) (SeedData, error) {
	var d SeedData
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return SeedData{}, fmt.Errorf("rfsim: parse seed: %w", err)
	}
	return d, nil
}

// LoadSeedFile reads and parses a seed file.
func LoadSeedFile(path string) (SeedData, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return SeedData{}, fmt.Errorf("rfsim: read seed: %w", err)
	}
	d, err := ParseSeed(b)
	if err != nil {
		return SeedData{}, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// Seed replaces the domain state (campaigns, rewards, users, webhooks, tokens and rate) with d.
// Since the webhooks and the users they describe are replaced, webhook deliveries in flight
// are stopped as Reset stops them (aborted, not retried, not recorded). Faults, the call log,
// counters, the delivery log, rate-limit windows and IP blocks are kept; the clock moves only if
// d.Now is set. On error nothing changes, and deliveries in flight continue.
func (s *Server) Seed(d SeedData) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.nowLocked()
	if d.Now != "" {
		t, err := time.Parse(time.RFC3339Nano, d.Now)
		if err != nil {
			return fmt.Errorf("rfsim: seed: now: %w", err)
		}
		now = t
	}
	w, err := s.buildWorldLocked(d, now.UTC().Format(dateLayout))
	if err != nil {
		return fmt.Errorf("rfsim: seed: %w", err)
	}
	s.w = w
	if d.Now != "" {
		s.offset = now.Sub(s.cfg.clock())
	}
	s.newGenLocked()
	return nil
}

// assignIDs keeps the given ids (which must be unique) and numbers the rest after the highest.
func assignIDs(given []int, what string) ([]int, int, error) {
	seen := map[int]bool{}
	top := 0
	for i, id := range given {
		switch {
		case id < 0:
			return nil, 0, fmt.Errorf("%s[%d]: negative id %d", what, i, id)
		case id == 0:
			continue
		case seen[id]:
			return nil, 0, fmt.Errorf("%s[%d]: duplicate id %d", what, i, id)
		}
		seen[id] = true
		top = max(top, id)
	}
	out := slices.Clone(given)
	next := top + 1
	for i := range out {
		if out[i] == 0 {
			out[i] = next
			next++
		}
	}
	return out, next, nil
}

func (s *Server) buildWorldLocked(d SeedData, today string) (*world, error) {
	w := newWorld(&s.cfg)
	if d.Token != "" {
		w.token = d.Token
	}
	if d.WebhookToken != "" {
		w.webhookToken = d.WebhookToken
	}
	if d.RatePerMinute < 0 {
		return nil, errors.New("rate_per_minute must not be negative")
	}
	if d.RatePerMinute > 0 {
		w.rate = d.RatePerMinute
	}
	if err := s.seedCampaignsLocked(w, d.Campaigns, today); err != nil {
		return nil, err
	}
	if err := s.seedUsersLocked(w, d.Users, today); err != nil {
		return nil, err
	}
	if err := seedRewards(w, d.DueRewards, d.IssuedRewards, today); err != nil {
		return nil, err
	}
	for i := range d.Webhooks {
		h := d.Webhooks[i]
		if err := h.normalize(); err != nil {
			return nil, fmt.Errorf("webhooks[%d]: %w", i, err)
		}
		w.webhooks = append(w.webhooks, h)
	}
	return w, nil
}

func checkDate(what, v string) error {
	if v != "" && !validDate(v) {
		return fmt.Errorf("%s: %q is not a YYYY-MM-DD date", what, v)
	}
	return nil
}

func (s *Server) seedCampaignsLocked(w *world, in []SeedCampaign, today string) error {
	given := make([]int, len(in))
	var rewardIDs []int
	for i, c := range in {
		given[i] = c.ID
		for _, r := range c.Rewards {
			rewardIDs = append(rewardIDs, r.ID)
		}
	}
	ids, next, err := assignIDs(given, "campaigns")
	if err != nil {
		return err
	}
	w.nextCampaign = next
	defIDs, nextDef, err := assignIDs(rewardIDs, "campaigns[].rewards")
	if err != nil {
		return err
	}
	w.nextDef = nextDef
	codes := map[string]bool{}
	k := 0
	for i, sc := range in {
		what := fmt.Sprintf("campaigns[%d]", i)
		c := sc.Campaign
		c.ID = ids[i]
		if c.Code == "" {
			c.Code = s.randomCodeLocked()
		}
		if codes[strings.ToLower(c.Code)] {
			return fmt.Errorf("%s: duplicate code %q", what, c.Code)
		}
		codes[strings.ToLower(c.Code)] = true
		c.Name = cmp.Or(c.Name, fmt.Sprintf("Campaign %d", c.ID))
		c.Lang = cmp.Or(c.Lang, "en")
		c.Reach = cmp.Or(c.Reach, "0")
		c.Status = cmp.Or(c.Status, "launched")
		if !slices.Contains([]string{"launched", "draft", "paused"}, c.Status) {
			return fmt.Errorf("%s: status %q is not launched, draft or paused", what, c.Status)
		}
		c.URL = cmp.Or(c.URL, "https://"+strings.ToLower(c.Code)+".referral-factory.com")
		c.CreatedAt = cmp.Or(c.CreatedAt, today)
		for _, dt := range []struct {
			name string
			v    *string
		}{{"created_at", &c.CreatedAt}, {"starts_at", c.StartsAt}, {"ends_at", c.EndsAt}} {
			if dt.v != nil {
				if err := checkDate(what+"."+dt.name, *dt.v); err != nil {
					return err
				}
			}
		}
		if c.Fields.PersonReferring == nil {
			c.Fields.PersonReferring = []CampaignField{}
		}
		if c.Fields.PersonInvited == nil {
			c.Fields.PersonInvited = []CampaignField{}
		}
		c.Assets.Logo.Type = cmp.Or(c.Assets.Logo.Type, "circle")
		c.Analytics = nil
		w.campaigns[c.ID] = &c

		for j, r := range sc.Rewards {
			def, err := seedDefinition(r, defIDs[k], c.ID, today)
			k++
			if err != nil {
				return fmt.Errorf("%s.rewards[%d]: %w", what, j, err)
			}
			w.defs[def.ID] = def
		}
	}
	return nil
}

func seedDefinition(r SeedReward, id, campaignID int, today string) (*rewardDef, error) {
	r.ID = id
	if !slices.Contains(metrics, r.Metric) {
		return nil, fmt.Errorf("metric %q is not amount, commission, coupon or custom", r.Metric)
	}
	r.Name = cmp.Or(r.Name, fmt.Sprintf("Reward %d", id))
	r.Status = cmp.Or(r.Status, "active")
	if r.Status != "active" && r.Status != "inactive" {
		return nil, fmt.Errorf("status %q is not active or inactive", r.Status)
	}
	r.Type = cmp.Or(r.Type, "standard")
	r.Recipient = cmp.Or(r.Recipient, TypeReferring)
	if r.Recipient != TypeReferring && r.Recipient != TypeInvited {
		return nil, fmt.Errorf("recipient %q is not person_referring or person_invited", r.Recipient)
	}
	r.Method = cmp.Or(r.Method, "manual")
	r.Trigger = cmp.Or(r.Trigger, TriggerQualification)
	if r.Trigger != TriggerQualification && r.Trigger != TriggerJoin {
		return nil, fmt.Errorf("trigger %q is not qualification or join", r.Trigger)
	}
	r.CreatedAt = cmp.Or(r.CreatedAt, today)
	if err := checkDate("created_at", r.CreatedAt); err != nil {
		return nil, err
	}
	if r.Metric == MetricAmount || r.Metric == MetricCommission {
		r.Currency = cmp.Or(r.Currency, "USD")
	}
	if r.Metric == MetricCommission {
		r.Commission = cmp.Or(r.Commission, "0")
	}
	if len(r.Coupons) > 0 && r.Metric != MetricCoupon {
		return nil, errors.New("coupons are only for the coupon metric")
	}
	seen := map[string]bool{}
	for _, c := range r.Coupons {
		if c == "" || seen[c] {
			return nil, fmt.Errorf("coupon pool: empty or duplicate code %q", c)
		}
		seen[c] = true
	}
	r.Coupons = slices.Clone(r.Coupons)
	return &rewardDef{SeedReward: r, CampaignID: campaignID, used: map[string]bool{}}, nil
}

func (s *Server) seedUsersLocked(w *world, in []SeedUser, today string) error {
	given := make([]int, len(in))
	for i, u := range in {
		given[i] = u.ID
	}
	ids, next, err := assignIDs(given, "users")
	if err != nil {
		return err
	}
	w.nextUser = next
	// Given codes first, so a generated code can never take one that a later user names.
	for i, su := range in {
		if su.Code == "" {
			continue
		}
		if w.userCodes[strings.ToLower(su.Code)] {
			return fmt.Errorf("users[%d]: duplicate code %q", i, su.Code)
		}
		w.userCodes[strings.ToLower(su.Code)] = true
	}
	for i, su := range in {
		what := fmt.Sprintf("users[%d]", i)
		if w.campaigns[su.CampaignID] == nil {
			return fmt.Errorf("%s: campaign_id %d is not a seeded campaign", what, su.CampaignID)
		}
		email := strings.TrimSpace(su.Email)
		switch {
		case strings.TrimSpace(su.FirstName) == "":
			return fmt.Errorf("%s: first_name is required", what)
		case !validEmail(email):
			return fmt.Errorf("%s: email %q is not a valid address", what, su.Email)
		case w.userByEmail(su.CampaignID, email) != nil:
			return fmt.Errorf("%s: email %q is already taken in campaign %d", what, email, su.CampaignID)
		}
		u := &user{
			ID: ids[i], CampaignID: su.CampaignID, Code: su.Code, FirstName: strings.TrimSpace(su.FirstName),
			Email: email, Source: su.Source, IP: su.IP, SignedUpAt: cmp.Or(su.SignedUpAt, today),
			QualifiedAt: clonePtr(su.QualifiedAt), UnsubscribedAt: clonePtr(su.UnsubscribedAt),
			Meta: append([]Meta{}, su.Meta...),
		}
		if u.Code == "" {
			u.Code = s.newUserCodeLocked(w)
		}
		for name, v := range map[string]*string{"signed_up_at": &u.SignedUpAt, "qualified_at": u.QualifiedAt, "unsubscribed_at": u.UnsubscribedAt} {
			if v != nil {
				if err := checkDate(what+"."+name, *v); err != nil {
					return err
				}
			}
		}
		w.users[u.ID] = u
	}
	// Referrers are resolved once every user exists, so the list need not be in referral order.
	for i, su := range in {
		what := fmt.Sprintf("users[%d]", i)
		u := w.users[ids[i]]
		if su.ReferrerCode != "" {
			ref := w.userByCode(su.ReferrerCode)
			if ref == nil || ref.CampaignID != u.CampaignID {
				return fmt.Errorf("%s: referrer_code %q is not a user of campaign %d", what, su.ReferrerCode, u.CampaignID)
			}
			if su.ReferrerID != nil && *su.ReferrerID != ref.ID {
				return fmt.Errorf("%s: referrer_code and referrer_id name different users", what)
			}
			u.ReferrerID = ptr(ref.ID)
		} else if su.ReferrerID != nil {
			if ref := w.users[*su.ReferrerID]; ref != nil && ref.CampaignID != u.CampaignID {
				return fmt.Errorf("%s: referrer_id %d is in another campaign", what, *su.ReferrerID)
			}
			u.ReferrerID = ptr(*su.ReferrerID)
		}
		u.Type = TypeReferring
		u.Source = cmp.Or(u.Source, SourceDirect)
		if u.ReferrerID != nil {
			u.Type = TypeInvited
			u.Source = cmp.Or(su.Source, SourceReferred)
		}
		if su.Type != "" && su.Type != u.Type {
			return fmt.Errorf("%s: type %q contradicts the referrer given (%s)", what, su.Type, u.Type)
		}
		if u.QualifiedAt != nil && u.Type != TypeInvited {
			return fmt.Errorf("%s: only leads (users with a referrer) can have qualified_at", what)
		}
	}
	return nil
}

func seedRewards(w *world, due []SeedDue, issued []SeedIssued, today string) error {
	all := make([]SeedIssued, 0, len(due)+len(issued))
	for _, d := range due {
		all = append(all, SeedIssued{SeedDue: d})
	}
	all = append(all, issued...)
	given := make([]int, len(all))
	for i, r := range all {
		given[i] = r.ID
	}
	ids, next, err := assignIDs(given, "due_rewards+issued_rewards")
	if err != nil {
		return err
	}
	w.nextReward = next
	for i, sr := range all {
		what := fmt.Sprintf("due_rewards[%d]", i)
		if i >= len(due) {
			what = fmt.Sprintf("issued_rewards[%d]", i-len(due))
			sr.Status = cmp.Or(sr.Status, StatusIssued)
			if !slices.Contains(issuedStatuses, sr.Status) {
				return fmt.Errorf("%s: status %q is not one of %v", what, sr.Status, issuedStatuses)
			}
			sr.IssuedAt = cmp.Or(sr.IssuedAt, today)
			if err := checkDate(what+".issued_at", sr.IssuedAt); err != nil {
				return err
			}
		} else if sr.Status != "" || sr.IssuedAt != "" {
			return fmt.Errorf("%s: a due reward has no status or issued_at", what)
		}
		def := w.defs[sr.RewardID]
		switch {
		case def == nil:
			return fmt.Errorf("%s: reward_id %d is not a seeded reward definition", what, sr.RewardID)
		case sr.Metric != "" && sr.Metric != def.Metric:
			return fmt.Errorf("%s: metric %q but reward %d is %s", what, sr.Metric, def.ID, def.Metric)
		case sr.RecipientID <= 0:
			return fmt.Errorf("%s: recipient_id is required", what)
		case sr.Coupon != "" && def.Metric != MetricCoupon:
			return fmt.Errorf("%s: only coupon rewards have a coupon", what)
		}
		r := &reward{ID: ids[i], RewardID: def.ID, RecipientID: sr.RecipientID, LeadID: sr.LeadID,
			Coupon: sr.Coupon, Status: sr.Status, IssuedAt: sr.IssuedAt}
		if r.LeadID == 0 && def.Recipient == TypeInvited {
			r.LeadID = r.RecipientID
		}
		if def.Metric == MetricCoupon {
			def.used[r.Coupon] = r.Coupon != ""
			r.CanBeIssued = r.Coupon != ""
		} else {
			r.Count = max(sr.Count, 1)
			r.CanBeIssued = true
			if def.Metric == MetricAmount {
				r.Total = def.Amount
			}
			if sr.Total != nil {
				r.Total = *sr.Total
			}
		}
		if sr.CanBeIssued != nil {
			r.CanBeIssued = *sr.CanBeIssued
		}
		w.rewards[r.ID] = r
	}
	return nil
}

// State dumps the domain state in the seed format.
func (s *Server) State() SeedData {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.w
	d := SeedData{Token: w.token, WebhookToken: w.webhookToken, RatePerMinute: w.rate,
		Now: s.nowLocked().Format(time.RFC3339Nano), Campaigns: []SeedCampaign{}, Users: []SeedUser{},
		DueRewards: []SeedDue{}, IssuedRewards: []SeedIssued{}, Webhooks: append([]Webhook{}, w.webhooks...)}
	for _, c := range sortedValues(w.campaigns) {
		sc := SeedCampaign{Campaign: w.renderCampaign(c, nil)}
		for _, def := range sortedValues(w.defs) {
			if def.CampaignID == c.ID {
				r := def.SeedReward
				r.Coupons = slices.Clone(r.Coupons)
				sc.Rewards = append(sc.Rewards, r)
			}
		}
		d.Campaigns = append(d.Campaigns, sc)
	}
	for _, u := range sortedValues(w.users) {
		d.Users = append(d.Users, SeedUser{
			ID: u.ID, CampaignID: u.CampaignID, ReferrerID: clonePtr(u.ReferrerID), Code: u.Code,
			FirstName: u.FirstName, Email: u.Email, Type: u.Type, Source: u.Source, IP: u.IP,
			SignedUpAt: u.SignedUpAt, QualifiedAt: clonePtr(u.QualifiedAt),
			UnsubscribedAt: clonePtr(u.UnsubscribedAt), Meta: append([]Meta{}, u.Meta...),
		})
	}
	for _, r := range sortedValues(w.rewards) {
		sd := SeedDue{ID: r.ID, RewardID: r.RewardID, Metric: w.metricOf(r), RecipientID: r.RecipientID,
			LeadID: r.LeadID, CanBeIssued: ptr(r.CanBeIssued), Coupon: r.Coupon, Count: r.Count, Total: ptr(r.Total)}
		if sd.Metric == MetricCoupon {
			sd.Total = nil
		}
		if r.due() {
			d.DueRewards = append(d.DueRewards, sd)
		} else {
			d.IssuedRewards = append(d.IssuedRewards, SeedIssued{SeedDue: sd, Status: r.Status, IssuedAt: r.IssuedAt})
		}
	}
	return d
}
