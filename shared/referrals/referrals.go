// Package referrals holds refbridge's decisions about Stripe events: which Referral Factory
// lead a paid invoice belongs to (the matching chain of PRODUCT.md), whether it counts, and
// when the lead qualifies; how refunds and disputes reverse it; and how a new customer carrying
// a referral code becomes an RF lead of its referrer (signup.go). It acts only through the
// ledger and the RF client interfaces below; it knows nothing of HTTP, Lambda or the AWS SDK.
package referrals

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/refbridge/refbridge/shared/config"
	"github.com/refbridge/refbridge/shared/ledger"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
)

// Ledger is the part of the ledger the decisions use.
type Ledger interface {
	PutLead(ctx context.Context, l ledger.Lead) (ledger.Lead, error)
	LeadByID(ctx context.Context, id int64) (ledger.Lead, error)
	LeadByCode(ctx context.Context, code string) (ledger.Lead, error)
	LeadsByEmail(ctx context.Context, emailHash string) ([]ledger.Lead, error)
	LeadByCustomer(ctx context.Context, customerID string) (ledger.Lead, error)
	MapCustomer(ctx context.Context, customerID string, leadID int64, rule string) (ledger.Mapping, error)
	ApplySpend(ctx context.Context, e ledger.SpendEntry) (ledger.Spend, bool, error)
	SpendOf(ctx context.Context, leadID int64) (ledger.Spend, error)
	InvoiceCounted(ctx context.Context, invoiceID string) (bool, error)
	Qualify(ctx context.Context, q ledger.Qualification) (ledger.Qualification, error)
	Reverse(ctx context.Context, ref ledger.QualificationRef, at time.Time, reason string) (ledger.Qualification, error)
	LatestQualification(ctx context.Context, leadID int64) (ledger.Qualification, error)
	StandingQualification(ctx context.Context, leadID int64) (ledger.Qualification, error)
	DueRewardRecord(ctx context.Context, id int64) (ledger.DueReward, error)
	PlaceCharge(ctx context.Context, p ledger.ChargePlacement) (ledger.Placement, error)
	HoldChargeReversal(ctx context.Context, h ledger.ChargeHold) (ledger.ChargeHold, error)
	LeadByCharge(ctx context.Context, chargeID string) (ledger.Lead, error)
	ApplyChargeRefunded(ctx context.Context, r ledger.ChargeRefund) (ledger.Spend, int64, error)
	BeginIntent(ctx context.Context, in ledger.Intent) (ledger.Intent, error)
	TakeOverIntent(ctx context.Context, kind ledger.IntentKind, target string, seenAttempts int, staleBefore time.Time) (ledger.Intent, error)
	FinishIntent(ctx context.Context, kind ledger.IntentKind, target string, outcome ledger.IntentStatus, lastErr string) (ledger.Intent, error)
	IntentOf(ctx context.Context, kind ledger.IntentKind, target string) (ledger.Intent, error)
	RecordUnmatched(ctx context.Context, u ledger.Unmatched) (ledger.Unmatched, error)
	UnmatchedFor(ctx context.Context, customerID, emailHash string) ([]ledger.Unmatched, error)
	ResolveUnmatched(ctx context.Context, invoiceID string, outcome ledger.UnmatchedStatus, reason string) (ledger.Unmatched, error)
	LogDecision(ctx context.Context, d ledger.Decision) error
}

// RF is the part of the Referral Factory client the decisions use.
type RF interface {
	GetUser(ctx context.Context, identifier string, with ...string) (rf.User, error)
	FindUsersByEmail(ctx context.Context, campaignID int64, email string) ([]rf.User, error)
	SetQualification(ctx context.Context, ref rf.UserRef, qualified bool) (rf.User, error)
	CreateUser(ctx context.Context, in rf.CreateUserInput) (rf.User, error)
}

// Customers reads and writes Stripe customer metadata (only when STRIPE_API_KEY is set).
type Customers interface {
	Metadata(ctx context.Context, customerID string) (map[string]string, error)
	ChargeCustomer(ctx context.Context, chargeID string) (string, error)
	WriteBack(ctx context.Context, customerID string, rfUserID int64, rfCode string) error
}

// Settings are the rules' parameters (from config.Config).
type Settings struct {
	CampaignIDs    []int64
	Threshold      config.Threshold
	Window         time.Duration // 0 = no limit
	UnmatchedRetry time.Duration
	DryRun         bool

	// Signup attribution (Signup). SignupCampaignID is the campaign leads are created in
	// (RF_SIGNUP_CAMPAIGN_ID; config defaults it to the first of RF_CAMPAIGN_IDS); 0 turns
	// attribution off, with that reason. Its leads' payments are matched like those of
	// CampaignIDs.
	SignupCampaignID    int64
	ReferralMetadataKey string // RF_REFERRAL_METADATA_KEY; "" is DefaultReferralMetadataKey
	SignupNotify        bool   // RF_SIGNUP_NOTIFY: RF sends its welcome email to the new lead
	// SignupStaleAfter is how old an unconfirmed POST /users must be before a delivery that
	// cannot find its lead in RF posts again (0: 3 minutes).
	SignupStaleAfter time.Duration
	// StateCallWithin bounds an attempt's PUT /users/qualification, retries and rate-limit wait
	// included (0: 30 s, the webhooks' Lambda timeout). A pending unqualify attempt is taken over
	// only once 5 s older than that.
	StateCallWithin time.Duration
}

// Service makes the decisions.
type Service struct {
	ledger    Ledger
	rf        RF
	customers Customers // nil without STRIPE_API_KEY
	set       Settings
	now       func() time.Time
	log       *slog.Logger
}

// New returns a Service. now and log may be nil (time.Now, discard).
func New(l Ledger, client RF, set Settings, now func() time.Time, log *slog.Logger) *Service {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{ledger: l, rf: client, set: set, now: now, log: log}
}

// WithCustomers turns on customer-metadata matching and the write-back of rf_user_id/rf_code.
func (s *Service) WithCustomers(c Customers) *Service {
	s.customers = c
	return s
}

// Outcome names what a decision did.
type Outcome string

// Outcomes of a paid invoice.
const (
	Qualified Outcome = "qualified" // the lead was qualified in RF now
	Counted   Outcome = "counted"   // spend recorded; no qualification (below threshold, already qualified, ...)
	Unmatched Outcome = "unmatched" // no lead; recorded and retried later
	Ignored   Outcome = "ignored"   // nothing to do ($0, outside the window, ...)
	Duplicate Outcome = "duplicate" // this invoice was counted before

	Unqualified Outcome = "unqualified" // a reversal took the lead below the threshold: unqualified in RF
	Restored    Outcome = "restored"    // a won dispute brought the lead back over the threshold: qualified again
	// ReversedAfterIssue: a reversal came after the reward was issued; recorded for operators,
	// nothing clawed back.
	ReversedAfterIssue Outcome = "reversal_after_issue"
	// Held: a refund or dispute of a charge whose payment has not counted yet; kept, and applied
	// when the payment counts.
	Held Outcome = "held"
)

// Result is a decision's outcome and the reason, safe to show to the webhook sender.
type Result struct {
	Outcome Outcome
	Reason  string
	LeadID  int64
	Rule    string
}

// Matching rules, recorded with every match (PRODUCT.md's chain, first hit wins).
const (
	RuleMetadata    = "metadata"     // rf_user_id / rf_code in invoice or subscription metadata
	RuleCustomerMap = "customer_map" // a Stripe customer ↔ lead mapping stored earlier
	RuleEmailIndex  = "email_index"  // the lead index fed by RF's webhooks, by email hash
	// RuleRFEmail looks the email up in RF in each configured campaign. PRODUCT.md's rule 4 is
	// "PUT /users/qualification by email + campaign"; refbridge reads first (POST /users/search)
	// and qualifies by the id it found, so a payment below the threshold never qualifies anyone
	// and the lead is remembered for the next payment.
	RuleRFEmail = "rf_email"
)

// errNoMatch means the chain found no lead.
var errNoMatch = errors.New("no lead matches")

func (s *Service) decide(ctx context.Context, subject, rule string, out Result, inputs map[string]string) {
	err := s.ledger.LogDecision(ctx, ledger.Decision{Subject: subject, At: s.now(), Rule: rule,
		Outcome: string(out.Outcome), Reason: out.Reason, Inputs: inputs})
	if err != nil {
		// The decision log is for people; losing an entry must not fail the payment.
		s.log.WarnContext(ctx, "decision log write failed", "subject", subject, "error", err.Error())
	}
}
