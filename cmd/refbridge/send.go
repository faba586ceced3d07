package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v79/webhook"

	"github.com/refbridge/refbridge/shared/rfevents"
)

// send POSTs a sample event to a running server, as its sender would: a Stripe event signed
// with the first STRIPE_WEBHOOK_SECRETS and a fresh timestamp; an RF webhook body with the
// first RF_WEBHOOK_SECRET in X-Webhook-Secret, to /rf/webhook/<kind> (the kind is the file's
// name); a sweep payload to /sweep.
func send(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:8080", "the refbridge server")
	newID := fs.Bool("new-id", false, "give a Stripe event a fresh id, so the server treats it as a new event rather than a redelivery")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: refbridge send [-url URL] [-new-id] FILE\n\nFILE is a sample event, e.g. events/stripe/invoice.paid.2024-06-20.json,\nevents/rf/lead-created.form or events/sweep/dry-run.json.\n\n")
		fs.PrintDefaults()
	}
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usageError{fmt.Errorf("send: want one FILE, got %d", fs.NArg())}
	}
	file := fs.Arg(0)
	body, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	path, hdr, body, err := prepare(file, body, getenv, *newID)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(*base, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 15 * time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	fmt.Fprintf(stdout, "POST %s → %d\n%s\n", path, resp.StatusCode, bytes.TrimSpace(out))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("the server answered %d", resp.StatusCode)
	}
	return nil
}

// prepare tells what a sample is from its content and name, and returns where to POST it,
// with which headers and body.
func prepare(file string, body []byte, getenv func(string) string, newID bool) (string, map[string]string, []byte, error) {
	name := filepath.Base(file)
	ext := filepath.Ext(name)
	var probe struct {
		Object string `json:"object"`
	}
	isJSON := json.Unmarshal(body, &probe) == nil
	switch {
	case isJSON && probe.Object == "event":
		secret := first(getenv("STRIPE_WEBHOOK_SECRETS"))
		if secret == "" {
			return "", nil, nil, fmt.Errorf("send: STRIPE_WEBHOOK_SECRETS is unset: the event must be signed with the server's secret")
		}
		if newID {
			var ev map[string]any
			if err := json.Unmarshal(body, &ev); err != nil {
				return "", nil, nil, err
			}
			ev["id"] = fmt.Sprintf("evt_send_%d", time.Now().UnixNano())
			var err error
			if body, err = json.Marshal(ev); err != nil {
				return "", nil, nil, err
			}
		}
		sig := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: time.Now()})
		return "/stripe/webhook", map[string]string{"Content-Type": "application/json", "Stripe-Signature": sig.Header}, body, nil
	case isKind(strings.TrimSuffix(name, ext)):
		secret := first(getenv("RF_WEBHOOK_SECRET"))
		if secret == "" {
			return "", nil, nil, fmt.Errorf("send: RF_WEBHOOK_SECRET is unset: the server would answer 401")
		}
		ct := "application/json"
		if ext == ".form" {
			ct = "application/x-www-form-urlencoded"
		}
		return "/rf/webhook/" + strings.TrimSuffix(name, ext), map[string]string{"Content-Type": ct, "X-Webhook-Secret": secret}, body, nil
	case isJSON && filepath.Base(filepath.Dir(file)) == "sweep":
		return "/sweep", map[string]string{"Content-Type": "application/json"}, body, nil
	}
	return "", nil, nil, usageError{fmt.Errorf("send: %s is neither a Stripe event, an RF webhook body (<kind>.json or <kind>.form) nor a sweep payload (events/sweep/)", file)}
}

func isKind(s string) bool {
	_, ok := rfevents.KindFromPath("/rf/webhook/" + s)
	return ok
}

// first is the first value of a comma-separated list (the newest secret during a rotation).
func first(list string) string {
	v, _, _ := strings.Cut(list, ",")
	return strings.TrimSpace(v)
}
