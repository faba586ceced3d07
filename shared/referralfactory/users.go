package referralfactory

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// ReferrerRef names the referrer a new lead is credited to.
type ReferrerRef struct {
	Field string `json:"field"` // "id", "code" or "email"
	Value any    `json:"value"`
}

// ReferrerByCode credits the new user to the referrer with this referral code.
func ReferrerByCode(code string) *ReferrerRef { return &ReferrerRef{Field: "code", Value: code} }

// ReferrerByID credits the new user to the referrer with this user id.
func ReferrerByID(id int64) *ReferrerRef { return &ReferrerRef{Field: "id", Value: id} }

// ReferrerByEmail credits the new user to the referrer with this email.
func ReferrerByEmail(email string) *ReferrerRef {
	return &ReferrerRef{Field: "email", Value: NormalizeEmail(email)}
}

// CreateUserInput is the body of POST /users. With Referrer set, RF creates a lead
// (person_invited) credited to that referrer; without it, a standalone referrer.
type CreateUserInput struct {
	CampaignID int64        `json:"campaign_id"`
	FirstName  string       `json:"first_name"`
	Email      string       `json:"email"`
	Referrer   *ReferrerRef `json:"referrer,omitempty"`
	Meta       []MetaField  `json:"meta,omitempty"`
	// Notify is always sent: false keeps RF from sending its welcome email.
	Notify    bool `json:"notify"`
	Promotion bool `json:"promotion,omitempty"`
}

func (in CreateUserInput) validate() error {
	var missing []string
	if in.CampaignID <= 0 {
		missing = append(missing, "campaign_id")
	}
	if strings.TrimSpace(in.FirstName) == "" {
		missing = append(missing, "first_name")
	}
	if strings.TrimSpace(in.Email) == "" {
		missing = append(missing, "email")
	}
	if in.Referrer != nil {
		switch in.Referrer.Field {
		case "id", "code", "email":
		default:
			missing = append(missing, "referrer.field")
		}
		if in.Referrer.Value == nil || in.Referrer.Value == "" {
			missing = append(missing, "referrer.value")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing or invalid %s", ErrInvalidInput, strings.Join(missing, ", "))
	}
	return nil
}

// NormalizeEmail trims and lower-cases an email, the form refbridge compares and sends.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

type userEnvelope struct {
	Data User `json:"data"`
}

// CreateUser creates a user (POST /users). It is not idempotent: a failure after the request
// was sent is ErrOutcomeUnknown, and the caller should look the email up before trying again.
// A 422 names the offending field (Error.HasField): "email" when it already exists in the
// campaign, "referrer" when the referrer is unknown.
func (c *Client) CreateUser(ctx context.Context, in CreateUserInput) (User, error) {
	if err := in.validate(); err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	in.Email = NormalizeEmail(in.Email)
	var env userEnvelope
	if err := c.do(ctx, call{method: "POST", target: "/users", body: in}, &env); err != nil {
		return User{}, fmt.Errorf("create user in campaign %d: %w", in.CampaignID, err)
	}
	return env.Data, nil
}

// GetUser reads a user by numeric id or referral code (GET /users/{identifier}).
func (c *Client) GetUser(ctx context.Context, identifier string, with ...string) (User, error) {
	if strings.TrimSpace(identifier) == "" {
		return User{}, fmt.Errorf("get user: %w: empty identifier", ErrInvalidInput)
	}
	var q url.Values
	if len(with) > 0 {
		q = url.Values{"with": {strings.Join(with, ",")}}
	}
	var env userEnvelope
	err := c.do(ctx, call{method: "GET", target: "/users/" + url.PathEscape(identifier), query: q, idempotent: true}, &env)
	if err != nil {
		return User{}, fmt.Errorf("get user %s: %w", identifier, err)
	}
	return env.Data, nil
}

// GetUserByID reads a user by id.
func (c *Client) GetUserByID(ctx context.Context, id int64, with ...string) (User, error) {
	return c.GetUser(ctx, strconv.FormatInt(id, 10), with...)
}

// Users lists users (GET /users), or searches them (POST /users/search) when opts.Filter is
// set. RF ignores campaign_id on the plain list: filter to select a campaign.
func (c *Client) Users(opts ListOptions) *Pager[User] { return newPager[User](c, "/users", opts) }

// FindUsersByEmail returns the users of a campaign with this email (normally zero or one).
func (c *Client) FindUsersByEmail(ctx context.Context, campaignID int64, email string) ([]User, error) {
	f := And(Eq("email", NormalizeEmail(email)), Eq("campaign_id", campaignID))
	users, err := c.Users(ListOptions{Filter: &f, PerPage: MaxPerPage}).Collect(ctx)
	if err != nil {
		return nil, fmt.Errorf("find users by email in campaign %d: %w", campaignID, err)
	}
	return users, nil
}

// UserRef names a user for qualification: by ID, by Code, or by Email within CampaignID.
type UserRef struct {
	ID         int64
	Code       string
	Email      string
	CampaignID int64
}

func (r UserRef) String() string {
	switch {
	case r.ID != 0:
		return "id " + strconv.FormatInt(r.ID, 10)
	case r.Code != "":
		return "code " + r.Code
	default:
		// Never the raw email: errors end up in logs.
		return "email in campaign " + strconv.FormatInt(r.CampaignID, 10)
	}
}

type qualificationBody struct {
	ID         int64  `json:"id,omitempty"`
	Code       string `json:"code,omitempty"`
	Email      string `json:"email,omitempty"`
	CampaignID int64  `json:"campaign_id,omitempty"`
	Qualified  bool   `json:"qualified"`
}

func (r UserRef) body(qualified bool) (qualificationBody, error) {
	n := 0
	for _, set := range []bool{r.ID != 0, r.Code != "", r.Email != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return qualificationBody{}, fmt.Errorf("%w: name the user by exactly one of id, code, email", ErrInvalidInput)
	}
	if r.Email != "" && r.CampaignID <= 0 {
		return qualificationBody{}, fmt.Errorf("%w: campaign_id is required with email", ErrInvalidInput)
	}
	b := qualificationBody{ID: r.ID, Code: r.Code, Qualified: qualified}
	if r.Email != "" {
		b.Email, b.CampaignID = NormalizeEmail(r.Email), r.CampaignID
	}
	return b, nil
}

// SetQualification qualifies (true) or unqualifies (false) a lead with PUT /users/qualification.
// Setting a state is idempotent, so the call is retried like a read. RF answers 404 for an
// unknown user (for email + campaign: "not a lead in that campaign") and 422 for a referrer.
func (c *Client) SetQualification(ctx context.Context, ref UserRef, qualified bool) (User, error) {
	verb := "qualify"
	if !qualified {
		verb = "unqualify"
	}
	body, err := ref.body(qualified)
	if err != nil {
		return User{}, fmt.Errorf("%s user: %w", verb, err)
	}
	var env userEnvelope
	if err := c.do(ctx, call{method: "PUT", target: "/users/qualification", body: body, idempotent: true}, &env); err != nil {
		return User{}, fmt.Errorf("%s user %s: %w", verb, ref, err)
	}
	return env.Data, nil
}

// Qualify is SetQualification(ctx, ref, true).
func (c *Client) Qualify(ctx context.Context, ref UserRef) (User, error) {
	return c.SetQualification(ctx, ref, true)
}

// Unqualify is SetQualification(ctx, ref, false): the lead returns to Pending.
func (c *Client) Unqualify(ctx context.Context, ref UserRef) (User, error) {
	return c.SetQualification(ctx, ref, false)
}
