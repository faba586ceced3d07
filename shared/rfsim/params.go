package rfsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// parseBody decodes a JSON object body. An empty body is an empty object, as Laravel treats it.
func parseBody(b []byte) (map[string]any, *Error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return map[string]any{}, nil
	}
	var v any
	if err := decodeStrict(b, &v); err != nil {
		return nil, newError(http.StatusBadRequest, msgBadJSON)
	}
	m, isObj := v.(map[string]any)
	if !isObj {
		return nil, newError(http.StatusBadRequest, "The request body must be a JSON object.")
	}
	return m, nil
}

// decodeStrict decodes one JSON value with numbers kept exact and nothing after it.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errTrailing
	}
	return nil
}

var errTrailing = errors.New("unexpected data after the JSON value")

// filled is Laravel's "present and not empty": null and blank strings count as missing, because
// Laravel converts empty strings to null before validating.
func filled(m map[string]any, key string) bool {
	v, found := m[key]
	if !found || v == nil {
		return false
	}
	if s, isStr := v.(string); isStr && strings.TrimSpace(s) == "" {
		return false
	}
	return true
}

// intValue accepts what Laravel's integer rule accepts: integral numbers and digit strings.
func intValue(v any) (int, bool) {
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.Atoi(x.String())
		return n, err == nil
	case float64:
		if x == float64(int(x)) {
			return int(x), true
		}
	case int:
		return x, true
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(x))
		return n, err == nil
	}
	return 0, false
}

// boolValue accepts what Laravel's boolean rule accepts: true, false, 1, 0, "1", "0" (and, as
// form bodies send them, "true" and "false").
func boolValue(v any) (bool, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case json.Number:
		switch x.String() {
		case "1":
			return true, true
		case "0":
			return false, true
		}
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "1", "true":
			return true, true
		case "0", "false":
			return false, true
		}
	}
	return false, false
}

// scalarString renders a JSON scalar as text (ids may arrive as numbers or strings).
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x), true
	case json.Number:
		return x.String(), true
	}
	return "", false
}

// atoi parses a path identifier: digits only.
func atoi(s string) (int, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// withRelations parses the with= query parameter (comma-separated).
func withRelations(r *http.Request) map[string]bool {
	out := map[string]bool{}
	for _, v := range r.URL.Query()["with"] {
		for _, rel := range strings.Split(v, ",") {
			if rel = strings.TrimSpace(rel); rel != "" {
				out[rel] = true
			}
		}
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }
