package ledger

import (
	"context"
	"fmt"
	"math/rand/v2"
)

// SaveCheckpoint implements Store: one PutItem (last writer wins: the sweep holds a lease).
func (d *Dynamo) SaveCheckpoint(ctx context.Context, name string, data []byte) error {
	if name == "" {
		return fmt.Errorf("ledger: save checkpoint: %w: empty name", ErrInvalid)
	}
	k := checkpointKey(name)
	if data == nil {
		data = []byte{} // a nil []byte would be stored as NULL and read back as missing data
	}
	it := checkpointItem{ID: k.id, SK: k.sk, Type: typeCheckpoint, Name: name, Data: data,
		SavedAt: formatTS(d.cfg.clock())}
	if err := d.put(ctx, it, nil); err != nil {
		return fmt.Errorf("ledger: save checkpoint %s: %w", name, err)
	}
	return nil
}

// LoadCheckpoint implements Store: one consistent GetItem.
func (d *Dynamo) LoadCheckpoint(ctx context.Context, name string) ([]byte, error) {
	av, found, err := d.get(ctx, checkpointKey(name))
	if err != nil {
		return nil, fmt.Errorf("ledger: load checkpoint %s: %w", name, err)
	}
	if !found {
		return nil, fmt.Errorf("ledger: checkpoint %s: %w", name, ErrNotFound)
	}
	var it checkpointItem
	if err := decodeAV(av, &it); err != nil {
		return nil, fmt.Errorf("ledger: checkpoint %s: %w", name, err)
	}
	if it.Data == nil {
		it.Data = []byte{}
	}
	return it.Data, nil
}

// LogDecision implements Store: one PutItem. The sort key is the time plus a random nonce, so
// two decisions at the same instant are both kept.
func (d *Dynamo) LogDecision(ctx context.Context, dec Decision) error {
	dec, err := d.cfg.decision(dec)
	if err != nil {
		return err
	}
	it := decisionItem{
		ID: decisionPK(dec.Subject), SK: fmt.Sprintf("%s%s#%016x", decSKPrefix, formatTS(dec.At), rand.Uint64()),
		Type: typeDecision, Subject: dec.Subject, At: formatTS(dec.At), Rule: dec.Rule,
		Outcome: dec.Outcome, Reason: dec.Reason, Inputs: dec.Inputs, Expiration: dec.ExpiresAt.Unix(),
	}
	if err := d.put(ctx, it, nil); err != nil {
		return fmt.Errorf("ledger: log decision on %s: %w", dec.Subject, err)
	}
	return nil
}

// Decisions implements Store: one consistent Query of the subject's partition, oldest first.
// Entries past their expiration are dropped here: TTL deletes them only eventually.
func (d *Dynamo) Decisions(ctx context.Context, subject string) ([]Decision, error) {
	if subject == "" {
		return nil, fmt.Errorf("ledger: decisions: %w: empty subject", ErrInvalid)
	}
	items, err := d.queryPartition(ctx, decisionPK(subject), decSKPrefix, true, 0)
	if err != nil {
		return nil, fmt.Errorf("ledger: decisions on %s: %w", subject, err)
	}
	now := d.cfg.clock().Unix()
	var out []Decision
	for _, av := range items {
		var it decisionItem
		if err := decodeAV(av, &it); err != nil {
			return nil, fmt.Errorf("ledger: decisions on %s: %w", subject, err)
		}
		if it.Expiration <= now {
			continue
		}
		at, err := parseTS(it.At)
		if err != nil {
			return nil, fmt.Errorf("ledger: decisions on %s: %w", subject, err)
		}
		out = append(out, Decision{Subject: it.Subject, At: at, Rule: it.Rule, Outcome: it.Outcome,
			Reason: it.Reason, Inputs: it.Inputs, ExpiresAt: unixUTC(it.Expiration)})
	}
	return out, nil
}
