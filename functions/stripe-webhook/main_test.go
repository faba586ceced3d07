package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7"
)

func TestSetupStopsOnBadConfiguration(t *testing.T) {
	for _, k := range []string{"RF_API_TOKEN", "RF_API_TOKEN_ARN", "STRIPE_WEBHOOK_SECRETS", "STRIPE_WEBHOOK_SECRETS_ARN", "STATE_TABLE"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_REGION", "us-east-1")
	_, err := setup(context.Background())
	if err == nil || !strings.Contains(err.Error(), "RF_API_TOKEN") || !strings.Contains(err.Error(), "STRIPE_WEBHOOK_SECRETS") {
		t.Fatalf("err = %v", err)
	}
	t.Setenv("RF_API_TOKEN", "tok")
	t.Setenv("STRIPE_WEBHOOK_SECRETS", "whsec_1")
	if _, err := setup(context.Background()); err == nil || !strings.Contains(err.Error(), "STATE_TABLE") {
		t.Fatalf("without a table: %v", err)
	}
	t.Setenv("STATE_TABLE", "refbridge-state")
	if h, err := setup(context.Background()); err != nil || h == nil || len(h.Secrets) != 1 {
		t.Fatalf("complete configuration: %v", err)
	}
}

// TestTemplateDeploysThisFunction checks the SAM resource that builds and exposes this function.
func TestTemplateDeploysThisFunction(t *testing.T) {
	tpl, err := goformation.Open("../../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fn, err := tpl.GetServerlessFunctionWithName("StripeWebhookFunction")
	if err != nil {
		t.Fatal(err)
	}
	if fn.FunctionUrlConfig == nil || fn.FunctionUrlConfig.AuthType != "NONE" {
		t.Errorf("Function URL %+v", fn.FunctionUrlConfig)
	}
	if fn.AWSCloudFormationMetadata["BuildMethod"] != "makefile" {
		t.Errorf("metadata %v", fn.AWSCloudFormationMetadata)
	}
	if _, ok := tpl.Outputs["StripeWebhookUrl"]; !ok {
		t.Error("no StripeWebhookUrl output")
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), "build-StripeWebhookFunction:") || !strings.Contains(string(mk), "./functions/stripe-webhook") {
		t.Error("Makefile has no build-StripeWebhookFunction target for SAM")
	}
	raw, _ := os.ReadFile("../../template.yaml")
	for _, want := range []string{"Runtime: provided.al2023", "Architectures: [arm64]", "Handler: bootstrap"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("template Globals lack %q", want)
		}
	}
}
