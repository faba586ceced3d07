// Package rfevents reads Referral Factory's outbound webhooks: which kind of event a delivery
// is (the last path segment), whether it carries the shared secret, and whose it is. RF signs
// nothing and lets the admin rename every field, so the secret is compared in constant time and
// the identity is looked for under common names, or under the names the admin chose
// (RF_WEBHOOK_FIELDS). The payload is only a hint: callers re-read the user from the API.
package rfevents

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strconv"
	"strings"
)

// Kind is the event kind, the last segment of the webhook URL.
type Kind string

// The kinds refbridge takes (one RF webhook per kind, each with its own URL).
const (
	ReferrerJoined Kind = "referrer-joined"
	LeadCreated    Kind = "lead-created"
	LeadQualified  Kind = "lead-qualified"
	RewardIssued   Kind = "reward-issued"
)

// KindFromPath returns the kind named by the path's last segment.
func KindFromPath(path string) (Kind, bool) {
	seg := path[strings.LastIndex(strings.TrimRight(path, "/"), "/")+1:]
	switch k := Kind(strings.TrimRight(seg, "/")); k {
	case ReferrerJoined, LeadCreated, LeadQualified, RewardIssued:
		return k, true
	}
	return "", false
}

// Authorized reports whether header holds one of the secrets. Every secret is compared, in
// constant time, so the answer's timing tells nothing about which one came close or how long it is.
func Authorized(header string, secrets []string) bool {
	// Hashes have one length, so the comparison's timing does not reveal the secret's length.
	h := sha256.Sum256([]byte(header))
	ok := 0
	for _, s := range secrets {
		if s != "" {
			sh := sha256.Sum256([]byte(s))
			ok |= subtle.ConstantTimeCompare(h[:], sh[:])
		}
	}
	return header != "" && ok == 1
}

// Identity is what a delivery says about whom it concerns.
type Identity struct {
	ID         int64
	Code       string
	Email      string
	CampaignID int64
	// IssuedRewardID is the issued reward's id (reward-issued deliveries).
	IssuedRewardID int64
}

// Usable reports whether the identity names a user.
func (id Identity) Usable() bool { return id.ID > 0 || id.Code != "" || id.Email != "" }

// The field names looked for when the admin did not rename them, first match wins.
var defaultNames = map[string][]string{
	"id":        {"id", "user_id", "userId", "rf_user_id"},
	"code":      {"code", "referral_code", "referralCode", "user_code"},
	"email":     {"email", "user_email", "email_address"},
	"campaign":  {"campaign_id", "campaignId", "campaign"},
	"reward_id": {"reward_issued_id", "issued_reward_id", "rewardIssuedId"},
}

// FieldNames maps refbridge's names (id, code, email, campaign, reward_id) to the names the RF
// admin chose, as parsed from RF_WEBHOOK_FIELDS.
type FieldNames map[string]string

// ErrNoIdentity means the body names no user under any name looked for.
var ErrNoIdentity = errors.New("no user id, code or email")

// ErrMalformedJSON and ErrMalformedForm mean the body is not what its encoding says. Their
// messages are the answer's; the parser's detail wrapped with them may quote bytes of the body,
// so it is for the logs only.
var (
	ErrMalformedJSON = errors.New("malformed JSON body: want an object")
	ErrMalformedForm = errors.New("malformed form body (application/x-www-form-urlencoded)")
)

// Parse reads a delivery's body: JSON (an object, or one wrapped in "data" or "user") or
// application/x-www-form-urlencoded.
func Parse(body []byte, contentType string, names FieldNames) (Identity, error) {
	values, err := flatten(body, contentType)
	if err != nil {
		return Identity{}, err
	}
	get := func(field string) string {
		candidates := defaultNames[field]
		if n, ok := names[field]; ok {
			candidates = []string{n}
		}
		for _, c := range candidates {
			if v := strings.TrimSpace(values[c]); v != "" {
				return v
			}
		}
		return ""
	}
	var id Identity
	id.ID = number(get("id"))
	id.Code = get("code")
	id.Email = get("email")
	id.CampaignID = number(get("campaign"))
	id.IssuedRewardID = number(get("reward_id"))
	if !id.Usable() {
		return Identity{}, fmt.Errorf("%w: looked for %s", ErrNoIdentity, lookedFor(names))
	}
	return id, nil
}

// number reads an id; anything that is not one, an out-of-range number included, is 0 (absent).
// strconv.ParseInt answers a number beyond int64 with the largest int64 and an error, which
// must not name a user or a reward.
func number(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// lookedFor lists the names searched, for the 400 answer.
func lookedFor(names FieldNames) string {
	var parts []string
	for _, field := range []string{"id", "code", "email"} {
		candidates := defaultNames[field]
		if n, ok := names[field]; ok {
			candidates = []string{n}
		}
		parts = append(parts, field+" ("+strings.Join(candidates, ", ")+")")
	}
	return strings.Join(parts, "; ")
}

// flatten turns the body into name → value. JSON numbers keep their text.
func flatten(body []byte, contentType string) (map[string]string, error) {
	media, _, _ := mime.ParseMediaType(contentType)
	trimmed := bytes.TrimSpace(body)
	if media == "application/x-www-form-urlencoded" || (media != "application/json" && len(trimmed) > 0 && trimmed[0] != '{') {
		q, err := url.ParseQuery(string(trimmed))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformedForm, err)
		}
		// A field given twice counts once, with its last value, as in a JSON body (encoding/json
		// keeps the last): the same delivery names the same user in either encoding.
		out := make(map[string]string, len(q))
		for k, v := range q {
			out[k] = v[len(v)-1]
		}
		return out, nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedJSON, err)
	}
	for _, wrapper := range []string{"data", "user"} {
		if inner, ok := obj[wrapper].(map[string]any); ok {
			obj = inner
			break
		}
	}
	out := make(map[string]string, len(obj))
	for k, val := range obj {
		switch v := val.(type) {
		case string:
			out[k] = v
		case json.Number:
			out[k] = v.String()
		}
	}
	return out, nil
}
