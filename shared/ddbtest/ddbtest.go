// Package ddbtest gives tests a real DynamoDB API: AWS's DynamoDB Local, which `make test` and
// .ci/run start (scripts/dynamodb-local) and announce in DYNAMODB_TEST_ENDPOINT. Each test gets
// its own uniquely named table, created from template.yaml's definition and deleted afterwards.
//
// Without the endpoint a test is skipped on a developer's machine and FAILS under CI (CI=true):
// a skipped state test proves nothing.
package ddbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/refbridge/refbridge/shared/tabledef"
)

// EndpointEnv names the variable holding DynamoDB Local's URL. It is deliberately not
// AWS_ENDPOINT_URL_DYNAMODB: tests create and delete tables, and must never reach a real account.
const EndpointEnv = "DYNAMODB_TEST_ENDPOINT"

var (
	defOnce sync.Once
	def     tabledef.Definition
	defErr  error
)

// Client returns a DynamoDB client for DynamoDB Local, or skips (fails under CI) without one.
func Client(t testing.TB) *dynamodb.Client {
	t.Helper()
	endpoint := os.Getenv(EndpointEnv)
	if endpoint == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: under CI the tests must run against DynamoDB Local (use `make test`)", EndpointEnv)
		}
		t.Skipf("%s is not set: run `make test` to start DynamoDB Local", EndpointEnv)
	}
	if !strings.HasPrefix(endpoint, "http://127.0.0.1:") && !strings.HasPrefix(endpoint, "http://localhost:") {
		t.Fatalf("%s=%s: only a loopback DynamoDB Local is allowed in tests", EndpointEnv, endpoint)
	}
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
		// aws/aws-sdk-go-v2#3545: DynamoDB Local's error responses fail the checksum check.
		DisableValidateResponseChecksum: true,
	})
}

// Table creates a fresh table from template.yaml's StateTable and returns the client and its
// name; the table is deleted when the test ends.
func Table(t testing.TB) (*dynamodb.Client, string) {
	t.Helper()
	db := Client(t)
	defOnce.Do(func() {
		var path string
		if path, defErr = tabledef.FindTemplate(); defErr == nil {
			def, defErr = tabledef.Load(path, tabledef.StateTable)
		}
	})
	if defErr != nil {
		t.Fatalf("ddbtest: %v", defErr)
	}
	name := "refbridge-test-" + randomSuffix()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := tabledef.Create(ctx, db, def, name); err != nil {
		t.Fatalf("ddbtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)}); err != nil {
			t.Errorf("ddbtest: delete table %s: %v", name, err)
		}
	})
	return db, name
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
