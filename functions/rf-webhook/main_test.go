package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7"
)

func TestSetupStopsOnBadConfiguration(t *testing.T) {
	for _, k := range []string{"RF_API_TOKEN", "RF_API_TOKEN_ARN", "RF_WEBHOOK_SECRET", "RF_WEBHOOK_SECRET_ARN", "STATE_TABLE"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_REGION", "us-east-1")
	if _, err := setup(context.Background()); err == nil || !strings.Contains(err.Error(), "RF_WEBHOOK_SECRET") {
		t.Fatalf("err = %v", err)
	}
	t.Setenv("RF_API_TOKEN", "tok")
	t.Setenv("RF_WEBHOOK_SECRET", "s1,s2")
	if _, err := setup(context.Background()); err == nil || !strings.Contains(err.Error(), "STATE_TABLE") {
		t.Fatalf("without a table: %v", err)
	}
	t.Setenv("STATE_TABLE", "refbridge-state")
	t.Setenv("RF_WEBHOOK_FIELDS", "code=referral_code")
	h, err := setup(context.Background())
	if err != nil || len(h.Secrets) != 2 || h.Fields["code"] != "referral_code" {
		t.Fatalf("complete configuration: %+v %v", h, err)
	}
}

func TestTemplateDeploysThisFunction(t *testing.T) {
	tpl, err := goformation.Open("../../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fn, err := tpl.GetServerlessFunctionWithName("RfWebhookFunction")
	if err != nil {
		t.Fatal(err)
	}
	if fn.FunctionUrlConfig == nil || fn.FunctionUrlConfig.AuthType != "NONE" || fn.AWSCloudFormationMetadata["BuildMethod"] != "makefile" {
		t.Errorf("function %+v %v", fn.FunctionUrlConfig, fn.AWSCloudFormationMetadata)
	}
	if _, ok := tpl.Outputs["RfWebhookUrl"]; !ok {
		t.Error("no RfWebhookUrl output")
	}
	mk, _ := os.ReadFile("../../Makefile")
	if !strings.Contains(string(mk), "build-RfWebhookFunction:") || !strings.Contains(string(mk), "./functions/rf-webhook") {
		t.Error("Makefile has no build-RfWebhookFunction target")
	}
}
