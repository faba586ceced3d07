package rfsim

import (
	"fmt"
	"net/http"
	"strings"
)

// Error is both the simulator's error value and RF's error body:
// {"code": <status>, "message": "...", "errors": {field: [{field, message}]}}.
// Errors is only set for 422 validation failures, in RF's documented shape (an array of
// {field, message} objects per field, not Laravel's array of strings).
type Error struct {
	Code    int                     `json:"code"`
	Message string                  `json:"message"`
	Errors  map[string][]FieldError `json:"errors,omitempty"`
}

// FieldError is one validation message for one field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if len(e.Errors) == 0 {
		return fmt.Sprintf("rfsim: %d %s", e.Code, e.Message)
	}
	var parts []string
	for _, fes := range e.Errors {
		for _, fe := range fes {
			parts = append(parts, fe.Message)
		}
	}
	return fmt.Sprintf("rfsim: %d %s: %s", e.Code, e.Message, strings.Join(parts, "; "))
}

// Messages the simulator uses. RF documents only the 422 example; the rest mirror Laravel's
// wording, which RF's 422 body already follows.
const (
	msgValidation      = "Validation errors in your request"
	msgUnauthenticated = "Unauthenticated."
	msgNotFound        = "Not found."
	msgMethod          = "Method not allowed."
	msgNotAcceptable   = "Only JSON responses are supported."
	msgTooMany         = "Too Many Attempts."
	msgBadJSON         = "The request body is not valid JSON."
	msgTooLarge        = "The request body is too large."
	msgUserNotFound    = "User not found."
	msgCampaignMissing = "Campaign not found."
	msgRewardNotFound  = "Reward not found."
	msgOnlyLeads       = "Only referred users (leads) can be qualified."
	msgNotDue          = "This reward is not due."
	msgCannotIssue     = "This reward cannot be issued."
)

func newError(code int, msg string) *Error { return &Error{Code: code, Message: msg} }

// validation collects field errors the way Laravel's validator does: every field is checked and
// all failures come back in one 422.
type validation struct {
	errs map[string][]FieldError
}

func (v *validation) add(field, msg string) {
	if v.errs == nil {
		v.errs = map[string][]FieldError{}
	}
	v.errs[field] = append(v.errs[field], FieldError{Field: field, Message: msg})
}

func (v *validation) has(field string) bool { return len(v.errs[field]) > 0 }

// err returns the 422 to send, or nil when every field passed.
func (v *validation) err() *Error {
	if len(v.errs) == 0 {
		return nil
	}
	return &Error{Code: http.StatusUnprocessableEntity, Message: msgValidation, Errors: v.errs}
}

func invalid(field, msg string) *Error {
	var v validation
	v.add(field, msg)
	return v.err()
}

// attr is Laravel's display name for a field: snake_case becomes words, dotted paths stay.
func attr(field string) string { return strings.ReplaceAll(field, "_", " ") }

func msgRequired(field string) string { return "The " + attr(field) + " field is required." }
func msgInvalid(field string) string  { return "The selected " + attr(field) + " is invalid." }
func msgInteger(field string) string  { return "The " + attr(field) + " field must be an integer." }
func msgString(field string) string   { return "The " + attr(field) + " field must be a string." }
func msgBoolean(field string) string  { return "The " + attr(field) + " field must be true or false." }
