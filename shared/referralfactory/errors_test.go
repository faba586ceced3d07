package referralfactory

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestErrorShapes(t *testing.T) {
	tests := []struct {
		name                                                       string
		status                                                     int
		header                                                     map[string]string
		body                                                       string
		wantCode                                                   int
		wantMessage                                                string
		wantFields                                                 map[string]string // field -> first message
		notFound, rateLimited, retryable, validation, unauthorized bool
		retryAfter                                                 time.Duration
	}{
		{name: "documented 422", status: 422,
			body:     `{"code":422,"message":"Validation errors in your request","errors":{"email":[{"field":"email","message":"The email field is required."}]}}`,
			wantCode: 422, wantMessage: "Validation errors in your request",
			wantFields: map[string]string{"email": "The email field is required."}, validation: true},
		{name: "422 laravel strings", status: 422,
			body:        `{"message":"The given data was invalid.","errors":{"referrer.value":["The selected referrer is invalid."],"email":"taken"}}`,
			wantMessage: "The given data was invalid.",
			wantFields:  map[string]string{"referrer.value": "The selected referrer is invalid.", "email": "taken"}, validation: true},
		{name: "422 message only (v1)", status: 422, body: `{"message":"email already exists"}`,
			wantMessage: "email already exists", validation: true},
		{name: "401", status: 401, body: `{"code":401,"message":"Unauthenticated."}`,
			wantCode: 401, wantMessage: "Unauthenticated.", unauthorized: true},
		{name: "404", status: 404, body: `{"code":404,"message":"User not found."}`,
			wantCode: 404, wantMessage: "User not found.", notFound: true},
		{name: "429 with Retry-After", status: 429, header: map[string]string{"Retry-After": "120"},
			body: `{"code":429,"message":"Too Many Attempts."}`, wantCode: 429, wantMessage: "Too Many Attempts.",
			rateLimited: true, retryable: true, retryAfter: 120 * time.Second},
		{name: "500 html page", status: 500, body: "<html>\n<body>Server   Error</body></html>",
			wantMessage: "<html> <body>Server Error</body></html>", retryable: true},
		{name: "503 empty body", status: 503, body: "", wantMessage: "Service Unavailable", retryable: true},
		{name: "non-JSON text", status: 400, body: "bad request", wantMessage: "bad request"},
		{name: "405", status: 405, body: `{"code":405,"message":"Method not allowed"}`, wantCode: 405, wantMessage: "Method not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRF(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				writeJSON(w, tt.status, tt.body)
			})
			// One attempt and a tiny MaxRetryAfter: this test is about the error, not retries.
			c := newClient(t, f.URL+"/api/v2", WithRetryPolicy(RetryPolicy{MaxAttempts: 1}))
			_, err := c.GetUser(context.Background(), "abc")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if e.StatusCode != tt.status || e.Code != tt.wantCode || e.Message != tt.wantMessage {
				t.Errorf("got status %d code %d message %q", e.StatusCode, e.Code, e.Message)
			}
			if string(e.Body) != tt.body {
				t.Errorf("raw body = %q", e.Body)
			}
			if e.Method != "GET" || e.Path != "/users/abc" {
				t.Errorf("request = %s %s", e.Method, e.Path)
			}
			for field, msg := range tt.wantFields {
				if fe := e.Fields[field]; len(fe) == 0 || fe[0].Message != msg || fe[0].Field == "" {
					t.Errorf("field %s = %+v, want %q", field, fe, msg)
				}
				if !e.HasField(strings.SplitN(field, ".", 2)[0]) {
					t.Errorf("HasField(%s) = false", field)
				}
			}
			if len(e.Fields) != len(tt.wantFields) {
				t.Errorf("fields = %+v", e.Fields)
			}
			if e.RetryAfter != tt.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, tt.retryAfter)
			}
			checks := []struct {
				name string
				got  bool
				want bool
			}{
				{"IsNotFound", IsNotFound(err), tt.notFound},
				{"IsRateLimited", IsRateLimited(err), tt.rateLimited},
				{"IsRetryable", IsRetryable(err), tt.retryable},
				{"IsValidation", IsValidation(err), tt.validation},
				{"IsUnauthorized", IsUnauthorized(err), tt.unauthorized},
				{"IsOutcomeUnknown", IsOutcomeUnknown(err), false},
			}
			for _, ch := range checks {
				if ch.got != ch.want {
					t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
				}
			}
			if !strings.Contains(err.Error(), "get user abc") || !strings.Contains(err.Error(), tt.wantMessage) {
				t.Errorf("message lacks context: %v", err)
			}
		})
	}
}

func TestTokenNeverInErrors(t *testing.T) {
	f := newFakeRF(t, func(w http.ResponseWriter, r *http.Request) {
		// A misbehaving proxy echoes the request's Authorization header.
		writeJSON(w, 401, `{"code":401,"message":"bad token `+r.Header.Get("Authorization")+`"}`)
	})
	c := newClient(t, f.URL+"/api/v2")
	_, err := c.GetUser(context.Background(), "x")
	if err == nil || strings.Contains(err.Error(), testToken) {
		t.Fatalf("err = %v", err)
	}
	var e *Error
	if !errors.As(err, &e) || strings.Contains(string(e.Body), testToken) || !strings.Contains(string(e.Body), "[REDACTED]") {
		t.Fatalf("body not redacted: %q", e.Body)
	}
}

func TestIsRetryableForNonAPIErrors(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{context.Canceled, false},
		{context.DeadlineExceeded, true},
		{ErrInvalidInput, false},
		{errors.Join(ErrOutcomeUnknown, errors.New("reset")), false},
		{&url.Error{Op: "Get", URL: "http://x", Err: context.Canceled}, false},
		{&url.Error{Op: "Get", URL: "http://x", Err: x509.UnknownAuthorityError{}}, false},
		{&url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "read", Err: errors.New("connection reset")}}, true},
	}
	for _, tt := range tests {
		if got := IsRetryable(tt.err); got != tt.want {
			t.Errorf("IsRetryable(%v) = %v", tt.err, got)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"7", 7 * time.Second}, {"-3", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
