// Package tabledef reads refbridge's DynamoDB table definition from template.yaml, the one place
// it is written down, so that tests and local tools create exactly the table that SAM deploys.
package tabledef

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/awslabs/goformation/v7"
	cfn "github.com/awslabs/goformation/v7/cloudformation/dynamodb"
)

// StateTable is the logical id of the state table in template.yaml.
const StateTable = "StateTable"

// Definition is what it takes to create the table: the CreateTable input (without a name) and
// the TTL attribute, which DynamoDB sets with a separate call.
type Definition struct {
	Create       dynamodb.CreateTableInput
	TTLAttribute string
}

// Load reads the table resource logicalID from the SAM template at path.
func Load(path, logicalID string) (Definition, error) {
	tpl, err := goformation.Open(path)
	if err != nil {
		return Definition{}, fmt.Errorf("read template %s: %w", path, err)
	}
	tb, err := tpl.GetDynamoDBTableWithName(logicalID)
	if err != nil {
		return Definition{}, fmt.Errorf("template %s: %w", path, err)
	}
	var d Definition
	in := &d.Create
	for _, a := range tb.AttributeDefinitions {
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{
			AttributeName: aws.String(a.AttributeName), AttributeType: types.ScalarAttributeType(a.AttributeType)})
	}
	in.KeySchema = keySchema(tb.KeySchema)
	for _, g := range tb.GlobalSecondaryIndexes {
		p := types.Projection{ProjectionType: types.ProjectionTypeAll}
		if g.Projection != nil {
			if g.Projection.ProjectionType != nil {
				p.ProjectionType = types.ProjectionType(*g.Projection.ProjectionType)
			}
			p.NonKeyAttributes = g.Projection.NonKeyAttributes
		}
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, types.GlobalSecondaryIndex{
			IndexName: aws.String(g.IndexName), KeySchema: keySchema(g.KeySchema), Projection: &p})
	}
	in.BillingMode = types.BillingModePayPerRequest
	if tb.BillingMode != nil {
		in.BillingMode = types.BillingMode(*tb.BillingMode)
	}
	if in.BillingMode != types.BillingModePayPerRequest {
		return Definition{}, fmt.Errorf("template %s: table %s: billing mode %s is not supported", path, logicalID, in.BillingMode)
	}
	if ttl := tb.TimeToLiveSpecification; ttl != nil && ttl.Enabled && ttl.AttributeName != nil {
		d.TTLAttribute = *ttl.AttributeName
	}
	if len(in.KeySchema) == 0 {
		return Definition{}, fmt.Errorf("template %s: table %s has no key schema", path, logicalID)
	}
	return d, nil
}

func keySchema(ks []cfn.Table_KeySchema) []types.KeySchemaElement {
	out := make([]types.KeySchemaElement, 0, len(ks))
	for _, k := range ks {
		out = append(out, types.KeySchemaElement{AttributeName: aws.String(k.AttributeName), KeyType: types.KeyType(k.KeyType)})
	}
	return out
}

// FindTemplate walks up from the working directory to the module root and returns its
// template.yaml (tests run in their package's folder).
func FindTemplate() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "template.yaml"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("template.yaml: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Create makes the table named name from d and enables its TTL, then waits until it is active.
func Create(ctx context.Context, db *dynamodb.Client, d Definition, name string) error {
	in := d.Create
	in.TableName = aws.String(name)
	if _, err := db.CreateTable(ctx, &in); err != nil {
		return fmt.Errorf("create table %s: %w", name, err)
	}
	w := dynamodb.NewTableExistsWaiter(db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 50*time.Millisecond, 500*time.Millisecond
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 2*time.Minute); err != nil {
		return fmt.Errorf("wait for table %s: %w", name, err)
	}
	if d.TTLAttribute != "" {
		_, err := db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String(name),
			TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(d.TTLAttribute), Enabled: aws.Bool(true)}})
		if err != nil {
			return fmt.Errorf("enable TTL on %s: %w", name, err)
		}
	}
	return nil
}
