package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestServeDemo(t *testing.T) {
	var out bytes.Buffer
	a, err := setup([]string{"-addr", "127.0.0.1:0", "-seed", "../../shared/rfsim/demoseed.json",
		"-token", "cli_token", "-rate", "5", "-quiet"}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + a.ln.Addr().String()
	for _, want := range []string{base + "/api/v2", "cli_token", base + "/_sim/", "curl -H 'Authorization: Bearer cli_token'"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("banner lacks %q:\n%s", want, out.String())
		}
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx) }()

	req, _ := http.NewRequestWithContext(t.Context(), "GET", base+"/api/v2/campaigns/DEMO2026", nil)
	req.Header.Set("Authorization", "Bearer cli_token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Limit") != "5" || !strings.Contains(string(body), `"code":"DEMO2026"`) {
		t.Fatalf("status %d limit %q body %s", resp.StatusCode, resp.Header.Get("X-RateLimit-Limit"), body)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestSetupErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-nope"}, "flag provided but not defined"},
		{[]string{"-addr", "127.0.0.1:0", "-seed", "missing.json"}, "read seed"},
		{[]string{"-addr", "256.0.0.1:99999"}, "listen"},
		{[]string{"-addr", "127.0.0.1:0", "-rate", "-1"}, "-rate must not be negative"},
	}
	for _, tt := range tests {
		_, err := setup(tt.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Fatalf("%v: error %v, want %q", tt.args, err, tt.want)
		}
	}
	if _, err := setup([]string{"-h"}, io.Discard, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
}
