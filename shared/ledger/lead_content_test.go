package ledger

import (
	"reflect"
	"testing"
	"time"
)

// sameContent must see a change to any field but UpdatedAt, including fields added later: the
// loop walks Lead's fields by reflection, so a new field is checked without editing this test.
func TestLeadSameContentSeesEveryField(t *testing.T) {
	base := Lead{ID: 1, Code: "C", EmailHash: HashEmail("a@example.com"), EmailMasked: "a***@example.com",
		ReferrerID: 2, CampaignID: 3, SignedUpAt: time.Date(2026, 2, 1, 9, 0, 0, 5, time.UTC),
		Source: SourceSignup, StripeCustomerID: "cus_1", UpdatedAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	typ := reflect.TypeFor[Lead]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		changed := base
		v := reflect.ValueOf(&changed).Elem().Field(i)
		switch {
		case f.Type == reflect.TypeFor[time.Time]():
			v.Set(reflect.ValueOf(v.Interface().(time.Time).Add(time.Nanosecond)))
		case v.Kind() == reflect.String:
			v.SetString(v.String() + "x")
		case v.CanInt():
			v.SetInt(v.Int() + 1)
		default:
			t.Fatalf("Lead.%s (%s): teach this test to change it", f.Name, f.Type)
		}
		if want := f.Name == "UpdatedAt"; base.sameContent(changed) != want {
			t.Errorf("changing only Lead.%s: sameContent = %v, want %v", f.Name, !want, want)
		}
	}

	// The same instant in another zone, or with a monotonic reading, is the same content.
	other := base
	other.SignedUpAt = base.SignedUpAt.In(time.FixedZone("X", 3600))
	if !base.sameContent(other) {
		t.Error("SignedUpAt in another zone counts as a change")
	}
	now := time.Now()
	a, b := base, base
	a.SignedUpAt, b.SignedUpAt = now, now.Round(0).UTC()
	if !a.sameContent(b) {
		t.Error("a monotonic reading counts as a change")
	}
}
