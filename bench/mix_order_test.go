package bench

import "testing"

// The mix has the proportions, and every event comes after what it depends on: a
// customer's first invoice before its renewals, a payment before its refund, an event before
// its redelivery, and nothing paid by a customer after its refund.
func TestMixProportionsAndOrder(t *testing.T) {
	m, err := newMix(fixture(t, mixInvoice), fixture(t, mixRefund), 10000, 1)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	paid := map[*customer]int{} // invoices paid so far
	refunded := map[*customer]bool{}
	seen := map[int]bool{} // event numbers delivered so far
	for i, ev := range m.events {
		count[ev.class]++
		switch {
		case ev.class == ClassDuplicate:
			if !seen[ev.seq] {
				t.Fatalf("event %d: a redelivery of event %d before it", i, ev.seq)
			}
		case ev.refund:
			if ev.invoice > paid[ev.customer] {
				t.Fatalf("event %d: refund of invoice %d of %s, which paid %d", i, ev.invoice, ev.customer.id, paid[ev.customer])
			}
			refunded[ev.customer] = true
		default:
			if refunded[ev.customer] {
				t.Fatalf("event %d: %s pays after its refund", i, ev.customer.id)
			}
			if ev.invoice != paid[ev.customer]+1 {
				t.Fatalf("event %d: invoice %d of %s after %d", i, ev.invoice, ev.customer.id, paid[ev.customer])
			}
			paid[ev.customer] = ev.invoice
		}
		seen[ev.seq] = true
	}
	want := map[string]int{ClassFirstReferred: 500, ClassFirstNotReferred: 1500, ClassDuplicate: 500}
	for c, n := range want {
		if count[c] != n {
			t.Errorf("%s: %d, want %d", c, count[c], n)
		}
	}
	if r := count[ClassRenewalReferred] + count[ClassRenewalNot]; r != 7000 {
		t.Errorf("renewals: %d, want 7000", r)
	}
	if r := count[ClassRefundReferred] + count[ClassRefundNot]; r != 500 {
		t.Errorf("refunds: %d, want 500", r)
	}
}
