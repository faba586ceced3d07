package ledger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// PutLead implements Store: one consistent GetItem, then one TransactWriteItems that writes the
// lead (guarded by its version), its code and email lookups (full copies, so a lookup is one
// strongly consistent read and needs no GSI), deletes the lookups it no longer owns, and maps
// its Stripe customer.
func (d *Dynamo) PutLead(ctx context.Context, in Lead) (Lead, error) {
	if err := in.validate(); err != nil {
		return Lead{}, fmt.Errorf("ledger: put lead: %w", err)
	}
	// Lookups that another lead took over since: deleting them would break that lead's lookup.
	notOurs := map[key]bool{}
	for range maxRaces {
		av, found, err := d.get(ctx, leadKey(in.ID))
		if err != nil {
			return Lead{}, fmt.Errorf("ledger: put lead %d: read: %w", in.ID, err)
		}
		var old leadItem
		var stored Lead
		if found {
			if err := attributevalue.UnmarshalMap(av, &old); err != nil {
				return Lead{}, fmt.Errorf("ledger: put lead %d: unmarshal: %w", in.ID, err)
			}
			if stored, err = old.lead(); err != nil {
				return Lead{}, fmt.Errorf("ledger: put lead %d: %w", in.ID, err)
			}
		}
		next := in.merge(stored)
		if found && next.sameContent(stored) {
			return stored, nil
		}
		next.UpdatedAt = d.cfg.clock()
		version := old.Version + 1

		t := &txn{}
		cond := notExists()
		if found {
			cond = eq("version", old.Version)
		}
		d.txPut(t, newLeadItem(leadKey(next.ID), typeLead, next, version), &cond)
		if next.Code != "" {
			d.txPut(t, newLeadItem(codeKey(next.Code), typeLeadCode, next, version), nil)
		}
		if next.EmailHash != "" {
			d.txPut(t, newLeadItem(emailKey(next.EmailHash, next.CampaignID), typeLeadEmail, next, version), nil)
		}
		stale := map[int]key{}
		ours := eq("lead_id", next.ID)
		if k := codeKey(stored.Code); found && stored.Code != "" && stored.Code != next.Code && !notOurs[k] {
			stale[d.txDelete(t, k, ours)] = k
		}
		if k := emailKey(stored.EmailHash, stored.CampaignID); found && stored.EmailHash != "" &&
			k != emailKey(next.EmailHash, next.CampaignID) && !notOurs[k] {
			stale[d.txDelete(t, k, ours)] = k
		}
		mapAt := -1
		if next.StripeCustomerID != "" && next.StripeCustomerID != stored.StripeCustomerID {
			upd, cond := mapUpdate(next.StripeCustomerID, next.ID, next.mappingRule(), formatTS(next.UpdatedAt))
			mapAt = d.txUpdate(t, mappingKey(next.StripeCustomerID), upd, &cond)
		}

		err = d.transact(ctx, t)
		if err == nil {
			return next, nil
		}
		reasons, ok := cancellation(err)
		if !ok {
			return Lead{}, fmt.Errorf("ledger: put lead %d: %w", in.ID, err)
		}
		if old, failed := failedAt(reasons, mapAt); failed {
			m, derr := decodeItem(old, mappingItem.mapping)
			return Lead{}, errors.Join(fmt.Errorf("ledger: put lead %d: customer %s is mapped to lead %d: %w",
				in.ID, next.StripeCustomerID, m.LeadID, ErrConflict), derr)
		}
		retry := false
		if _, failed := failedAt(reasons, 0); failed {
			retry = true // a concurrent upsert of the same lead: read again
		}
		for i, k := range stale {
			if _, failed := failedAt(reasons, i); failed {
				notOurs[k], retry = true, true
			}
		}
		if !retry {
			return Lead{}, fmt.Errorf("ledger: put lead %d: %w", in.ID, err)
		}
	}
	return Lead{}, fmt.Errorf("ledger: put lead %d: %w", in.ID, errContention)
}

// mapUpdate writes a customer mapping unless the customer is mapped to another lead; mapping the
// same pair again keeps the first rule and time.
func mapUpdate(customerID string, leadID int64, rule, at string) (expression.UpdateBuilder, expression.ConditionBuilder) {
	upd := set(attrType, typeMapping).
		Set(expression.Name("customer_id"), expression.Value(customerID)).
		Set(expression.Name("lead_id"), expression.Value(leadID)).
		Set(expression.Name("rule"), expression.IfNotExists(expression.Name("rule"), expression.Value(rule))).
		Set(expression.Name("mapped_at"), expression.IfNotExists(expression.Name("mapped_at"), expression.Value(at)))
	return upd, notExists().Or(eq("lead_id", leadID))
}

// LeadByID implements Store: one consistent GetItem.
func (d *Dynamo) LeadByID(ctx context.Context, id int64) (Lead, error) {
	return d.leadAt(ctx, leadKey(id), fmt.Sprintf("lead %d", id))
}

// LeadByCode implements Store: one consistent GetItem of the code lookup.
func (d *Dynamo) LeadByCode(ctx context.Context, code string) (Lead, error) {
	if code == "" {
		return Lead{}, fmt.Errorf("ledger: lead by code: %w: empty code", ErrInvalid)
	}
	return d.leadAt(ctx, codeKey(code), fmt.Sprintf("lead with code %q", code))
}

func (d *Dynamo) leadAt(ctx context.Context, k key, what string) (Lead, error) {
	av, found, err := d.get(ctx, k)
	if err != nil {
		return Lead{}, fmt.Errorf("ledger: read %s: %w", what, err)
	}
	if !found {
		return Lead{}, fmt.Errorf("ledger: %s: %w", what, ErrNotFound)
	}
	l, err := decodeItem(av, leadItem.lead)
	if err != nil {
		return Lead{}, fmt.Errorf("ledger: %s: %w", what, err)
	}
	return l, nil
}

// LeadsByEmail implements Store: one consistent Query of the email's partition.
func (d *Dynamo) LeadsByEmail(ctx context.Context, emailHash string) ([]Lead, error) {
	if emailHash == "" || !validEmailHash(emailHash) {
		return nil, fmt.Errorf("ledger: leads by email: %w: not a HashEmail digest", ErrInvalid)
	}
	items, err := d.queryPartition(ctx, emailPK(emailHash), "campaign#", true, 0)
	if err != nil {
		return nil, fmt.Errorf("ledger: leads by email: %w", err)
	}
	leads := make([]Lead, 0, len(items))
	for _, av := range items {
		l, err := decodeItem(av, leadItem.lead)
		if err != nil {
			return nil, fmt.Errorf("ledger: leads by email: %w", err)
		}
		leads = append(leads, l)
	}
	sortLeadsByCampaign(leads)
	return leads, nil
}

func sortLeadsByCampaign(leads []Lead) {
	slices.SortFunc(leads, func(a, b Lead) int {
		if a.CampaignID != b.CampaignID {
			return cmp.Compare(a.CampaignID, b.CampaignID)
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// LeadByCustomer implements Store: two consistent GetItems (the mapping, then the lead).
func (d *Dynamo) LeadByCustomer(ctx context.Context, customerID string) (Lead, error) {
	m, err := d.CustomerMapping(ctx, customerID)
	if err != nil {
		return Lead{}, err
	}
	l, err := d.LeadByID(ctx, m.LeadID)
	if err != nil {
		return Lead{}, fmt.Errorf("ledger: customer %s: %w", customerID, err)
	}
	return l, nil
}

// CustomerMapping implements Store: one consistent GetItem.
func (d *Dynamo) CustomerMapping(ctx context.Context, customerID string) (Mapping, error) {
	if customerID == "" {
		return Mapping{}, fmt.Errorf("ledger: customer mapping: %w: empty customer id", ErrInvalid)
	}
	av, found, err := d.get(ctx, mappingKey(customerID))
	if err != nil {
		return Mapping{}, fmt.Errorf("ledger: read mapping of customer %s: %w", customerID, err)
	}
	if !found {
		return Mapping{}, fmt.Errorf("ledger: mapping of customer %s: %w", customerID, ErrNotFound)
	}
	m, err := decodeItem(av, mappingItem.mapping)
	if err != nil {
		return Mapping{}, fmt.Errorf("ledger: mapping of customer %s: %w", customerID, err)
	}
	return m, nil
}

// MapCustomer implements Store: one conditional UpdateItem returning the new item; a conflict
// returns the existing mapping from the failed condition (ALL_OLD), without a second read.
func (d *Dynamo) MapCustomer(ctx context.Context, customerID string, leadID int64, rule string) (Mapping, error) {
	if customerID == "" || leadID <= 0 {
		return Mapping{}, fmt.Errorf("ledger: map customer %q to lead %d: %w", customerID, leadID, ErrInvalid)
	}
	upd, cond := mapUpdate(customerID, leadID, rule, formatTS(d.cfg.clock()))
	av, err := d.update(ctx, mappingKey(customerID), upd, &cond, types.ReturnValueAllNew)
	if old, failed := conditionFailed(err); failed {
		m, derr := decodeItem(old, mappingItem.mapping)
		if derr != nil {
			return Mapping{}, fmt.Errorf("ledger: map customer %s: %w", customerID, derr)
		}
		return m, fmt.Errorf("ledger: map customer %s to lead %d: mapped to lead %d by %s: %w",
			customerID, leadID, m.LeadID, m.Rule, ErrConflict)
	}
	if err != nil {
		return Mapping{}, fmt.Errorf("ledger: map customer %s to lead %d: %w", customerID, leadID, err)
	}
	m, err := decodeItem(av, mappingItem.mapping)
	if err != nil {
		return Mapping{}, fmt.Errorf("ledger: map customer %s: %w", customerID, err)
	}
	return m, nil
}
