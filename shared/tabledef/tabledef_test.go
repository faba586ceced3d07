package tabledef

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation/policies"
)

func TestLoadStateTable(t *testing.T) {
	path, err := FindTemplate()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Load(path, StateTable)
	if err != nil {
		t.Fatal(err)
	}
	if d.TTLAttribute != "expiration" || len(d.Create.KeySchema) != 2 || aws.ToString(d.Create.KeySchema[0].AttributeName) != "id" {
		t.Fatalf("definition %+v", d)
	}
	if len(d.Create.GlobalSecondaryIndexes) != 1 || len(d.Create.AttributeDefinitions) != 4 {
		t.Fatalf("GSIs/attributes %+v", d.Create)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, yaml string }{
		{"no such resource", "Resources:\n  Other:\n    Type: AWS::SQS::Queue\n"},
		{"provisioned", "Resources:\n  StateTable:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      BillingMode: PROVISIONED\n      KeySchema:\n        - AttributeName: id\n          KeyType: HASH\n"},
		{"not yaml", "::: nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name+".yaml")
			if err := os.WriteFile(p, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(p, StateTable); err == nil {
				t.Fatal("no error")
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), StateTable); err == nil {
		t.Fatal("missing file: no error")
	}
}

// TestStateTableIsProductionGrade pins what issue 3 asks of the deployed table; CreateTable
// cannot carry these, so they are checked on the template itself.
func TestStateTableIsProductionGrade(t *testing.T) {
	path, err := FindTemplate()
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := goformation.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := tpl.GetDynamoDBTableWithName(StateTable)
	if err != nil {
		t.Fatal(err)
	}
	if tb.AWSCloudFormationDeletionPolicy != policies.DeletionPolicy("Retain") || tb.AWSCloudFormationUpdateReplacePolicy != policies.UpdateReplacePolicy("Retain") {
		t.Errorf("deletion/update-replace policy %q/%q, want Retain", tb.AWSCloudFormationDeletionPolicy, tb.AWSCloudFormationUpdateReplacePolicy)
	}
	if p := tb.PointInTimeRecoverySpecification; p == nil || p.PointInTimeRecoveryEnabled == nil || !*p.PointInTimeRecoveryEnabled {
		t.Error("point-in-time recovery is off")
	}
	if s := tb.SSESpecification; s == nil || !s.SSEEnabled {
		t.Error("server-side encryption is off")
	}
	if aws.ToString(tb.BillingMode) != "PAY_PER_REQUEST" {
		t.Errorf("billing mode %q", aws.ToString(tb.BillingMode))
	}
}
