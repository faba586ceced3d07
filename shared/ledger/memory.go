package ledger

import (
	"context"
	"fmt"
	"sync"
)

// Memory is the in-process Store: the embedded default for local runs (STATE_TABLE unset) and a
// fake for tests of the flows. It keeps the Dynamo store's semantics, including conditional
// failures, last-writer-wins lookups and expiry, and is verified by the same contract suite.
// One mutex makes every operation atomic, as a transaction is.
type Memory struct {
	cfg config

	mu          sync.Mutex
	leads       map[int64]Lead
	codes       map[string]int64           // code → lead
	emails      map[string]map[int64]int64 // email hash → campaign → lead
	mappings    map[string]Mapping
	charges     map[string]ChargeMapping
	refunds     map[string]ChargeRefund // charge → highest cumulative refund recorded
	holds       map[string]ChargeHold   // charge → reversals held until its payment counts (memory_holds.go)
	placed      map[string]int64        // payment spend key → decrease placed with it
	entries     map[string]SpendEntry   // spend key → entry
	invoices    map[string]string       // invoice → spend key that counted it
	spend       map[int64]Spend
	quals       map[int64][]Qualification                 // lead → qualifications, Seq 1..n (items: no Slots)
	slots       map[QualificationRef]map[RewardSlot]int64 // the index copies' slots → due reward
	due         map[int64]DueReward
	sighted     map[int64]bool   // due rewards SeeDueReward recorded (their CreatedAfter is set)
	issued      map[issuedID]int // rewards recorded as issued, per recipient and UTC month
	intents     map[intentID]Intent
	unmatched   map[string]Unmatched
	checkpoints map[string][]byte
	decisions   map[string][]Decision
}

type issuedID struct {
	recipient int64
	month     string // issuedMonth
}

type intentID struct {
	kind   IntentKind
	target string
}

// NewMemory returns an empty in-memory ledger.
func NewMemory(opts ...Option) *Memory {
	return &Memory{
		cfg:   newConfig(opts),
		leads: map[int64]Lead{}, codes: map[string]int64{}, emails: map[string]map[int64]int64{},
		mappings: map[string]Mapping{}, charges: map[string]ChargeMapping{}, refunds: map[string]ChargeRefund{},
		entries: map[string]SpendEntry{}, invoices: map[string]string{},
		spend: map[int64]Spend{}, quals: map[int64][]Qualification{}, due: map[int64]DueReward{},
		sighted: map[int64]bool{},
		slots:   map[QualificationRef]map[RewardSlot]int64{},
		issued:  map[issuedID]int{}, intents: map[intentID]Intent{}, unmatched: map[string]Unmatched{},
		checkpoints: map[string][]byte{}, decisions: map[string][]Decision{},
	}
}

var _ Store = (*Memory)(nil)

// lock takes the mutex unless the context is already done, as a request would fail.
func (m *Memory) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	m.mu.Lock()
	return nil
}

// PutLead implements Store.
func (m *Memory) PutLead(ctx context.Context, in Lead) (Lead, error) {
	if err := in.validate(); err != nil {
		return Lead{}, fmt.Errorf("ledger: put lead: %w", err)
	}
	if err := m.lock(ctx); err != nil {
		return Lead{}, err
	}
	defer m.mu.Unlock()
	stored, found := m.leads[in.ID]
	next := in.merge(stored)
	if found && next.sameContent(stored) {
		return stored, nil
	}
	next.UpdatedAt = m.cfg.clock()
	newCustomer := next.StripeCustomerID != "" && next.StripeCustomerID != stored.StripeCustomerID
	if mp, ok := m.mappings[next.StripeCustomerID]; newCustomer && ok && mp.LeadID != next.ID {
		return Lead{}, fmt.Errorf("ledger: put lead %d: customer %s is mapped to lead %d: %w",
			in.ID, next.StripeCustomerID, mp.LeadID, ErrConflict)
	}
	// Drop the lookups this lead no longer has, unless another lead has taken them over.
	if found && stored.Code != "" && stored.Code != next.Code && m.codes[stored.Code] == next.ID {
		delete(m.codes, stored.Code)
	}
	if found && stored.EmailHash != "" && (stored.EmailHash != next.EmailHash || stored.CampaignID != next.CampaignID) &&
		m.emails[stored.EmailHash][stored.CampaignID] == next.ID {
		delete(m.emails[stored.EmailHash], stored.CampaignID)
		if len(m.emails[stored.EmailHash]) == 0 {
			delete(m.emails, stored.EmailHash)
		}
	}
	m.leads[next.ID] = next
	if next.Code != "" {
		m.codes[next.Code] = next.ID
	}
	if next.EmailHash != "" {
		if m.emails[next.EmailHash] == nil {
			m.emails[next.EmailHash] = map[int64]int64{}
		}
		m.emails[next.EmailHash][next.CampaignID] = next.ID
	}
	if _, ok := m.mappings[next.StripeCustomerID]; newCustomer && !ok {
		m.mappings[next.StripeCustomerID] = Mapping{CustomerID: next.StripeCustomerID, LeadID: next.ID,
			Rule: next.mappingRule(), MappedAt: next.UpdatedAt}
	}
	return next, nil
}

// LeadByID implements Store.
func (m *Memory) LeadByID(ctx context.Context, id int64) (Lead, error) {
	if err := m.lock(ctx); err != nil {
		return Lead{}, err
	}
	defer m.mu.Unlock()
	l, ok := m.leads[id]
	if !ok {
		return Lead{}, fmt.Errorf("ledger: lead %d: %w", id, ErrNotFound)
	}
	return l, nil
}

// LeadByCode implements Store.
func (m *Memory) LeadByCode(ctx context.Context, code string) (Lead, error) {
	if code == "" {
		return Lead{}, fmt.Errorf("ledger: lead by code: %w: empty code", ErrInvalid)
	}
	if err := m.lock(ctx); err != nil {
		return Lead{}, err
	}
	defer m.mu.Unlock()
	id, ok := m.codes[code]
	if !ok {
		return Lead{}, fmt.Errorf("ledger: lead with code %q: %w", code, ErrNotFound)
	}
	return m.leads[id], nil
}

// LeadsByEmail implements Store.
func (m *Memory) LeadsByEmail(ctx context.Context, emailHash string) ([]Lead, error) {
	if emailHash == "" || !validEmailHash(emailHash) {
		return nil, fmt.Errorf("ledger: leads by email: %w: not a HashEmail digest", ErrInvalid)
	}
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	leads := []Lead{}
	for _, id := range m.emails[emailHash] {
		leads = append(leads, m.leads[id])
	}
	sortLeadsByCampaign(leads)
	return leads, nil
}

// LeadByCustomer implements Store.
func (m *Memory) LeadByCustomer(ctx context.Context, customerID string) (Lead, error) {
	mp, err := m.CustomerMapping(ctx, customerID)
	if err != nil {
		return Lead{}, err
	}
	l, err := m.LeadByID(ctx, mp.LeadID)
	if err != nil {
		return Lead{}, fmt.Errorf("ledger: customer %s: %w", customerID, err)
	}
	return l, nil
}

// CustomerMapping implements Store.
func (m *Memory) CustomerMapping(ctx context.Context, customerID string) (Mapping, error) {
	if customerID == "" {
		return Mapping{}, fmt.Errorf("ledger: customer mapping: %w: empty customer id", ErrInvalid)
	}
	if err := m.lock(ctx); err != nil {
		return Mapping{}, err
	}
	defer m.mu.Unlock()
	mp, ok := m.mappings[customerID]
	if !ok {
		return Mapping{}, fmt.Errorf("ledger: mapping of customer %s: %w", customerID, ErrNotFound)
	}
	return mp, nil
}

// MapCustomer implements Store.
func (m *Memory) MapCustomer(ctx context.Context, customerID string, leadID int64, rule string) (Mapping, error) {
	if customerID == "" || leadID <= 0 {
		return Mapping{}, fmt.Errorf("ledger: map customer %q to lead %d: %w", customerID, leadID, ErrInvalid)
	}
	if err := m.lock(ctx); err != nil {
		return Mapping{}, err
	}
	defer m.mu.Unlock()
	if mp, ok := m.mappings[customerID]; ok {
		if mp.LeadID != leadID {
			return mp, fmt.Errorf("ledger: map customer %s to lead %d: mapped to lead %d by %s: %w",
				customerID, leadID, mp.LeadID, mp.Rule, ErrConflict)
		}
		return mp, nil
	}
	mp := Mapping{CustomerID: customerID, LeadID: leadID, Rule: rule, MappedAt: m.cfg.clock()}
	m.mappings[customerID] = mp
	return mp, nil
}
