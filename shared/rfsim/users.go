package rfsim

import (
	"net/http"
	"net/mail"
	"slices"
	"strings"
)

// NewUser is the body of POST /users (§2.4); CreateUser takes it directly.
type NewUser struct {
	CampaignID int          `json:"campaign_id"`
	FirstName  string       `json:"first_name"`
	Email      string       `json:"email"`
	Referrer   *ReferrerRef `json:"referrer,omitempty"`
	Meta       []Meta       `json:"meta,omitempty"`
	Notify     bool         `json:"notify,omitempty"`
	// Source overrides the recorded source ("Api" for a referrer, "Referred" for a lead). The API
	// cannot set it; Go callers use it to model sign-ups through RF's own page or widget.
	Source string `json:"-"`
	// IP is recorded as the user's ip; the API records the caller's address.
	IP string `json:"-"`
}

// ReferrerRef names the referrer of a new lead: Field is "id", "code" or "email".
type ReferrerRef struct {
	Field string `json:"field"`
	Value string `json:"value"`
}

// UserRef names a user for qualification: ID, or Code, or Email with CampaignID. When several
// are set, ID wins over Code over Email.
type UserRef struct {
	ID         int
	Code       string
	Email      string
	CampaignID int
}

var userFields = fieldsOf(User{Analytics: &UserAnalytics{}})

var referrerFields = []string{"id", "code", "email"}

func (s *Server) listUsers(rq *request) *response {
	withAnalytics := withRelations(rq.Request)["user.analytics"]
	s.mu.Lock()
	var st *stats
	if withAnalytics {
		st = s.w.stats()
	}
	var items []any
	for _, u := range sortedValues(s.w.users) {
		items = append(items, s.w.renderUser(u, st))
	}
	s.mu.Unlock()
	return s.list(rq, items, userFields)
}

// list answers a list (GET) or a search (POST, filters in the body) with one page of items.
func (s *Server) list(rq *request, items []any, fields map[string]bool) *response {
	if rq.Method == http.MethodPost {
		filter, err := parseSearch(rq.body, fields)
		if err != nil {
			return errResponse(err)
		}
		if filter != nil {
			kept := []any{}
			for _, it := range items {
				if filter.match(s.searchable(it)) {
					kept = append(kept, it)
				}
			}
			items = kept
		}
	}
	return s.paginate(rq.Request, items)
}

// getUser resolves a numeric identifier as an id first, anything else as a code. Emails are not
// identifiers (the docs are ambiguous; refusing them keeps clients on search).
func (s *Server) getUser(rq *request) *response {
	withAnalytics := withRelations(rq.Request)["user.analytics"]
	s.mu.Lock()
	defer s.mu.Unlock()
	ident := rq.PathValue("identifier")
	u := s.w.userByCode(ident)
	if id, isID := atoi(ident); isID && s.w.users[id] != nil {
		u = s.w.users[id]
	}
	if u == nil {
		return errResponse(newError(http.StatusNotFound, msgUserNotFound))
	}
	var st *stats
	if withAnalytics {
		st = s.w.stats()
	}
	return ok(s.w.renderUser(u, st))
}

func (s *Server) createUser(rq *request) *response {
	m, err := parseBody(rq.body)
	if err != nil {
		return errResponse(err)
	}
	var v validation
	in := parseNewUser(m, &v)
	in.IP = clientIP(rq.Request)
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.createUserLocked(in, &v)
	if err != nil {
		return errResponse(err)
	}
	return data(http.StatusCreated, s.w.renderUser(u, nil))
}

// parseNewUser reads the JSON body, recording type errors; checkNewUserLocked does the rest.
func parseNewUser(m map[string]any, v *validation) NewUser {
	var in NewUser
	if filled(m, "campaign_id") {
		id, isInt := intValue(m["campaign_id"])
		if !isInt {
			v.add("campaign_id", msgInteger("campaign_id"))
		}
		in.CampaignID = id
	}
	in.FirstName = stringField(m, "first_name", "first_name", v)
	in.Email = stringField(m, "email", "email", v)
	if raw := m["referrer"]; raw != nil {
		obj, isObj := raw.(map[string]any)
		if !isObj {
			v.add("referrer", "The referrer field must be an object.")
		} else {
			ref := &ReferrerRef{Field: stringField(obj, "field", "referrer.field", v)}
			if filled(obj, "value") {
				val, isScalar := scalarString(obj["value"])
				if !isScalar {
					v.add("referrer.value", msgString("referrer.value"))
				}
				ref.Value = val
			}
			in.Referrer = ref
		}
	}
	in.Meta = parseMeta(m, v)
	if raw, found := m["notify"]; found && raw != nil {
		b, isBool := boolValue(raw)
		if !isBool {
			v.add("notify", msgBoolean("notify"))
		}
		in.Notify = b
	}
	// "promotion" asks RF for a Stripe promotion code; the simulator has no Stripe connection,
	// so, like RF without one, it ignores the flag.
	return in
}

// stringField returns a trimmed string field; a non-string value is a validation error.
func stringField(m map[string]any, key, name string, v *validation) string {
	if !filled(m, key) {
		return ""
	}
	str, isStr := m[key].(string)
	if !isStr {
		v.add(name, msgString(name))
	}
	return strings.TrimSpace(str)
}

func parseMeta(m map[string]any, v *validation) []Meta {
	raw, found := m["meta"]
	if !found || raw == nil {
		return nil
	}
	items, isArr := raw.([]any)
	if !isArr {
		v.add("meta", "The meta field must be an array.")
		return nil
	}
	out := []Meta{}
	for i, it := range items {
		obj, isObj := it.(map[string]any)
		name := "meta." + itoa(i) + ".field"
		if !isObj || !filled(obj, "field") {
			v.add(name, msgRequired(name))
			continue
		}
		field, isStr := obj["field"].(string)
		if !isStr {
			v.add(name, msgString(name))
			continue
		}
		out = append(out, Meta{Field: field, Value: obj["value"]})
	}
	return out
}

func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1
}

// createUserLocked validates and stores a new user, then fires its webhook and join rewards.
// v may already hold type errors from parsing; all errors come back in one 422.
func (s *Server) createUserLocked(in NewUser, v *validation) (*user, *Error) {
	in.FirstName, in.Email = strings.TrimSpace(in.FirstName), strings.TrimSpace(in.Email)
	camp := s.w.campaigns[in.CampaignID]
	switch {
	case v.has("campaign_id"):
	case in.CampaignID == 0:
		v.add("campaign_id", msgRequired("campaign_id"))
	case camp == nil:
		v.add("campaign_id", msgInvalid("campaign_id"))
	}
	if in.FirstName == "" && !v.has("first_name") {
		v.add("first_name", msgRequired("first_name"))
	}
	switch {
	case v.has("email"):
	case in.Email == "":
		v.add("email", msgRequired("email"))
	case !validEmail(in.Email):
		v.add("email", "The email field must be a valid email address.")
	case camp != nil && s.w.userByEmail(camp.ID, in.Email) != nil:
		// Unique per campaign: users belong to one campaign and email qualification needs the
		// campaign, so the same person may join two campaigns.
		v.add("email", "The email has already been taken.")
	}
	var referrer *user
	if ref := in.Referrer; ref != nil {
		switch {
		case v.has("referrer.field"):
		case ref.Field == "":
			v.add("referrer.field", msgRequired("referrer.field"))
		case !slices.Contains(referrerFields, ref.Field):
			v.add("referrer.field", msgInvalid("referrer.field"))
		}
		if ref.Value == "" && !v.has("referrer.value") {
			v.add("referrer.value", msgRequired("referrer.value"))
		}
		if camp != nil && !v.has("referrer.field") && !v.has("referrer.value") {
			// Resolved within the new user's campaign only: a referrer from another campaign
			// cannot earn that campaign's rewards.
			referrer = s.w.findReferrer(camp.ID, *ref)
			if referrer == nil {
				v.add("referrer", "The selected referrer is invalid.")
			}
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}

	u := &user{
		ID:         s.w.nextUser,
		CampaignID: camp.ID,
		Code:       s.newUserCodeLocked(s.w),
		FirstName:  in.FirstName,
		Email:      in.Email,
		Type:       TypeReferring,
		Source:     SourceAPI,
		IP:         in.IP,
		SignedUpAt: s.todayLocked(),
		Meta:       in.Meta,
	}
	if u.Meta == nil {
		u.Meta = []Meta{}
	}
	if referrer != nil {
		u.Type, u.Source, u.ReferrerID = TypeInvited, SourceReferred, ptr(referrer.ID)
	}
	if in.Source != "" {
		u.Source = in.Source
	}
	s.w.nextUser++
	s.w.users[u.ID] = u
	if in.Notify {
		s.counters.Notifications++
	}
	if referrer == nil {
		s.fireLocked(EventReferrerJoined, u, nil)
		return u, nil
	}
	s.fireLocked(EventLeadCreated, u, nil)
	s.earnLocked(u, TriggerJoin)
	return u, nil
}

func (w *world) findReferrer(campaignID int, ref ReferrerRef) *user {
	var u *user
	switch ref.Field {
	case "id":
		if id, isID := atoi(ref.Value); isID {
			u = w.users[id]
		}
	case "code":
		u = w.userByCode(ref.Value)
	case "email":
		u = w.userByEmail(campaignID, ref.Value)
	}
	if u == nil || u.CampaignID != campaignID {
		return nil
	}
	return u
}

const codeLetters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// newUserCodeLocked returns 8 random mixed-case letters, like RF's "ueONFmUp", unique even
// when compared case-insensitively.
func (s *Server) newUserCodeLocked(w *world) string {
	for {
		code := s.randomCodeLocked()
		if !w.userCodes[strings.ToLower(code)] {
			w.userCodes[strings.ToLower(code)] = true
			return code
		}
	}
}

func (s *Server) randomCodeLocked() string {
	b := make([]byte, 8)
	for i := range b {
		b[i] = codeLetters[s.codeRNG.IntN(len(codeLetters))]
	}
	return string(b)
}

func (s *Server) updateUser(rq *request) *response {
	m, err := parseBody(rq.body)
	if err != nil {
		return errResponse(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, _ := atoi(rq.PathValue("id"))
	u := s.w.users[id]
	if u == nil {
		return errResponse(newError(http.StatusNotFound, msgUserNotFound))
	}

	var v validation
	var firstName, email *string
	if _, present := m["first_name"]; present {
		if !filled(m, "first_name") {
			v.add("first_name", msgRequired("first_name"))
		} else {
			firstName = ptr(stringField(m, "first_name", "first_name", &v))
		}
	}
	if _, present := m["email"]; present {
		e := stringField(m, "email", "email", &v)
		switch {
		case v.has("email"):
		case e == "":
			v.add("email", msgRequired("email"))
		case !validEmail(e):
			v.add("email", "The email field must be a valid email address.")
		default:
			if other := s.w.userByEmail(u.CampaignID, e); other != nil && other.ID != u.ID {
				v.add("email", "The email has already been taken.")
			}
		}
		email = &e
	}
	_, metaPresent := m["meta"]
	meta := parseMeta(m, &v)
	// v1 qualified users with PUT /users/{id} {"qualified": true}; accepting it keeps old
	// clients working and routes it through the same rules as /users/qualification.
	var qualified *bool
	if raw, found := m["qualified"]; found && raw != nil {
		b, isBool := boolValue(raw)
		if !isBool {
			v.add("qualified", msgBoolean("qualified"))
		}
		qualified = &b
	}
	if err := v.err(); err != nil {
		return errResponse(err)
	}
	if qualified != nil && u.Type != TypeInvited {
		return errResponse(newError(http.StatusUnprocessableEntity, msgOnlyLeads))
	}
	if firstName != nil {
		u.FirstName = *firstName
	}
	if email != nil {
		u.Email = *email
	}
	if metaPresent {
		u.Meta = append([]Meta{}, meta...)
	}
	if qualified != nil {
		s.setQualifiedLocked(u, *qualified)
	}
	return ok(s.w.renderUser(u, nil))
}

// deleteUser removes the user and answers with it as it was. Leads keep the deleted referrer's
// referrer_id and rewards stay where they are: RF documents no cascade, so callers must cope
// with dangling ids.
func (s *Server) deleteUser(rq *request) *response {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, _ := atoi(rq.PathValue("id"))
	u := s.w.users[id]
	if u == nil {
		return errResponse(newError(http.StatusNotFound, msgUserNotFound))
	}
	out := s.w.renderUser(u, nil)
	delete(s.w.users, id)
	return ok(out)
}

func (s *Server) qualification(rq *request) *response {
	m, err := parseBody(rq.body)
	if err != nil {
		return errResponse(err)
	}
	var v validation
	var ref UserRef
	var qualified bool
	if !filled(m, "qualified") {
		v.add("qualified", msgRequired("qualified"))
	} else if b, isBool := boolValue(m["qualified"]); isBool {
		qualified = b
	} else {
		v.add("qualified", msgBoolean("qualified"))
	}
	hasID, hasCode, hasEmail := filled(m, "id"), filled(m, "code"), filled(m, "email")
	// Exactly one way of naming the user: guessing which of two conflicting names the caller
	// meant could qualify the wrong lead.
	switch {
	case !hasID && !hasCode && !hasEmail:
		v.add("id", "The id field is required when none of code / email are present.")
	case hasID && (hasCode || hasEmail):
		v.add("id", "The id field prohibits code / email from being present.")
	case hasCode && hasEmail:
		v.add("code", "The code field prohibits email from being present.")
	}
	if hasID {
		id, isInt := intValue(m["id"])
		if !isInt {
			v.add("id", msgInteger("id"))
		}
		ref.ID = id
	}
	ref.Code = stringField(m, "code", "code", &v)
	if hasEmail {
		ref.Email = stringField(m, "email", "email", &v)
		if !filled(m, "campaign_id") {
			v.add("campaign_id", "The campaign id field is required when email is present.")
		} else if cid, isInt := intValue(m["campaign_id"]); !isInt {
			v.add("campaign_id", msgInteger("campaign_id"))
		} else {
			ref.CampaignID = cid
		}
	}
	if err := v.err(); err != nil {
		return errResponse(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.qualifyLocked(ref, qualified)
	if err != nil {
		return errResponse(err)
	}
	return ok(s.w.renderUser(u, nil))
}

func (w *world) resolve(ref UserRef) *user {
	switch {
	case ref.ID != 0:
		return w.users[ref.ID]
	case ref.Code != "":
		return w.userByCode(ref.Code)
	case ref.Email != "":
		return w.userByEmail(ref.CampaignID, ref.Email)
	}
	return nil
}

func (s *Server) qualifyLocked(ref UserRef, qualified bool) (*user, *Error) {
	u := s.w.resolve(ref)
	if u == nil {
		return nil, newError(http.StatusNotFound, msgUserNotFound)
	}
	if u.Type != TypeInvited {
		return nil, newError(http.StatusUnprocessableEntity, msgOnlyLeads)
	}
	s.setQualifiedLocked(u, qualified)
	return u, nil
}

// setQualifiedLocked applies a qualification to a lead. Qualifying is idempotent: the first
// qualified_at stays and no reward is earned twice. Unqualifying only resets qualified_at: what
// RF does to rewards already due is undocumented, so they stay due and the caller must cancel
// them (the pessimistic reading).
func (s *Server) setQualifiedLocked(u *user, qualified bool) {
	if !qualified {
		u.QualifiedAt = nil
		return
	}
	if u.QualifiedAt != nil {
		return
	}
	u.QualifiedAt = ptr(s.todayLocked())
	s.earnLocked(u, TriggerQualification)
	s.fireLocked(EventLeadQualified, u, nil)
}
