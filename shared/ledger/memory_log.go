package ledger

import (
	"context"
	"fmt"
	"maps"
	"slices"
)

// SaveCheckpoint implements Store.
func (m *Memory) SaveCheckpoint(ctx context.Context, name string, data []byte) error {
	if name == "" {
		return fmt.Errorf("ledger: save checkpoint: %w: empty name", ErrInvalid)
	}
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.checkpoints[name] = append([]byte{}, data...)
	return nil
}

// LoadCheckpoint implements Store.
func (m *Memory) LoadCheckpoint(ctx context.Context, name string) ([]byte, error) {
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	data, ok := m.checkpoints[name]
	if !ok {
		return nil, fmt.Errorf("ledger: checkpoint %s: %w", name, ErrNotFound)
	}
	return append([]byte{}, data...), nil
}

// LogDecision implements Store.
func (m *Memory) LogDecision(ctx context.Context, d Decision) error {
	d, err := m.cfg.decision(d)
	if err != nil {
		return err
	}
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.decisions[d.Subject] = append(m.decisions[d.Subject], d)
	return nil
}

// Decisions implements Store; expired entries are dropped as they are found, as TTL would.
func (m *Memory) Decisions(ctx context.Context, subject string) ([]Decision, error) {
	if subject == "" {
		return nil, fmt.Errorf("ledger: decisions: %w: empty subject", ErrInvalid)
	}
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	now := m.cfg.clock().Unix()
	kept := m.decisions[subject][:0]
	for _, d := range m.decisions[subject] {
		if d.ExpiresAt.Unix() > now {
			kept = append(kept, d)
		}
	}
	m.decisions[subject] = kept
	out := make([]Decision, len(kept))
	for i, d := range kept {
		d.Inputs = maps.Clone(d.Inputs)
		out[i] = d
	}
	slices.SortStableFunc(out, func(a, b Decision) int { return a.At.Compare(b.At) })
	return out, nil
}
