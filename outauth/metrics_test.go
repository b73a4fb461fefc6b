package outauth_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/outauth"
)

// attrMap is a data point's attributes, each value as a string.
func attrMap(s attribute.Set) map[string]string {
	m := map[string]string{}
	for _, kv := range s.ToSlice() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// TestMetrics checks the token request counter by backend, grant and
// outcome, and the duration histogram by backend and grant; no attribute
// holds a token or secret.
func TestMetrics(t *testing.T) {
	t.Parallel()
	srv := newTokenServer(t, func(n int, r tokenReq) answer {
		switch r.Form.Get("subject_token") {
		case callerToken("refused"):
			return refuse("invalid_grant", "no")
		case callerToken("down"):
			return answer{Status: 500, Body: "oops"}
		}
		return tokenAnswer(issued(n), 3600)
	})
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	a := exchangeAuth(srv.URL)
	a.Discovery = config.AuthClientCredentials
	b := mustNew(t, a, outauth.Options{Meter: mp.Meter("outauth-test")})

	// token_exchange: 2 ok (alice, bob; alice again is cached), 2 refused,
	// 1 unavailable; client_credentials: 1 ok.
	for _, u := range []string{"alice", "alice", "bob", "refused", "refused", "down"} {
		_, _, _ = b.Calls.Header(context.Background(), user(u))
	}
	header(t, b.Discovery, outauth.Caller{})
	header(t, b.Discovery, outauth.Caller{})

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[[2]string]int64{} // grant, outcome
	histCounts := map[string]uint64{}
	var sawCounter, sawHist bool
	secrets := []string{callerToken("alice"), callerToken("bob"), callerToken("refused"), clientSecret,
		issued(1), issued(2), issued(3), issued(4), issued(5), issued(6)}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case "vmcp_outauth_token_requests_total":
				sawCounter = true
				sum, ok := m.Data.(metricdata.Sum[int64])
				if !ok || !sum.IsMonotonic {
					t.Fatalf("%s is %T, want a monotonic Sum[int64]", m.Name, m.Data)
				}
				for _, dp := range sum.DataPoints {
					attrs := attrMap(dp.Attributes)
					keys := slices.Sorted(maps.Keys(attrs))
					if !slices.Equal(keys, []string{"backend", "grant", "outcome"}) || attrs["backend"] != backendName {
						t.Errorf("counter attributes %v", attrs)
					}
					for _, v := range attrs {
						noSecrets(t, "counter attribute", v, secrets...)
					}
					counts[[2]string{attrs["grant"], attrs["outcome"]}] += dp.Value
				}
			case "vmcp_outauth_token_request_duration_seconds":
				sawHist = true
				if m.Unit != "s" {
					t.Errorf("histogram unit %q", m.Unit)
				}
				h, ok := m.Data.(metricdata.Histogram[float64])
				if !ok {
					t.Fatalf("%s is %T, want a Histogram[float64]", m.Name, m.Data)
				}
				for _, dp := range h.DataPoints {
					attrs := attrMap(dp.Attributes)
					if len(attrs) != 2 || attrs["backend"] != backendName || attrs["grant"] == "" {
						t.Errorf("histogram attributes %v, want backend and grant", attrs)
					}
					for _, v := range attrs {
						noSecrets(t, "histogram attribute", v, secrets...)
					}
					histCounts[attrs["grant"]] += dp.Count
				}
			default:
				if strings.HasPrefix(m.Name, "vmcp_outauth") {
					t.Errorf("unexpected metric %s", m.Name)
				}
			}
		}
	}
	if !sawCounter || !sawHist {
		t.Fatalf("counter recorded %v, histogram recorded %v", sawCounter, sawHist)
	}
	want := map[[2]string]int64{
		{"token_exchange", "ok"}: 2, {"token_exchange", "refused"}: 2, {"token_exchange", "unavailable"}: 1,
		{"client_credentials", "ok"}: 1,
	}
	if len(counts) != len(want) {
		t.Errorf("request counts %v, want %v", counts, want)
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("request counts %v, want %v", counts, want)
			break
		}
	}
	if histCounts["token_exchange"] != 5 || histCounts["client_credentials"] != 1 {
		t.Errorf("duration records by grant %v, want token_exchange 5, client_credentials 1", histCounts)
	}
}
