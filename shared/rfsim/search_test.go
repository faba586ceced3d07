package rfsim_test

import (
	"slices"
	"testing"

	"github.com/refbridge/refbridge/shared/rfsim"
)

// cond and group build search filters.
func cond(field, op string, value any) map[string]any {
	return map[string]any{"field": field, "operator": op, "value": value}
}

func group(op string, items ...any) map[string]any {
	if items == nil {
		items = []any{}
	}
	return map[string]any{"operator": op, "value": items}
}

func TestSearchUsers(t *testing.T) {
	s := demo(t) // users 1-3 referrers (Alice, Bob, Carol), 4 Dave (qualified), 5 Erin (pending)
	tests := []struct {
		name    string
		filters any
		want    []int
	}{
		{"no filters", nil, []int{1, 2, 3, 4, 5}},
		{"empty filters", map[string]any{}, []int{1, 2, 3, 4, 5}},
		{"empty group", group("AND"), []int{1, 2, 3, 4, 5}},
		{"documented AND of =", group("AND", cond("email", "=", "dave@example.com"), cond("campaign_id", "=", "1")), []int{4}},
		{"= is case-insensitive", group("AND", cond("email", "=", "DAVE@EXAMPLE.COM")), []int{4}},
		{"= numeric string vs number", group("AND", cond("id", "=", "3")), []int{3}},
		{"!=", group("AND", cond("type", "!=", "person_referring")), []int{4, 5}},
		{"like prefix", group("AND", cond("email", "like", "%e@example.com")), []int{1, 4}},
		{"like underscore", group("AND", cond("first_name", "like", "_ob")), []int{2}},
		{"like is case-insensitive", group("AND", cond("code", "LIKE", "%REF")), []int{1, 2, 3}},
		{"in", group("AND", cond("id", "in", []any{1, "5", 9})), []int{1, 5}},
		{"not in", group("AND", cond("source", "not in", []any{"direct", "Referred"})), []int{2}},
		{">", group("AND", cond("id", ">", 3)), []int{4, 5}},
		{">= date", group("AND", cond("signed_up_at", ">=", "2026-01-07")), []int{3, 4, 5}},
		{"<", group("AND", cond("id", "<", "2")), []int{1}},
		{"<=", group("AND", cond("id", "<=", 2)), []int{1, 2}},
		{"= null", group("AND", cond("qualified_at", "=", nil)), []int{1, 2, 3, 5}},
		{"!= null", group("AND", cond("qualified_at", "!=", nil)), []int{4}},
		{"null never compares", group("AND", cond("referrer_id", "<", 100)), []int{4, 5}},
		{"OR", group("OR", cond("id", "=", 1), cond("email", "=", "erin@example.com")), []int{1, 5}},
		{"nested", group("AND", cond("type", "=", "person_invited"),
			group("OR", cond("referrer_id", "=", 1), cond("first_name", "=", "nobody"))), []int{4}},
		{"lower-case group operator", group("or", cond("id", "=", 2), cond("id", "=", 3)), []int{2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := map[string]any{}
			if tt.filters != nil {
				body["filters"] = tt.filters
			}
			r := s.Do(t, "POST", "/users/search", body)
			wantStatus(t, r, 200)
			var p page[rfsim.User]
			r.Decode(t, &p)
			var ids []int
			for _, u := range p.Data {
				ids = append(ids, u.ID)
			}
			if !slices.Equal(ids, tt.want) {
				t.Fatalf("ids %v, want %v", ids, tt.want)
			}
		})
	}
}

func TestSearchValidation(t *testing.T) {
	s := demo(t)
	tests := []struct {
		name    string
		filters any
		field   string
	}{
		{"unknown operator", group("AND", cond("email", "~", "x")), "filters.value.0.operator"},
		{"missing operator", group("AND", map[string]any{"field": "email", "value": "x"}), "filters.value.0.operator"},
		{"bad group operator", group("XOR", cond("email", "=", "x")), "filters.operator"},
		{"nested bad group", group("AND", group("NAND")), "filters.value.0.operator"},
		{"group value not array", map[string]any{"operator": "AND", "value": "x"}, "filters.value"},
		{"item not object", group("AND", "email"), "filters.value.0"},
		{"unknown field", group("AND", cond("password", "=", "x")), "filters.value.0.field"},
		{"in without array", group("AND", cond("id", "in", 1)), "filters.value.0.value"},
		{"= with array", group("AND", cond("id", "=", []any{1})), "filters.value.0.value"},
		{"filters not object", []any{cond("id", "=", 1)}, "filters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantInvalid(t, s.Do(t, "POST", "/users/search", map[string]any{"filters": tt.filters}), tt.field)
		})
	}
}

func TestSearchOtherResources(t *testing.T) {
	s := demo(t)
	tests := []struct {
		path    string
		filters any
		wantIDs []int
	}{
		{"/campaigns/search", group("AND", cond("code", "=", "demo2026")), []int{1}},
		{"/campaigns/search", group("AND", cond("status", "=", "paused")), nil},
		{"/rewards/dashboard/amount/search", group("AND", cond("recipient", "=", "person_referring")), []int{1}},
		{"/rewards/dashboard/coupon/search", group("AND", cond("recipient", "=", "person_referring")), nil},
		{"/rewards/due/amount/search", group("AND", cond("recipient_id", "=", 1)), []int{1}},
		{"/rewards/due/coupon/search", group("AND", cond("coupon", "like", "welcome-%")), []int{3}},
		{"/rewards/issued/coupon/search", group("AND", cond("status", "in", []any{"Issued", "Sent"})), []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := s.Do(t, "POST", tt.path, map[string]any{"filters": tt.filters})
			wantStatus(t, r, 200)
			var p page[struct{ ID int }]
			r.Decode(t, &p)
			var ids []int
			for _, it := range p.Data {
				ids = append(ids, it.ID)
			}
			if !slices.Equal(ids, tt.wantIDs) {
				t.Fatalf("ids %v, want %v", ids, tt.wantIDs)
			}
		})
	}
	// Fields follow the metric: amount rewards have no coupon to search on.
	wantInvalid(t, s.Do(t, "POST", "/rewards/due/amount/search",
		map[string]any{"filters": group("AND", cond("coupon", "=", "x"))}), "filters.value.0.field")
}

// Decisions 8 and 12: a code is a case-sensitive identifier for GET /users/{code}, while search
// compares text case-insensitively, as MySQL's default collation does, codes included.
func TestCodeCaseLookupVersusSearch(t *testing.T) {
	s := demo(t)
	wantStatus(t, s.Do(t, "GET", "/users/aLiCeRef", nil), 200)
	wantStatus(t, s.Do(t, "GET", "/users/ALICEREF", nil), 404)
	r := s.Do(t, "POST", "/users/search", map[string]any{"filters": map[string]any{"operator": "AND",
		"value": []any{map[string]any{"field": "code", "operator": "=", "value": "ALICEREF"}}}})
	wantStatus(t, r, 200)
	var p page[rfsim.User]
	r.Decode(t, &p)
	if len(p.Data) != 1 || p.Data[0].Code != "aLiCeRef" {
		t.Fatalf("search by code in another case: %s", r.Body)
	}
}

// A search sees a user as it is now: what searches keep between them (the decoded objects, by
// their JSON) never outlives a change.
func TestSearchSeesChangesSinceTheLastSearch(t *testing.T) {
	s := demo(t)
	qualified := map[string]any{"filters": group("AND", cond("qualified_at", "!=", nil))}
	ids := func() []int {
		t.Helper()
		r := s.Do(t, "POST", "/users/search", qualified)
		wantStatus(t, r, 200)
		var p page[rfsim.User]
		r.Decode(t, &p)
		var out []int
		for _, u := range p.Data {
			out = append(out, u.ID)
		}
		return out
	}
	if got := ids(); !slices.Equal(got, []int{4}) {
		t.Fatalf("before: %v", got)
	}
	if _, err := s.Server.Qualify(rfsim.UserRef{ID: 5}, true); err != nil {
		t.Fatal(err)
	}
	if got := ids(); !slices.Equal(got, []int{4, 5}) {
		t.Fatalf("after Erin qualified: %v", got)
	}
	if _, err := s.Server.Qualify(rfsim.UserRef{ID: 4}, false); err != nil {
		t.Fatal(err)
	}
	if got := ids(); !slices.Equal(got, []int{5}) {
		t.Fatalf("after Dave unqualified: %v", got)
	}
}
