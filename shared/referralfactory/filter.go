package referralfactory

import "encoding/json"

// Filter is a search filter: either a condition on one field or a group of filters joined by
// AND or OR. RF documents the AND group of "=" conditions (it is what working client code
// sends); other operators are passed through as given.
type Filter struct {
	field    string
	operator string
	value    any
	items    []Filter
}

// Where is the condition `field operator value`, e.g. Where("email", "=", "a@b.c").
func Where(field, operator string, value any) Filter {
	return Filter{field: field, operator: operator, value: value}
}

// Eq is Where(field, "=", value).
func Eq(field string, value any) Filter { return Where(field, "=", value) }

// And joins filters with AND.
func And(fs ...Filter) Filter { return Filter{operator: "AND", items: fs} }

// Or joins filters with OR.
func Or(fs ...Filter) Filter { return Filter{operator: "OR", items: fs} }

func (f Filter) isGroup() bool { return f.field == "" }

// group returns f as a top-level group, which is the shape RF's search body takes.
func (f Filter) group() Filter {
	if f.isGroup() {
		return f
	}
	return And(f)
}

// MarshalJSON writes {"operator","value":[...]} for a group and {"field","operator","value"}
// for a condition.
func (f Filter) MarshalJSON() ([]byte, error) {
	if f.isGroup() {
		items := f.items
		if items == nil {
			items = []Filter{}
		}
		return json.Marshal(struct {
			Operator string   `json:"operator"`
			Value    []Filter `json:"value"`
		}{f.operator, items})
	}
	return json.Marshal(struct {
		Field    string `json:"field"`
		Operator string `json:"operator"`
		Value    any    `json:"value"`
	}{f.field, f.operator, f.value})
}

type searchBody struct {
	Filters Filter `json:"filters"`
}
