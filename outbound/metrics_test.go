package outbound

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// gauge returns the int64 gauge name's value for the point with the given
// key=value attributes, and whether there is one.
func (tm *telemetry) gauge(t *testing.T, name string, kv ...string) (int64, bool) {
	t.Helper()
	for _, m := range tm.collect(t) {
		if m.Name != name {
			continue
		}
	points:
		for _, dp := range m.Data.(metricdata.Gauge[int64]).DataPoints {
			for i := 0; i+1 < len(kv); i += 2 {
				if v, ok := dp.Attributes.Value(attributeKey(kv[i])); !ok || v.Emit() != kv[i+1] {
					continue points
				}
			}
			return dp.Value, true
		}
	}
	return 0, false
}

// queueWaits returns the count of time_in_queue samples of layer and their
// sum (seconds).
func (tm *telemetry) queueWaits(t *testing.T, layer sluice.Layer) (n uint64, sum float64) {
	t.Helper()
	for _, m := range tm.collect(t) {
		if m.Name != otelx.MetricTimeInQueue {
			continue
		}
		for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
			if v, ok := dp.Attributes.Value(otelx.AttrLayer); ok && v.AsString() == string(layer) {
				n += dp.Count
				sum += dp.Sum
			}
		}
	}
	return n, sum
}

// TestBreakerStateGauge: the gauge reads closed from construction, and open
// (with closed at 0) once failures open the breaker.
func TestBreakerStateGauge(t *testing.T) {
	tm := newTelemetry(t)
	url := verdictVendor(t)
	c := chain(t, tm, WithCircuitBreaker(BreakerSettings{FailureRatio: 1, MinThroughput: 1, OpenDelay: time.Hour}))
	state := func(s string) int64 {
		v, ok := tm.gauge(t, otelx.MetricCircuitState, string(otelx.AttrCircuitState), s,
			string(otelx.AttrPolicyName), policy, string(otelx.AttrLayer), string(sluice.LayerCircuitBreaker))
		if !ok {
			t.Fatalf("no %s point for %s", otelx.MetricCircuitState, s)
		}
		return v
	}
	if state(otelx.CircuitClosed) != 1 {
		t.Fatal("a new breaker's gauge does not read closed")
	}
	mustGet(t, c, url+"/bad")
	if state(otelx.CircuitOpen) != 1 || state(otelx.CircuitClosed) != 0 || state(otelx.CircuitHalfOpen) != 0 {
		t.Fatal("after the failure that opened it the gauge does not read open alone")
	}
}

// TestRetryCounter: resilience.retry.attempts counts resends, not calls.
func TestRetryCounter(t *testing.T) {
	var seen counter
	srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		if seen.add("") <= 2 {
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	tm := newTelemetry(t)
	c := chain(t, tm, WithRetry(RetrySettings{MaxAttempts: 5, BaseDelay: time.Millisecond}))
	mustGet(t, c, srv.URL)
	if n := tm.sum(t, otelx.MetricRetryAttempts, string(otelx.AttrLayer), string(sluice.LayerRetry),
		string(otelx.AttrPolicyName), policy); n != 2 {
		t.Fatalf("%s = %d; want 2 resends", otelx.MetricRetryAttempts, n)
	}
	tm.checkMetricAttributes(t)
}

// TestBulkheadGauges: a call holding the bulkhead's permit shows in
// resilience.request.active until its body is closed; a call waiting for it
// shows in resilience.request.queued while it waits, and its wait, exactly as
// long as it was (fake time), lands in the time_in_queue histogram once
// admitted.
func TestBulkheadGauges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tm := newTelemetry(t)
		c := NewClient(WithName(policy), WithTelemetry(tm.tel),
			WithTransport(handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}),
			WithBulkhead(BulkheadSettings{MaxConcurrent: 1, MaxWait: 10 * time.Minute}))
		defer c.Close()
		active := func() int64 {
			return tm.sum(t, otelx.MetricActive, string(otelx.AttrLayer), string(sluice.LayerBulkhead), string(otelx.AttrPolicyName), policy)
		}
		queued := func() int64 {
			return tm.sum(t, otelx.MetricQueued, string(otelx.AttrLayer), string(sluice.LayerBulkhead), string(otelx.AttrPolicyName), policy)
		}
		resp, err := c.Get("http://vendor.test/stream") // its permit is held until the body is closed
		if err != nil {
			t.Fatal(err)
		}
		if active() != 1 {
			t.Fatalf("active = %d while a stream holds the permit; want 1", active())
		}
		done := make(chan error, 1)
		go func() { done <- call(context.Background(), c, "http://vendor.test/second") }()
		synctest.Wait() // the second call is queued
		if queued() != 1 {
			t.Fatalf("queued = %d while the second call waits; want 1", queued())
		}
		if n, _ := tm.queueWaits(t, sluice.LayerBulkhead); n != 0 {
			t.Fatalf("time_in_queue has %d samples before the wait ended", n)
		}
		const held = 3 * time.Second
		time.Sleep(held) // fake time: how long the stream holds the permit
		_ = resp.Body.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if queued() != 0 || active() != 0 {
			t.Fatalf("after both calls: queued %d, active %d; want 0 and 0", queued(), active())
		}
		if n, sum := tm.queueWaits(t, sluice.LayerBulkhead); n != 1 || sum != held.Seconds() {
			t.Fatalf("time_in_queue has %d samples summing to %gs; want 1 of %gs", n, sum, held.Seconds())
		}
		tm.checkMetricAttributes(t)
	})
}
