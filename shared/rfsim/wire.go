package rfsim

// The wire objects below are the simulator's own rendering of RF's JSON (API file §2.5–2.7).
// Field order follows the vendor's structure pages so a dump reads like the docs.

// Campaign is the campaign object of GET /campaigns (§2.6).
type Campaign struct {
	ID        int                `json:"id"`
	Name      string             `json:"name"`
	Code      string             `json:"code"`
	Lang      string             `json:"lang"`
	URL       string             `json:"url"`
	Reach     string             `json:"reach"`
	Status    string             `json:"status"`
	StartsAt  *string            `json:"starts_at"`
	EndsAt    *string            `json:"ends_at"`
	CreatedAt string             `json:"created_at"`
	Fields    CampaignFields     `json:"fields"`
	Assets    CampaignAssets     `json:"assets"`
	Analytics *CampaignAnalytics `json:"analytics,omitempty"`
}

// CampaignFields lists the sign-up form fields of each side of a campaign.
type CampaignFields struct {
	PersonReferring []CampaignField `json:"person_referring"`
	PersonInvited   []CampaignField `json:"person_invited"`
}

// CampaignField is one form field; users' meta entries name it by Label.
type CampaignField struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Label    string `json:"label"`
	Value    any    `json:"value"`
	Required bool   `json:"required"`
}

// CampaignAssets holds the campaign's branding.
type CampaignAssets struct {
	Logo Logo `json:"logo"`
}

// Logo is the campaign logo; Path is null until one is uploaded.
type Logo struct {
	Type string  `json:"type"`
	Path *string `json:"path"`
}

// CampaignAnalytics is added to campaigns by with=campaign.analytics.
type CampaignAnalytics struct {
	Reach              int `json:"reach"`
	Users              int `json:"users"`
	Referrals          int `json:"referrals"`
	QualifiedReferrals int `json:"qualified_referrals"`
}

// User is the user object (§2.5). A lead (person_invited) has ReferrerID set.
type User struct {
	ID             int            `json:"id"`
	CampaignID     int            `json:"campaign_id"`
	ReferrerID     *int           `json:"referrer_id"`
	Code           string         `json:"code"`
	URL            string         `json:"url"`
	FirstName      string         `json:"first_name"`
	Email          string         `json:"email"`
	Reach          string         `json:"reach"`
	Source         string         `json:"source"`
	Type           string         `json:"type"`
	IP             string         `json:"ip"`
	SignedUpAt     string         `json:"signed_up_at"`
	QualifiedAt    *string        `json:"qualified_at"`
	UnsubscribedAt *string        `json:"unsubscribed_at"`
	Meta           []Meta         `json:"meta"`
	Sharing        Sharing        `json:"sharing"`
	QR             QR             `json:"qr"`
	Analytics      *UserAnalytics `json:"analytics,omitempty"`
}

// Meta is one custom campaign field value; Field is the field's label.
type Meta struct {
	Field string `json:"field"`
	Value any    `json:"value"`
}

// Sharing is what RF pre-fills on the user's share buttons.
type Sharing struct {
	Socials []Social `json:"socials"`
	Subject string   `json:"subject"`
	Text    string   `json:"text"`
}

// Social is one share button.
type Social struct {
	Social string `json:"social"`
	URL    string `json:"url"`
}

// QR links to the user's referral-link QR code.
type QR struct {
	Src      string `json:"src"`
	Download string `json:"download"`
}

// UserAnalytics is added to users by with=user.analytics.
type UserAnalytics struct {
	Reach              int `json:"reach"`
	Referrals          int `json:"referrals"`
	QualifiedReferrals int `json:"qualified_referrals"`
}

// LabelValue is RF's {label, value} pair used by reward definitions.
type LabelValue struct {
	Label string `json:"label"`
	Value string `json:"value"`
}

// RewardDefinition is a reward as configured on the dashboard (/rewards/dashboard/{metric}).
// Currency and Amount appear for the amount metric; Currency and CommissionTerms for commission.
type RewardDefinition struct {
	ID         int        `json:"id"`
	Metric     string     `json:"metric"`
	CampaignID int        `json:"campaign_id"`
	Name       string     `json:"name"`
	Status     string     `json:"status"`
	AutoIssue  bool       `json:"auto_issue"`
	CreatedAt  string     `json:"created_at"`
	Type       LabelValue `json:"type"`
	Recipient  LabelValue `json:"recipient"`
	Method     LabelValue `json:"method"`
	Currency   string     `json:"currency,omitempty"`
	Amount     *float64   `json:"amount,omitempty"`
	// CommissionTerms is embedded as a pointer so that commission_cap is rendered (possibly as
	// null) for commission rewards and absent for every other metric.
	*CommissionTerms
}

// CommissionTerms are the commission-only fields of a reward definition.
type CommissionTerms struct {
	Commission    string   `json:"commission"`
	CommissionCap *float64 `json:"commission_cap"`
}

// DueReward is an earned reward not yet issued (/rewards/due/{metric}). Coupon is set for the
// coupon metric; Count and Total for the others.
type DueReward struct {
	ID          int      `json:"id"`
	RewardID    int      `json:"reward_id"`
	RecipientID int      `json:"recipient_id"`
	CanBeIssued bool     `json:"can_be_issued"`
	Coupon      *string  `json:"coupon,omitempty"`
	Count       *int     `json:"count,omitempty"`
	Total       *float64 `json:"total,omitempty"`
}

// IssuedReward is an issued or cancelled reward (/rewards/issued/{metric}). Its ID is the ID of
// the due reward it came from.
type IssuedReward struct {
	ID          int      `json:"id"`
	RewardID    int      `json:"reward_id"`
	RecipientID int      `json:"recipient_id"`
	Status      string   `json:"status"`
	Coupon      *string  `json:"coupon,omitempty"`
	Count       *int     `json:"count,omitempty"`
	Total       *float64 `json:"total,omitempty"`
	IssuedAt    string   `json:"issued_at"`
}

// Values of the enumerations the simulator validates.
const (
	TypeReferring = "person_referring"
	TypeInvited   = "person_invited"

	SourceAPI      = "Api"
	SourceReferred = "Referred"
	SourceDirect   = "Direct"

	MetricAmount     = "amount"
	MetricCommission = "commission"
	MetricCoupon     = "coupon"
	MetricCustom     = "custom"

	StatusIssued   = "Issued"
	StatusCanceled = "Canceled"
	StatusSending  = "Sending"
	StatusSent     = "Sent"
	StatusFailed   = "Failed"

	TriggerQualification = "qualification"
	TriggerJoin          = "join"

	EventReferrerJoined = "referrer_joined"
	EventLeadCreated    = "lead_created"
	EventLeadQualified  = "lead_qualified"
	EventRewardIssued   = "reward_issued"
)

var (
	metrics        = []string{MetricAmount, MetricCommission, MetricCoupon, MetricCustom}
	issuedStatuses = []string{StatusIssued, StatusCanceled, StatusSending, StatusSent, StatusFailed}
	events         = []string{EventReferrerJoined, EventLeadCreated, EventLeadQualified, EventRewardIssued}

	// Labels RF shows next to each value (§2.7). Unknown values fall back to the value itself.
	typeLabels      = map[string]string{"standard": "Standard", "recurring": "Recurring", "milestone": "Milestone"}
	recipientLabels = map[string]string{TypeReferring: "Person Referring", TypeInvited: "Person Invited"}
	methodLabels    = map[string]string{"manual": "Issue Yourself", "webhook": "Send Via Webhook", "automatic": "Automatic"}
)
