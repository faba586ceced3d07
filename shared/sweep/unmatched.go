package sweep

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/refbridge/refbridge/shared/ledger"
	"github.com/refbridge/refbridge/shared/referrals"
)

// retryUnmatched gives each waiting paid invoice whose retry is due another chance to match a
// lead (the lead may have been created in RF after the payment), and expires those whose
// window ran out, with the reason.
func (s *Sweeper) retryUnmatched(ctx context.Context, b budget, sum *Summary) error {
	if s.Retrier == nil {
		return nil
	}
	now := s.now()
	due, err := s.Ledger.UnmatchedDue(ctx, now, unmatchedBatch)
	if err != nil {
		return fmt.Errorf("unmatched invoices: %w", err)
	}
	for _, u := range due {
		if b.short() {
			return nil
		}
		if now.After(u.RetryUntil) {
			_, err := s.Ledger.ResolveUnmatched(ctx, u.InvoiceID, ledger.UnmatchedExpired, "no lead matched before the retry window ended: "+u.Reason)
			if err != nil && !errors.Is(err, ledger.ErrConflict) {
				return fmt.Errorf("expire unmatched %s: %w", u.InvoiceID, err)
			}
			sum.UnmatchedExpired++
			continue
		}
		res, err := s.Retrier.RetryUnmatched(ctx, u)
		if err != nil {
			sum.UnmatchedRetryFailed++
			s.logger().WarnContext(ctx, "unmatched invoice retry failed; tried again next run", "invoice", u.InvoiceID, "error", err.Error())
			continue
		}
		if res.Outcome != referrals.Unmatched {
			sum.UnmatchedMatched++
			continue
		}
		_, err = s.Ledger.RescheduleUnmatched(ctx, u.InvoiceID, now.Add(cmp.Or(s.RetryEvery, defaultRetryEvery)), res.Reason)
		if errors.Is(err, ledger.ErrConflict) {
			continue // resolved meanwhile (the lead-created webhook matched it): nothing to wait for
		}
		if err != nil {
			return fmt.Errorf("reschedule unmatched %s: %w", u.InvoiceID, err)
		}
	}
	n, err := s.Ledger.UnmatchedWaitingCount(ctx)
	if err != nil {
		return fmt.Errorf("count unmatched invoices: %w", err)
	}
	sum.UnmatchedWaiting = n
	return nil
}
