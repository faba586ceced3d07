package referrals

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/refbridge/refbridge/shared/ledger"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
	"github.com/refbridge/refbridge/shared/stripeevents"
)

// Outcomes of a signup (checkout.session.completed, customer.created, customer.updated). A
// signup that is not attributed answers Refused (with a reason below), Unmatched (with
// ReasonUnknownReferralCode) or Ignored (no code, no email, no campaign, an update that changed
// neither; or, with a reason below, RF refused the body, the lead is gone from RF, the signup
// cannot be sent).
const (
	Created      Outcome = "created"       // the lead was created in RF now, credited to the code's owner
	Adopted      Outcome = "adopted"       // RF already had the email as a lead in the campaign: recorded, nothing created
	AlreadyKnown Outcome = "already_known" // the ledger knew the lead (by Stripe customer or email): nothing to create
	Refused      Outcome = "refused"       // not attributed, on purpose: ReasonExistingReferrer, ReasonSelfReferral
)

// Reasons a signup is not attributed. Each is the first word of Result.Reason, so the HTTP
// answer, the log line and the decision log all start with it.
const (
	// ReasonExistingReferrer: the email is a referrer (person_referring) in the campaign. RF
	// cannot turn a referrer into someone's lead, and refbridge does not try (no delete and
	// re-create: the referrer would lose their own referrals).
	ReasonExistingReferrer = "existing_referrer"
	// ReasonSelfReferral: the code belongs to the same person: the same mailbox (see
	// sameMailbox: case, spaces, a "+tag", and Gmail's dots do not make another person).
	ReasonSelfReferral = "self_referral"
	// ReasonUnknownReferralCode: RF has no user with the code in the signup campaign. The
	// signup is recorded as unmatched in the decision log only: the ledger's unmatched records
	// are paid invoices waiting for a lead that may appear later, and are retried; a code RF
	// does not know will not become valid by waiting (RF generates codes), so there is nothing
	// to retry. The customer's payments then go through the invoice flow as usual (unmatched
	// unless RF has the email as a lead).
	ReasonUnknownReferralCode = "unknown_referral_code"
	// ReasonRFRefused: RF answered POST /users with a 422 a retry cannot fix (first_name, an
	// address RF will not take, ...): the outcome is Ignored, acknowledged with 200; the WARN
	// line and the decision log say which field. (A 422 on campaign_id is a configuration error
	// instead: an error, answered 503, so Stripe retries while an operator fixes it.)
	ReasonRFRefused = "rf_refused"
	// ReasonLeadGone: a create_lead intent for the email is done (refbridge created or adopted
	// the lead before), yet neither the ledger nor RF has the lead now (deleted in RF): it is
	// not created again. Outcome Ignored.
	ReasonLeadGone = "lead_gone"
	// ReasonInvalidSignup: the RF client refused to send the signup (ErrInvalidInput: e.g. an
	// email with an empty local part and no Stripe name leaves no first_name). Permanent: the
	// same event would fail the same way. Outcome Ignored.
	ReasonInvalidSignup = "invalid_signup"
)

// NotAttributed is the reason a signup's result gives for a referral code that was not
// attributed to its owner (the first word of the reason: ReasonExistingReferrer,
// ReasonSelfReferral, ReasonUnknownReferralCode, ReasonRFRefused, ReasonLeadGone,
// ReasonInvalidSignup), or "" when the code was attributed, or there was none to attribute.
// The stripe-webhook handler counts SignupNotAttributed by it.
func NotAttributed(out Outcome, reason string) string {
	why, _, _ := strings.Cut(reason, ":")
	switch out {
	case Refused, Unmatched:
		return why
	case Ignored:
		switch why {
		case ReasonRFRefused, ReasonLeadGone, ReasonInvalidSignup:
			return why
		}
	}
	return ""
}

// Signup settings' defaults.
const (
	// DefaultReferralMetadataKey is RF_REFERRAL_METADATA_KEY's default.
	DefaultReferralMetadataKey = "rf_referrer_code"
	// defaultSignupStaleAfter is how old an unconfirmed POST /users must be before a delivery
	// that cannot find its lead in RF takes the attempt over and posts again. It is far longer
	// than a stripe-webhook invocation (30 s) and an RF attempt (10 s): an attempt that old has
	// ended, one way or another. Should it not have, RF's unique email per campaign still
	// refuses the second create (422 on email), which refbridge answers by adopting the lead.
	defaultSignupStaleAfter = 3 * time.Minute
	// maxFirstName is how long a first_name RF accepts, in characters (its 422 says "may not be
	// greater than 255 characters"): a longer Stripe name is cut, not refused.
	maxFirstName = 255
)

// plausibleCode says whether code may be a referral code: 1 to 64 of A–Z, a–z, 0–9, _ and -
// (RF's are 8 letters; custom ones are allowed some room; client_reference_id accepts only
// these characters anyway). A loop, not a regexp: ^[A-Za-z0-9_-]{1,64}$ compiles to 64 copies
// of the class at every cold start, a fifth of a millisecond.
func plausibleCode(code string) bool {
	if len(code) < 1 || len(code) > 64 {
		return false
	}
	for i := 0; i < len(code); i++ {
		switch c := code[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// ErrInProgress means another delivery is creating the same lead right now (its attempt is not
// confirmed yet, RF does not show the lead yet, and the attempt is too recent to be presumed
// crashed): the caller answers 503 so that Stripe retries later.
var ErrInProgress = errors.New("another delivery is creating the same lead; retry later")

// Signup attributes a new Stripe customer that carries a referral code to the code's owner: the
// customer becomes an RF lead of that referrer, created with POST /users and the referrer
// object (without it RF makes a standalone referrer that nobody is credited for).
//
// The code is metadata[RF_REFERRAL_METADATA_KEY] (the checkout's or the customer's), else the
// checkout's client_reference_id: metadata is set on purpose for refbridge, while an
// integration may use client_reference_id for something else. In order:
//
//  1. no code, no email or no signup campaign → Ignored, with the reason;
//  2. the ledger knows a lead of the Stripe customer (any campaign), or of the email in the
//     signup campaign → AlreadyKnown (the customer is mapped if it was not); a referrer there →
//     Refused existing_referrer. No RF call: another event about a person already decided
//     (the checkout after its customer, a referrer refused before) costs only ledger reads;
//  3. the code's owner is read (GET /users/{code}): unknown in the campaign → Unmatched
//     unknown_referral_code, no POST; the same mailbox (sameMailbox) → Refused self_referral;
//  4. POST /users, exactly once per (campaign, email) through the create_lead intent, credited
//     to the owner read in 3 by its id; RF's 422 on email → the existing user is searched: a
//     lead is adopted, a referrer refused (and recorded in the ledger, so that the next event
//     about it is refused in 2, without an RF call); 422 on referrer → Unmatched
//     unknown_referral_code; 422 on campaign_id → an error (a configuration to fix); another
//     422, or a body the client will not send → Ignored rf_refused or invalid_signup;
//  5. the lead and the customer ↔ lead mapping are stored; when the customer maps to this lead
//     (the first mapping wins: it may map to another), rf_user_id/rf_code are written to the
//     Stripe customer (with STRIPE_API_KEY); and paid invoices that waited for this customer or
//     email (for the email only, when the customer maps elsewhere) are processed now.
//
// A customer.updated whose previous_attributes name neither the email nor the metadata key is
// Ignored before anything is read: refbridge's own write-back, a card or address change.
//
// An error is transient (RF 429/5xx/timeout, an outcome RF did not confirm, DynamoDB,
// ErrInProgress, RF refusing the signup campaign): the caller answers 503 and Stripe retries;
// the retry resumes from the ledger and the intent, never by posting again blindly.
func (s *Service) Signup(ctx context.Context, su stripeevents.Signup) (Result, error) {
	subject := signupSubject(su)
	key := s.metadataKey()
	code := s.referralCode(su)
	if code == "" {
		// No decision entry: most customers carry no code, and customer.updated is frequent.
		// The handler's log line says why it was ignored.
		return Result{Outcome: Ignored, Reason: "no referral code (metadata " + key + " or client_reference_id)"}, nil
	}
	if c := su.Changes; c != nil && !c.Attribute("email") && !c.MetadataKey(key) {
		// A customer.updated about something else (a card, an address, refbridge's own
		// rf_user_id/rf_code): the code and the email are what they were when they were last
		// decided. No decision entry, no ledger read.
		return Result{Outcome: Ignored, Reason: "the update changed neither the email nor metadata " + key + ": decided when they last changed"}, nil
	}
	campaign := s.set.SignupCampaignID
	inputs := map[string]string{"source": su.Source, "code": code, "campaign": itoa(campaign)}
	if su.CustomerID != "" {
		inputs["customer"] = su.CustomerID
	}
	if !plausibleCode(code) {
		// Metadata may hold anything (an email, a URL): it is not recorded, and not sent to RF
		// as a path segment.
		inputs["code"] = "(not a referral code)"
		out := Result{Outcome: Unmatched, Reason: ReasonUnknownReferralCode + ": the value is not a referral code (letters, digits, - and _ only)"}
		s.decide(ctx, subject, "referral_code", out, inputs)
		return out, nil
	}
	email := rf.NormalizeEmail(su.Email)
	if email == "" {
		out := Result{Outcome: Ignored, Reason: "no email on the " + su.Source + ": a lead cannot be created without one"}
		s.decide(ctx, subject, "email", out, inputs)
		return out, nil
	}
	inputs["email"] = ledger.MaskEmail(email)
	if campaign <= 0 {
		s.log.WarnContext(ctx, "signup with a referral code, but no signup campaign is configured (RF_SIGNUP_CAMPAIGN_ID or RF_CAMPAIGN_IDS)", "subject", subject)
		out := Result{Outcome: Ignored, Reason: "no signup campaign configured (RF_SIGNUP_CAMPAIGN_ID, or RF_CAMPAIGN_IDS)"}
		s.decide(ctx, subject, "campaign", out, inputs)
		return out, nil
	}
	sg := signup{Signup: su, subject: subject, code: code, campaign: campaign, email: email,
		hash: ledger.HashEmail(email), inputs: inputs}

	if out, known, err := s.knownSignup(ctx, sg); err != nil || known {
		return out, err
	}
	owner, out, ok, err := s.codeOwner(ctx, sg)
	if err != nil || !ok {
		return out, err
	}
	sg.owner = owner
	sg.inputs["referrer"] = itoa(owner.ID)
	if s.set.DryRun {
		return s.dryRunSignup(ctx, sg)
	}
	return s.createLead(ctx, sg)
}

// signup is one signup being decided.
type signup struct {
	stripeevents.Signup
	subject  string
	code     string
	campaign int64
	email    string // normalised; never logged nor stored
	hash     string
	owner    rf.User // the code's owner, once read
	inputs   map[string]string
}

func (sg signup) target() string { return ledger.LeadCreationTarget(sg.campaign, sg.hash) }

// signupSubject names a signup in the decision log: the Stripe object it came from.
func signupSubject(su stripeevents.Signup) string {
	if su.Source == stripeevents.ObjectCheckoutSession {
		return "checkout#" + su.ID
	}
	return "customer#" + su.ID
}

func (s *Service) metadataKey() string {
	if k := strings.TrimSpace(s.set.ReferralMetadataKey); k != "" {
		return k
	}
	return DefaultReferralMetadataKey
}

// referralCode is the signup's referral code: metadata first, then client_reference_id.
func (s *Service) referralCode(su stripeevents.Signup) string {
	if c := strings.TrimSpace(su.Metadata[s.metadataKey()]); c != "" {
		return c
	}
	return strings.TrimSpace(su.ClientReferenceID)
}

// knownSignup answers a signup whose lead the ledger already knows: by the Stripe customer's
// mapping (whatever the campaign: the customer is attributed already), else by the email in the
// signup campaign. known is false when the ledger knows nothing.
func (s *Service) knownSignup(ctx context.Context, sg signup) (out Result, known bool, err error) {
	var lead ledger.Lead
	rule := ""
	if sg.CustomerID != "" {
		lead, err = s.ledger.LeadByCustomer(ctx, sg.CustomerID)
		switch {
		case err == nil:
			rule = RuleCustomerMap
		case !errors.Is(err, ledger.ErrNotFound):
			return Result{}, false, fmt.Errorf("signup %s: lead of the customer: %w", sg.subject, err)
		}
	}
	if rule == "" {
		leads, err := s.ledger.LeadsByEmail(ctx, sg.hash)
		if err != nil {
			return Result{}, false, fmt.Errorf("signup %s: leads of the email: %w", sg.subject, err)
		}
		for _, l := range leads {
			if l.CampaignID == sg.campaign {
				lead, rule = l, RuleEmailIndex
				break
			}
		}
	}
	if rule == "" {
		return Result{}, false, nil
	}
	sg.inputs["lead"], sg.inputs["rule"] = itoa(lead.ID), rule
	if lead.ReferrerID == 0 {
		out = Result{Outcome: Refused, LeadID: lead.ID, Rule: rule, Reason: fmt.Sprintf(
			"%s: the %s belongs to referrer %d, who is never converted into a lead", ReasonExistingReferrer, ruleSubject(rule), lead.ID)}
		s.decide(ctx, sg.subject, "ledger", out, sg.inputs)
		return out, true, nil
	}
	out = Result{Outcome: AlreadyKnown, LeadID: lead.ID, Rule: rule,
		Reason: fmt.Sprintf("lead %d already known by its %s (referrer %d); nothing to create", lead.ID, ruleSubject(rule), lead.ReferrerID)}
	if rule != RuleCustomerMap && sg.CustomerID != "" {
		mapped, err := s.mapSignupCustomer(ctx, sg, lead)
		if err != nil {
			return Result{}, false, err
		}
		if mapped {
			out.Reason += "; Stripe customer mapped to it" + s.afterLead(ctx, sg, lead, true)
		}
	}
	s.decide(ctx, sg.subject, "ledger", out, sg.inputs)
	return out, true, nil
}

func ruleSubject(rule string) string {
	if rule == RuleCustomerMap {
		return "Stripe customer"
	}
	return "email"
}

// mapSignupCustomer maps the signup's customer to a lead; the first mapping wins (a customer
// mapped to another lead keeps that mapping, with a warning).
func (s *Service) mapSignupCustomer(ctx context.Context, sg signup, lead ledger.Lead) (bool, error) {
	_, err := s.ledger.MapCustomer(ctx, sg.CustomerID, lead.ID, "signup")
	if errors.Is(err, ledger.ErrConflict) {
		s.log.WarnContext(ctx, "Stripe customer already mapped to another lead; that mapping is kept", "subject", sg.subject, "lead", lead.ID)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("signup %s: map customer: %w", sg.subject, err)
	}
	return true, nil
}

// codeOwner reads the referral code's owner from RF before anything is created: a code RF does
// not know in the campaign is unmatched without a POST, and a code of the same person refused.
// ok is false when the signup ends here (out says how).
func (s *Service) codeOwner(ctx context.Context, sg signup) (owner rf.User, out Result, ok bool, err error) {
	u, err := s.rf.GetUser(ctx, sg.code)
	why := ""
	switch {
	case rf.IsNotFound(err):
		why = fmt.Sprintf("Referral Factory has no user with this code in campaign %d", sg.campaign)
	case err != nil:
		return rf.User{}, Result{}, false, fmt.Errorf("signup %s: read the referral code's owner: %w", sg.subject, err)
	case !strings.EqualFold(u.Code, sg.code):
		// GET /users/{identifier} reads a number as a user id: "42" is user 42, not a code.
		// (Case aside: RF's codes are unique without it, and the lead is credited to u by id.)
		why = fmt.Sprintf("%q is not a referral code in Referral Factory (it names user %d by id)", sg.code, u.ID)
	case u.CampaignID != sg.campaign:
		why = fmt.Sprintf("the code belongs to a user of campaign %d, not of the signup campaign %d", u.CampaignID, sg.campaign)
	}
	if why != "" {
		out = Result{Outcome: Unmatched, Reason: ReasonUnknownReferralCode + ": " + why}
		s.decide(ctx, sg.subject, "referral_code", out, sg.inputs)
		return rf.User{}, out, false, nil
	}
	if sameMailbox(u.Email, sg.email) {
		sg.inputs["referrer"] = itoa(u.ID)
		out = Result{Outcome: Refused, Reason: fmt.Sprintf("%s: the code belongs to user %d, who has the same email (or an alias of it)", ReasonSelfReferral, u.ID)}
		s.decide(ctx, sg.subject, "self_referral", out, sg.inputs)
		return rf.User{}, out, false, nil
	}
	return u, Result{}, true, nil
}

// dryRunSignup decides without changing RF or Stripe: an email RF already has is adopted or
// refused as it would be (those only record), anything else is reported as would-create.
func (s *Service) dryRunSignup(ctx context.Context, sg signup) (Result, error) {
	u, found, err := s.findInCampaign(ctx, sg)
	if err != nil {
		return Result{}, err
	}
	if found {
		return s.existing(ctx, sg, u, "", Adopted, false)
	}
	s.log.InfoContext(ctx, "dry run: would call POST /users", "subject", sg.subject, "campaign", sg.campaign, "referrer", sg.owner.ID)
	out := Result{Outcome: Created, Reason: fmt.Sprintf("dry run: would create the lead in campaign %d, credited to referrer %d", sg.campaign, sg.owner.ID)}
	s.decide(ctx, sg.subject, "create", out, sg.inputs)
	return out, nil
}

// createLead creates the lead exactly once through intent → POST /users → confirm. The intent's
// target is (campaign, email hash), so the customer's event and the checkout's, which have
// different event ids, share it.
func (s *Service) createLead(ctx context.Context, sg signup) (Result, error) {
	kind, target := ledger.IntentCreateLead, sg.target()
	in, err := s.ledger.BeginIntent(ctx, ledger.Intent{Kind: kind, Target: target, Ref: sg.subject})
	switch {
	case err == nil:
	case errors.Is(err, ledger.ErrIntentDone):
		// Another delivery created (or adopted) it since the ledger was read; it stores the lead
		// before it confirms, so the ledger has it now.
		if out, known, err := s.knownSignup(ctx, sg); err != nil || known {
			return out, err
		}
		u, found, err := s.findInCampaign(ctx, sg)
		if err != nil {
			return Result{}, err
		}
		if !found {
			s.log.WarnContext(ctx, "a lead was created for this email before and Referral Factory no longer has it; not created again", "subject", sg.subject)
			out := Result{Outcome: Ignored, Reason: ReasonLeadGone + ": a lead was created for this email before, and Referral Factory no longer has it; not created again"}
			s.decide(ctx, sg.subject, "create", out, sg.inputs)
			return out, nil
		}
		return s.existing(ctx, sg, u, "", Adopted, false)
	case errors.Is(err, ledger.ErrIntentPending):
		// An earlier attempt may have created it: read RF before posting again.
		u, found, ferr := s.findInCampaign(ctx, sg)
		if ferr != nil {
			return Result{}, ferr
		}
		if found {
			return s.existing(ctx, sg, u, target, Created, true)
		}
		stale := s.now().Add(-s.signupStaleAfter())
		if !in.PreviousAttemptAt.Before(stale) {
			return Result{}, fmt.Errorf("signup %s: attempt %d began at %s: %w", sg.subject, in.Attempts,
				in.PreviousAttemptAt.UTC().Format(time.RFC3339), ErrInProgress)
		}
		// The attempt is old and RF has no lead for the email: it crashed before RF created
		// anything. Exactly one delivery wins the take-over and posts.
		if _, err := s.ledger.TakeOverIntent(ctx, kind, target, in.Attempts, stale); errors.Is(err, ledger.ErrConflict) {
			return Result{}, fmt.Errorf("signup %s: %w", sg.subject, ErrInProgress)
		} else if err != nil {
			return Result{}, fmt.Errorf("signup %s: take over the create_lead intent: %w", sg.subject, err)
		}
		s.log.WarnContext(ctx, "earlier create_lead attempt presumed crashed (not in RF); posting again", "subject", sg.subject, "attempt", in.Attempts)
	default:
		return Result{}, fmt.Errorf("signup %s: create_lead intent: %w", sg.subject, err)
	}
	return s.post(ctx, sg)
}

// post calls POST /users once and answers what RF said. The referrer is named by the id of the
// owner codeOwner read, so the user RF credits is exactly the one checked for the campaign and
// for self-referral.
func (s *Service) post(ctx context.Context, sg signup) (Result, error) {
	target := sg.target()
	u, err := s.rf.CreateUser(ctx, rf.CreateUserInput{CampaignID: sg.campaign, FirstName: firstName(sg.Name, sg.email),
		Email: sg.email, Referrer: rf.ReferrerByID(sg.owner.ID), Notify: s.set.SignupNotify})
	var rfErr *rf.Error
	errors.As(err, &rfErr)
	switch {
	case err == nil:
		return s.existing(ctx, sg, u, target, Created, false)
	case rf.IsOutcomeUnknown(err):
		// RF may have created it: after a timeout or a reset, and after any 5xx too — a
		// gateway's 502 or 504 while RF's backend goes on, a 503 from a proxy in front of it, a
		// 500 thrown after the insert. Read at once: found → confirmed. Not found → the intent
		// stays pending: the redelivery searches first, and takes the attempt over only once it
		// is stale. No answer of this kind proves that nothing was created.
		if u, found := s.reconcileNow(ctx, sg); found {
			return s.existing(ctx, sg, u, target, Created, true)
		}
		return Result{}, fmt.Errorf("signup %s: create lead (outcome unknown, not found by search): %w", sg.subject, err)
	case rf.IsValidation(err) && rfErr.HasField("campaign_id"):
		// The signup campaign is gone or wrong: a configuration error an operator fixes, and
		// Stripe retries for three days meanwhile. Nothing was created.
		s.failIntent(ctx, sg, err)
		s.log.ErrorContext(ctx, "Referral Factory refused the signup campaign: check RF_SIGNUP_CAMPAIGN_ID (default: the first of RF_CAMPAIGN_IDS); the signup is answered 503 so that Stripe retries it",
			"subject", sg.subject, "campaign", sg.campaign, "error", err.Error())
		return Result{}, fmt.Errorf("signup %s: Referral Factory refused campaign %d (RF_SIGNUP_CAMPAIGN_ID): %w", sg.subject, sg.campaign, err)
	case rf.IsValidation(err) && rfErr.HasField("email"):
		// The email exists in the campaign (RF's unique email per campaign): find out as what.
		u, found, ferr := s.findInCampaign(ctx, sg)
		if ferr != nil {
			s.failIntent(ctx, sg, err)
			return Result{}, ferr
		}
		if found {
			return s.existing(ctx, sg, u, target, Adopted, false)
		}
		// Not there: RF refused the address itself (malformed, say).
		return s.refusedByRF(ctx, sg, err, rfErr), nil
	case rf.IsValidation(err) && rfErr.HasField("referrer"):
		s.failIntent(ctx, sg, err)
		out := Result{Outcome: Unmatched, Reason: fmt.Sprintf("%s: Referral Factory refused the code's owner (user %d) as referrer in campaign %d", ReasonUnknownReferralCode, sg.owner.ID, sg.campaign)}
		s.decide(ctx, sg.subject, "create", out, sg.inputs)
		return out, nil
	case rf.IsValidation(err):
		return s.refusedByRF(ctx, sg, err, rfErr), nil
	case errors.Is(err, rf.ErrInvalidInput):
		// The client refused to send it (nothing reached RF): the same signup would be refused
		// again on every redelivery, so it is acknowledged, counted and recorded.
		s.failIntent(ctx, sg, err)
		s.log.WarnContext(ctx, "the signup cannot be sent to Referral Factory", "subject", sg.subject, "error", err.Error())
		out := Result{Outcome: Ignored, Reason: ReasonInvalidSignup + ": the signup cannot be sent to Referral Factory: " + err.Error()}
		s.decide(ctx, sg.subject, "create", out, sg.inputs)
		return out, nil
	default:
		// The client returns anything else only when the request provably had no effect (a 4xx,
		// a 429 or a connection RF never saw): the intent fails, a retry posts again.
		s.failIntent(ctx, sg, err)
		return Result{}, fmt.Errorf("signup %s: create lead: %w", sg.subject, err)
	}
}

// reconcileNow searches RF right after a POST whose answer was lost or proves nothing. A failed
// search is left to the redelivery.
func (s *Service) reconcileNow(ctx context.Context, sg signup) (rf.User, bool) {
	u, found, err := s.findInCampaign(ctx, sg)
	if err != nil {
		s.log.WarnContext(ctx, "could not reconcile a lost POST /users answer; the redelivery will", "subject", sg.subject, "error", err.Error())
		return rf.User{}, false
	}
	return u, found
}

// refusedByRF answers a 422 a retry cannot fix (a first_name or an address RF will not take): an
// operator can, so it is logged, recorded, acknowledged and counted (ReasonRFRefused).
func (s *Service) refusedByRF(ctx context.Context, sg signup, err error, rfErr *rf.Error) Result {
	s.failIntent(ctx, sg, err)
	s.log.WarnContext(ctx, "Referral Factory refused the new lead", "subject", sg.subject, "error", err.Error())
	out := Result{Outcome: Ignored, Reason: ReasonRFRefused + ": Referral Factory refused the new lead: " + rfErr.Message + fieldNames(rfErr)}
	s.decide(ctx, sg.subject, "create", out, sg.inputs)
	return out
}

// failIntent records that the create had no effect, so a later delivery may begin it again.
func (s *Service) failIntent(ctx context.Context, sg signup, cause error) {
	if _, err := s.ledger.FinishIntent(ctx, ledger.IntentCreateLead, sg.target(), ledger.IntentFailed, cause.Error()); err != nil {
		s.log.WarnContext(ctx, "could not record a failed lead creation", "subject", sg.subject, "error", err.Error())
	}
}

func fieldNames(e *rf.Error) string {
	if len(e.Fields) == 0 {
		return ""
	}
	names := make([]string, 0, len(e.Fields))
	for n := range e.Fields {
		names = append(names, n)
	}
	return " (" + strings.Join(names, ", ") + ")"
}

// firstName is what POST /users gets as first_name: Stripe's name (RF has one name field, as
// RF's own Stripe integration maps Name to First Name), else the email's local part; cut to
// maxFirstName characters.
func firstName(name, email string) string {
	n := strings.Join(strings.Fields(name), " ")
	if n == "" {
		n, _, _ = strings.Cut(email, "@")
	}
	if r := []rune(n); len(r) > maxFirstName {
		n = strings.TrimSpace(string(r[:maxFirstName]))
	}
	return n
}

// sameMailbox reports whether two addresses reach the same person, for the self-referral check
// only (ledger keys and lead identity use rf.NormalizeEmail: RF keeps each address apart).
func sameMailbox(a, b string) bool { return mailbox(a) == mailbox(b) }

// mailbox is an address reduced to the mailbox it delivers to: lower-case and trimmed, the local
// part's "+tag" dropped (for every domain: sub-addressing is how one person makes many
// addresses), and for gmail.com and googlemail.com (one domain) the local part's dots dropped
// too. Nothing else is folded: a Unicode lookalike is another mailbox.
func mailbox(email string) string {
	e := rf.NormalizeEmail(email)
	at := strings.LastIndexByte(e, '@')
	if at < 0 {
		return e
	}
	local, domain := e[:at], e[at+1:]
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	if domain == "gmail.com" || domain == "googlemail.com" {
		local, domain = strings.ReplaceAll(local, ".", ""), "gmail.com"
	}
	return local + "@" + domain
}

// findInCampaign searches RF for the signup's email in its campaign (POST /users/search).
func (s *Service) findInCampaign(ctx context.Context, sg signup) (rf.User, bool, error) {
	users, err := s.rf.FindUsersByEmail(ctx, sg.campaign, sg.email)
	if err != nil {
		return rf.User{}, false, fmt.Errorf("signup %s: search the email in campaign %d: %w", sg.subject, sg.campaign, err)
	}
	for _, u := range users {
		if u.CampaignID == sg.campaign && rf.NormalizeEmail(u.Email) == sg.email {
			return u, true, nil
		}
	}
	return rf.User{}, false, nil
}

// existing records the RF user that has the signup's email in the campaign: the lead POST /users
// just created (how Created), the one an unconfirmed attempt created (Created, bySearch), or one
// that was there before (Adopted). A lead is stored, mapped and its intent confirmed (target "":
// no intent to confirm); a referrer is refused.
func (s *Service) existing(ctx context.Context, sg signup, u rf.User, target string, how Outcome, bySearch bool) (Result, error) {
	sg.inputs["lead"] = itoa(u.ID)
	if !u.IsLead() {
		if target != "" {
			s.failIntent(ctx, sg, fmt.Errorf("the email belongs to referrer %d", u.ID))
		}
		s.rememberReferrer(ctx, sg, u)
		out := Result{Outcome: Refused, LeadID: u.ID, Reason: fmt.Sprintf(
			"%s: the email belongs to referrer %d in campaign %d, who is never converted into a lead", ReasonExistingReferrer, u.ID, sg.campaign)}
		s.decide(ctx, sg.subject, "create", out, sg.inputs)
		return out, nil
	}
	// A lead found by search that another referrer brought is that referrer's: RF's attribution
	// stands, first come first credited.
	if how == Created && u.ReferrerID != sg.owner.ID {
		how = Adopted
	}
	lead := ledger.Lead{ID: u.ID, Code: u.Code, ReferrerID: u.ReferrerID, CampaignID: u.CampaignID,
		SignedUpAt: u.SignedUpAt.Time, Source: ledger.SourceSignup, StripeCustomerID: sg.CustomerID}
	lead.SetEmail(sg.email)
	stored, err := s.ledger.PutLead(ctx, lead)
	// mapped: the signup's customer maps to this lead now (PutLead maps it in the same write).
	mapped := err == nil && sg.CustomerID != ""
	if errors.Is(err, ledger.ErrConflict) && lead.StripeCustomerID != "" {
		// The customer is mapped to another lead (the first mapping wins: an invoice.paid
		// matched it while this signup ran): keep the lead, not a second mapping.
		s.log.WarnContext(ctx, "Stripe customer already mapped to another lead; the new lead is stored without it", "subject", sg.subject, "lead", u.ID)
		lead.StripeCustomerID = ""
		stored, err = s.ledger.PutLead(ctx, lead)
	}
	if err != nil {
		return Result{}, fmt.Errorf("signup %s: store lead %d: %w", sg.subject, u.ID, err)
	}
	// Stored before confirmed: a delivery that finds the intent done finds the lead too.
	if target != "" {
		if _, err := s.ledger.FinishIntent(ctx, ledger.IntentCreateLead, target, ledger.IntentDone, ""); err != nil {
			return Result{}, fmt.Errorf("signup %s: confirm the create_lead intent: %w", sg.subject, err)
		}
	}
	out := Result{Outcome: how, LeadID: u.ID, Rule: "signup"}
	switch {
	case how == Created && bySearch:
		out.Reason = fmt.Sprintf("lead %d created in campaign %d, credited to referrer %d (the answer was lost: confirmed by search)", u.ID, sg.campaign, u.ReferrerID)
	case how == Created:
		out.Reason = fmt.Sprintf("lead %d created in campaign %d, credited to referrer %d", u.ID, sg.campaign, u.ReferrerID)
	default:
		out.Reason = fmt.Sprintf("the email is already lead %d in campaign %d (referrer %d): adopted, nothing created", u.ID, sg.campaign, u.ReferrerID)
	}
	if sg.CustomerID != "" && !mapped {
		out.Reason += "; the Stripe customer stays mapped to another lead, and is not written to"
	}
	out.Reason += s.afterLead(ctx, sg, stored, mapped)
	s.decide(ctx, sg.subject, "create", out, sg.inputs)
	return out, nil
}

// rememberReferrer records a referrer RF has with the signup's email in the campaign (ReferrerID
// 0, as rf-webhook records referrer-joined), so that the next event about the same email is
// refused by knownSignup from the ledger, without an RF call. The customer is not mapped to it:
// a referrer's payments are no lead's. Best effort: without the record the next event asks RF
// again, and is refused the same way.
func (s *Service) rememberReferrer(ctx context.Context, sg signup, u rf.User) {
	r := ledger.Lead{ID: u.ID, Code: u.Code, CampaignID: u.CampaignID, SignedUpAt: u.SignedUpAt.Time, Source: ledger.SourceSignup}
	r.SetEmail(sg.email)
	if _, err := s.ledger.PutLead(ctx, r); err != nil {
		s.log.WarnContext(ctx, "could not record the referrer; the next event about the email will ask Referral Factory again", "subject", sg.subject, "referrer", u.ID, "error", err.Error())
	}
}

// afterLead is what follows a lead stored for the signup. When the signup's customer maps to it
// (mapped): rf_user_id/rf_code on the Stripe customer (best effort: the ledger's mapping
// already matches its payments), then the paid invoices that waited for this customer or email.
// When the customer maps to another lead (the first mapping wins), the customer is not written
// to — metadata comes first when payments are matched, and would credit every later payment to
// this lead against the mapping — and only the invoices that waited for the email are looked
// up. It returns what to add to the reason. A failure here does not fail the signup: the sweep
// retries waiting invoices.
func (s *Service) afterLead(ctx context.Context, sg signup, lead ledger.Lead, mapped bool) string {
	customer := ""
	if mapped {
		customer = sg.CustomerID
	}
	if s.customers != nil && customer != "" && !s.set.DryRun {
		if err := s.customers.WriteBack(ctx, customer, lead.ID, lead.Code); err != nil {
			s.log.WarnContext(ctx, "could not write the RF link to the Stripe customer", "subject", sg.subject, "error", err.Error())
		}
	}
	waiting, err := s.ledger.UnmatchedFor(ctx, customer, sg.hash)
	if err != nil {
		s.log.WarnContext(ctx, "could not list the paid invoices waiting for the lead; the sweep will retry them", "subject", sg.subject, "error", err.Error())
		return ""
	}
	if len(waiting) == 0 {
		return ""
	}
	done, qualified := 0, 0
	for _, w := range waiting {
		res, err := s.RetryUnmatched(ctx, w)
		if err != nil {
			s.log.WarnContext(ctx, "waiting invoice not processed; the sweep will retry it", "invoice", w.InvoiceID, "lead", lead.ID, "error", err.Error())
			continue
		}
		done++
		if res.Outcome == Qualified {
			qualified++
		}
	}
	return fmt.Sprintf("; %d of %d waiting paid invoice(s) processed (%d qualified the lead)", done, len(waiting), qualified)
}

func (s *Service) signupStaleAfter() time.Duration {
	if s.set.SignupStaleAfter > 0 {
		return s.set.SignupStaleAfter
	}
	return defaultSignupStaleAfter
}
