package wiring

import (
	"context"
	"errors"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/refbridge/refbridge/shared/observe"
	rf "github.com/refbridge/refbridge/shared/referralfactory"
)

// rfMetrics counts every Referral Factory attempt, its latency, its 429s and its failures.
func rfMetrics(m *observe.Metrics) rf.Option {
	return rf.WithObserver(func(ctx context.Context, a rf.Attempt) {
		values := []observe.Value{
			{Name: "RFCalls", Value: 1},
			{Name: "RFLatency", Value: float64(a.Duration.Milliseconds()), Unit: observe.UnitMilliseconds},
		}
		switch {
		case a.Status == http.StatusTooManyRequests:
			values = append(values, observe.Value{Name: "RFRateLimited", Value: 1})
		case a.Status == 0 || a.Status >= 500:
			values = append(values, observe.Value{Name: "RFErrors", Value: 1})
		}
		m.Emit(ctx, values)
	})
}

// ddbMetrics counts, after the SDK's own retries, the DynamoDB requests that ended in a
// condition or transaction conflict (expected under contention: duplicates and races are
// refused by conditions — a rise means hot keys), in throttling, or in another error.
func ddbMetrics(m *observe.Metrics) func(*dynamodb.Options) {
	mw := middleware.InitializeMiddlewareFunc("refbridgeMetrics", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		out, md, err := next.HandleInitialize(ctx, in)
		if name := ddbErrorMetric(err); name != "" {
			m.Count(ctx, name, 1)
		}
		return out, md, err
	})
	return func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
			return s.Initialize.Add(mw, middleware.Before)
		})
	}
}

func ddbErrorMetric(err error) string {
	if err == nil || errors.Is(err, context.Canceled) {
		return ""
	}
	var (
		ccf      *types.ConditionalCheckFailedException
		canceled *types.TransactionCanceledException
		conflict *types.TransactionConflictException
		api      smithy.APIError
	)
	switch {
	case errors.As(err, &ccf), errors.As(err, &canceled), errors.As(err, &conflict):
		return "DDBConditionalConflicts"
	case errors.As(err, &api) && (api.ErrorCode() == "ProvisionedThroughputExceededException" ||
		api.ErrorCode() == "ThrottlingException" || api.ErrorCode() == "RequestLimitExceeded"):
		return "DDBThrottled"
	default:
		return "DDBErrors"
	}
}
