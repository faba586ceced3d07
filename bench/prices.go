// Package bench holds refbridge's cross-cutting benchmarks (its _test.go files: remote calls
// per event, sweep pacing, cold start and size, memory, burst) and the prices the cost estimate
// uses. `make bench` runs them with scripts/bench, and bench/report writes BENCHMARKS.md.
package bench

import "time"

// Prices are AWS's public list prices for us-east-1, as of PricesAsOf; check them before
// relying on the estimate (https://aws.amazon.com/lambda/pricing/,
// https://aws.amazon.com/dynamodb/pricing/on-demand/). They are the only prices in the code.
const (
	PricesAsOf = "2026-11-29 (list prices for us-east-1 as published since DynamoDB's on-demand price cut of 2024-11-01; to be checked)"

	// LambdaArm64PerGBSecond is Lambda's duration price on arm64 (Graviton), first pricing tier.
	LambdaArm64PerGBSecond = 0.0000133334
	// LambdaPerMillionRequests is Lambda's request price.
	LambdaPerMillionRequests = 0.20
	// DynamoDBPerMillionWRU and DynamoDBPerMillionRRU are on-demand request-unit prices
	// (standard table class).
	DynamoDBPerMillionWRU = 0.625
	DynamoDBPerMillionRRU = 0.125
)

// Latencies the duration estimate assumes: Lambda bills the time an invocation waits on its
// remote calls, and in AWS those take longer than on loopback here. Assumptions, not
// measurements: DynamoDB's single-digit-millisecond requests in-region, and RF's API, whose
// latency is not published.
const (
	AssumedDynamoDBLatency = 5 * time.Millisecond
	AssumedRFLatency       = 150 * time.Millisecond
	// AssumedHandlerCPU is the handler's own time per event beyond its remote calls; the
	// handler benchmark measures it at well under a millisecond, and Lambda rounds up to 1 ms.
	AssumedHandlerCPU = time.Millisecond
)

// Cost is the estimated AWS bill for a million events.
type Cost struct {
	LambdaDuration, LambdaRequests, DynamoDBWrites, DynamoDBReads, Total float64
	// DurationPerEvent is the billed duration the estimate assumes, per event.
	DurationPerEvent time.Duration
}

// CostPerMillion estimates the bill for a million events that each cost, on average, the given
// DynamoDB requests, write and read request units, and RF calls, on a function of memoryMB.
func CostPerMillion(memoryMB int, ddbRequests, wru, rru, rfCalls float64) Cost {
	d := AssumedHandlerCPU + time.Duration(ddbRequests*float64(AssumedDynamoDBLatency)) + time.Duration(rfCalls*float64(AssumedRFLatency))
	d = d.Round(time.Millisecond) // Lambda bills whole milliseconds
	c := Cost{DurationPerEvent: d}
	c.LambdaDuration = 1e6 * d.Seconds() * float64(memoryMB) / 1024 * LambdaArm64PerGBSecond
	c.LambdaRequests = LambdaPerMillionRequests
	c.DynamoDBWrites = wru * DynamoDBPerMillionWRU
	c.DynamoDBReads = rru * DynamoDBPerMillionRRU
	c.Total = c.LambdaDuration + c.LambdaRequests + c.DynamoDBWrites + c.DynamoDBReads
	return c
}
