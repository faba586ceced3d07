package referralfactory

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Metric is the reward type family that RF's reward endpoints take as a path parameter.
type Metric string

// The reward metrics RF documents.
const (
	MetricAmount     Metric = "amount"
	MetricCommission Metric = "commission"
	MetricCoupon     Metric = "coupon"
	MetricCustom     Metric = "custom"
)

// AllMetrics returns every metric, in a stable order.
func AllMetrics() []Metric {
	return []Metric{MetricAmount, MetricCommission, MetricCoupon, MetricCustom}
}

// Valid reports whether m is one of the documented metrics.
func (m Metric) Valid() bool {
	switch m {
	case MetricAmount, MetricCommission, MetricCoupon, MetricCustom:
		return true
	}
	return false
}

// UserType says whether a user refers others or was referred.
type UserType string

// RF's two user types.
const (
	TypeReferrer UserType = "person_referring"
	TypeLead     UserType = "person_invited"
)

// Issued reward statuses, capitalised as RF sends them ("Canceled" with one l).
const (
	StatusIssued   = "Issued"
	StatusCanceled = "Canceled"
	StatusSending  = "Sending"
	StatusSent     = "Sent"
	StatusFailed   = "Failed"
)

const dateLayout = "2006-01-02"

// Date is RF's date: documented as "Y-m-d" with no time or zone, nullable. It also accepts a
// full timestamp, in case RF ever sends one. The zero Date is JSON null.
type Date struct{ time.Time }

// ParseDate parses "2006-01-02" (UTC).
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		return Date{}, fmt.Errorf("parse date %q: %w", s, err)
	}
	return Date{t}, nil
}

// UnmarshalJSON accepts null, "", "Y-m-d", "Y-m-d H:i:s" and RFC 3339.
func (d *Date) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*d = Date{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("date: %w", err)
	}
	if s == "" {
		*d = Date{}
		return nil
	}
	for _, layout := range []string{dateLayout, "2006-01-02 15:04:05", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			*d = Date{t.UTC()}
			return nil
		}
	}
	return fmt.Errorf("date: unrecognised format %q", s)
}

// MarshalJSON writes "Y-m-d", or null for the zero Date.
func (d Date) MarshalJSON() ([]byte, error) {
	if d.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(d.Format(dateLayout))
}

func (d Date) String() string {
	if d.IsZero() {
		return ""
	}
	return d.Format(dateLayout)
}

// Number is a numeric value RF sends sometimes as a JSON number and sometimes as a string
// (`reach`, `commission`, `amount`, `total`). It keeps the text as sent; null is "".
type Number string

// UnmarshalJSON accepts a number, a string or null.
func (n *Number) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*n = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("number: %w", err)
		}
		*n = Number(strings.TrimSpace(s))
	default:
		var num json.Number
		if err := json.Unmarshal(b, &num); err != nil {
			return fmt.Errorf("number: %w", err)
		}
		*n = Number(num)
	}
	return nil
}

// MarshalJSON writes a JSON number when the text is numeric, a string otherwise.
func (n Number) MarshalJSON() ([]byte, error) {
	if n == "" {
		return []byte("null"), nil
	}
	// json.Valid and not ParseFloat: ParseFloat accepts "NaN" and "1_000", which are not JSON.
	if b := []byte(n); json.Valid(b) && (b[0] == '-' || b[0] >= '0' && b[0] <= '9') {
		return b, nil
	}
	return json.Marshal(string(n))
}

// Float64 returns the value as a float; "" is 0.
func (n Number) Float64() (float64, error) {
	if n == "" {
		return 0, nil
	}
	return strconv.ParseFloat(string(n), 64)
}

// MetaField is one custom campaign field; Field is the field's label ("Last Name").
type MetaField struct {
	Field string          `json:"field"`
	Value json.RawMessage `json:"value,omitempty"`
}

// Social is one sharing channel of a user.
type Social struct {
	Social string `json:"social"`
	URL    string `json:"url"`
}

// Sharing holds a user's sharing links and message.
type Sharing struct {
	Socials []Social `json:"socials"`
	Subject string   `json:"subject"`
	Text    string   `json:"text"`
}

// UserAnalytics is returned only when asked for with `with=user.analytics`.
type UserAnalytics struct {
	Reach              Number `json:"reach"`
	Referrals          Number `json:"referrals"`
	QualifiedReferrals Number `json:"qualified_referrals"`
}

// User is an RF user: a referrer (person_referring) or a lead (person_invited).
type User struct {
	ID             int64          `json:"id"`
	CampaignID     int64          `json:"campaign_id"`
	ReferrerID     int64          `json:"referrer_id,omitempty"`
	Code           string         `json:"code"`
	URL            string         `json:"url"`
	FirstName      string         `json:"first_name"`
	Email          string         `json:"email"`
	Reach          Number         `json:"reach"`
	Source         string         `json:"source"`
	Type           UserType       `json:"type"`
	IP             string         `json:"ip,omitempty"`
	SignedUpAt     Date           `json:"signed_up_at"`
	QualifiedAt    Date           `json:"qualified_at"`
	UnsubscribedAt Date           `json:"unsubscribed_at"`
	Meta           []MetaField    `json:"meta,omitempty"`
	Sharing        *Sharing       `json:"sharing,omitempty"`
	Analytics      *UserAnalytics `json:"analytics,omitempty"`
	QR             *struct {
		Src      string `json:"src"`
		Download string `json:"download"`
	} `json:"qr,omitempty"`
	Promotion *struct {
		Code string `json:"code"`
	} `json:"promotion,omitempty"`
}

// IsLead reports whether u was referred by someone (RF's person_invited).
func (u User) IsLead() bool { return u.Type == TypeLead }

// Qualified reports whether u is qualified: v2 has no boolean, only a nullable qualified_at.
func (u User) Qualified() bool { return !u.QualifiedAt.IsZero() }

// LabelValue is RF's {label, value} pair on reward definitions.
type LabelValue struct {
	Label string `json:"label"`
	Value string `json:"value"`
}

// RewardDefinition is a reward configured in a campaign (`/rewards/dashboard/{metric}`).
type RewardDefinition struct {
	ID            int64      `json:"id"`
	Metric        Metric     `json:"metric"`
	CampaignID    int64      `json:"campaign_id"`
	Name          string     `json:"name"`
	Status        string     `json:"status"`
	AutoIssue     bool       `json:"auto_issue"`
	CreatedAt     Date       `json:"created_at"`
	Type          LabelValue `json:"type"`
	Recipient     LabelValue `json:"recipient"`
	Method        LabelValue `json:"method"`
	Currency      string     `json:"currency,omitempty"`
	Amount        Number     `json:"amount,omitempty"`
	Commission    Number     `json:"commission,omitempty"`
	CommissionCap Number     `json:"commission_cap,omitempty"`
	PeriodType    string     `json:"period_type,omitempty"`
	PeriodAmount  Number     `json:"period_amount,omitempty"`
	PeriodLimit   Number     `json:"period_limit,omitempty"`
	Resumable     bool       `json:"resumable,omitempty"`
}

// DueReward is a reward that has been earned but not issued (`/rewards/due/{metric}`). Its ID is
// what IssueReward and CancelReward take.
type DueReward struct {
	ID          int64  `json:"id"`
	RewardID    int64  `json:"reward_id"`
	RecipientID int64  `json:"recipient_id"`
	CanBeIssued bool   `json:"can_be_issued"`
	Coupon      string `json:"coupon,omitempty"`
	Count       Number `json:"count,omitempty"`
	Total       Number `json:"total,omitempty"`
}

// IssuedReward is a reward that left the due list (`/rewards/issued/{metric}`): issued, being
// sent, sent, failed or canceled.
type IssuedReward struct {
	ID          int64  `json:"id"`
	RewardID    int64  `json:"reward_id"`
	RecipientID int64  `json:"recipient_id"`
	Status      string `json:"status"`
	Coupon      string `json:"coupon,omitempty"`
	Count       Number `json:"count,omitempty"`
	Total       Number `json:"total,omitempty"`
	IssuedAt    Date   `json:"issued_at"`
}

// CampaignField is one sign-up form field of a campaign.
type CampaignField struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Label    string `json:"label"`
	Value    string `json:"value"`
	Required bool   `json:"required"`
}

// Campaign is an RF campaign.
type Campaign struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	Code     string `json:"code"`
	Lang     string `json:"lang"`
	URL      string `json:"url"`
	Reach    Number `json:"reach"`
	Status   string `json:"status"`
	StartsAt Date   `json:"starts_at"`
	EndsAt   Date   `json:"ends_at"`
	Created  Date   `json:"created_at"`
	Fields   struct {
		PersonReferring []CampaignField `json:"person_referring"`
		PersonInvited   []CampaignField `json:"person_invited"`
	} `json:"fields"`
}
