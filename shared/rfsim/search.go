package rfsim

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
)

// Search bodies (§2.3) look like
//
//	{"filters": {"operator": "AND", "value": [
//	    {"field": "email", "operator": "=", "value": "a@b.c"},
//	    {"operator": "OR", "value": [ ...nested... ]}]}}
//
// Only AND with "=" is documented (S16); the rest is the simulator's reading of a Laravel query
// builder over MySQL: case-insensitive string comparison, numeric comparison when both sides are
// numeric, and SQL's null semantics (a null field matches nothing but "= null" / "!= value-null").

var filterOps = map[string]bool{
	"=": true, "!=": true, "like": true, "in": true, "not in": true,
	">": true, ">=": true, "<": true, "<=": true,
}

type filterNode struct {
	// group
	op       string // "AND" or "OR"
	children []*filterNode
	// condition
	field string
	cmp   string
	value any
	like  *regexp.Regexp
}

// parseSearch reads the search body. A missing, null or empty filters object selects everything.
// fields are the searchable top-level fields of the resource.
func parseSearch(body []byte, fields map[string]bool) (*filterNode, *Error) {
	m, err := parseBody(body)
	if err != nil {
		return nil, err
	}
	raw := m["filters"]
	if raw == nil {
		return nil, nil
	}
	obj, isObj := raw.(map[string]any)
	if !isObj {
		return nil, invalid("filters", "The filters field must be an object.")
	}
	if len(obj) == 0 {
		return nil, nil
	}
	return parseGroup(obj, "filters", fields)
}

func parseGroup(obj map[string]any, path string, fields map[string]bool) (*filterNode, *Error) {
	op, _ := obj["operator"].(string)
	op = strings.ToUpper(strings.TrimSpace(op))
	if op != "AND" && op != "OR" {
		return nil, invalid(path+".operator", msgInvalid(path+".operator"))
	}
	items, isArr := obj["value"].([]any)
	if !isArr {
		return nil, invalid(path+".value", "The "+path+".value field must be an array.")
	}
	n := &filterNode{op: op}
	for i, it := range items {
		p := path + ".value." + strconv.Itoa(i)
		child, isObj := it.(map[string]any)
		if !isObj {
			return nil, invalid(p, "The "+p+" field must be an object.")
		}
		var (
			c   *filterNode
			err *Error
		)
		if _, isCond := child["field"]; isCond {
			c, err = parseCondition(child, p, fields)
		} else {
			c, err = parseGroup(child, p, fields)
		}
		if err != nil {
			return nil, err
		}
		n.children = append(n.children, c)
	}
	return n, nil
}

func parseCondition(obj map[string]any, path string, fields map[string]bool) (*filterNode, *Error) {
	field, _ := obj["field"].(string)
	if !fields[field] {
		return nil, invalid(path+".field", msgInvalid(path+".field"))
	}
	cmp, _ := obj["operator"].(string)
	cmp = strings.ToLower(strings.Join(strings.Fields(cmp), " "))
	if !filterOps[cmp] {
		return nil, invalid(path+".operator", msgInvalid(path+".operator"))
	}
	n := &filterNode{field: field, cmp: cmp, value: obj["value"]}
	_, isArr := n.value.([]any)
	_, isObj := n.value.(map[string]any)
	switch {
	case cmp == "in" || cmp == "not in":
		if !isArr {
			return nil, invalid(path+".value", "The "+path+".value field must be an array.")
		}
	case isArr || isObj:
		return nil, invalid(path+".value", "The "+path+".value field must be a scalar.")
	case cmp == "like":
		pat, isScalar := scalarString(n.value)
		if !isScalar {
			return nil, invalid(path+".value", "The "+path+".value field must be a string.")
		}
		n.like = likeRegexp(pat)
	}
	return n, nil
}

// likeRegexp translates SQL LIKE (% any run, _ one character, \ escapes) into an anchored,
// case-insensitive regular expression.
func likeRegexp(pat string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("(?is)^")
	escaped := false
	for _, r := range pat {
		switch {
		case escaped:
			b.WriteString(regexp.QuoteMeta(string(r)))
			escaped = false
		case r == '\\':
			escaped = true
		case r == '%':
			b.WriteString(".*")
		case r == '_':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

func (n *filterNode) match(obj map[string]any) bool {
	if n == nil {
		return true
	}
	if n.field == "" {
		if len(n.children) == 0 {
			return true // an empty group selects everything, like no filter
		}
		for _, c := range n.children {
			if c.match(obj) == (n.op == "OR") {
				return n.op == "OR"
			}
		}
		return n.op == "AND"
	}
	fv := unwrap(obj[n.field])
	switch n.cmp {
	case "=":
		return equal(fv, n.value)
	case "!=":
		if n.value == nil {
			return fv != nil
		}
		return fv != nil && !equal(fv, n.value)
	case "like":
		return fv != nil && n.like.MatchString(text(fv))
	case "in", "not in":
		if fv == nil {
			return false
		}
		found := false
		for _, v := range n.value.([]any) {
			if v != nil && equal(fv, v) {
				found = true
				break
			}
		}
		return found == (n.cmp == "in")
	}
	c, comparable := compare(fv, n.value)
	if !comparable {
		return false
	}
	switch n.cmp {
	case ">":
		return c > 0
	case ">=":
		return c >= 0
	case "<":
		return c < 0
	default: // "<="
		return c <= 0
	}
}

// unwrap compares RF's {label, value} pairs (reward type, recipient, method) by their value.
func unwrap(v any) any {
	if m, isObj := v.(map[string]any); isObj && len(m) == 2 {
		if val, found := m["value"]; found {
			if _, hasLabel := m["label"]; hasLabel {
				return val
			}
		}
	}
	return v
}

var numeric = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case string:
		if s := strings.TrimSpace(x); numeric.MatchString(s) {
			f, err := strconv.ParseFloat(s, 64)
			return f, err == nil
		}
	}
	return 0, false
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		if x {
			return "1"
		}
		return "0"
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func equal(a, b any) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	c, _ := compare(a, b)
	return c == 0
}

func compare(a, b any) (int, bool) {
	if a == nil || b == nil {
		return 0, false
	}
	if fa, aNum := number(a); aNum {
		if fb, bNum := number(b); bNum {
			switch {
			case fa < fb:
				return -1, true
			case fa > fb:
				return 1, true
			}
			return 0, true
		}
	}
	return strings.Compare(strings.ToLower(text(a)), strings.ToLower(text(b))), true
}

// maxSearchCache bounds searchCache: past it, the cache starts again empty.
const maxSearchCache = 1 << 16

// searchable is toMap for a search, which filters every user: the decoded object is kept by the
// JSON it was decoded from, so a search decodes only the objects whose rendering changed since
// the last one (decoding was nearly all of a search's time once a simulator held hundreds of
// users). Same JSON, same object: the filters only read it.
func (s *Server) searchable(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	key := string(b)
	s.searchMu.Lock()
	m, found := s.searchCache[key]
	s.searchMu.Unlock()
	if found {
		return m
	}
	if err := decodeStrict(b, &m); err != nil {
		return nil
	}
	s.searchMu.Lock()
	if s.searchCache == nil || len(s.searchCache) >= maxSearchCache {
		s.searchCache = map[string]map[string]any{}
	}
	s.searchCache[key] = m
	s.searchMu.Unlock()
	return m
}

// toMap renders a wire object as the generic JSON object that filters and webhooks read.
func toMap(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var m map[string]any
	if err := decodeStrict(b, &m); err != nil {
		return nil
	}
	return m
}

func fieldsOf(samples ...any) map[string]bool {
	out := map[string]bool{}
	for _, s := range samples {
		for k := range toMap(s) {
			out[k] = true
		}
	}
	return out
}
