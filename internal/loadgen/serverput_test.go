package loadgen

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHistQuantile(t *testing.T) {
	inf := math.Inf(1)
	before := bucketCounts{0.001: 10, 0.005: 10, 0.01: 10, inf: 10}
	after := bucketCounts{0.001: 10, 0.005: 60, 0.01: 110, inf: 110}
	for _, tc := range []struct {
		q, want float64
	}{
		{0.5, 0.005},  // 50 of 100 reached at the 5 ms bound
		{0.25, 0.003}, // halfway through (1 ms, 5 ms]
		{0.99, 0.0099},
		{1, 0.01},
	} {
		if got := histQuantile(before, after, tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("q%v = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := histQuantile(before, before, 0.5); !math.IsNaN(got) {
		t.Errorf("nothing observed: %v, want NaN", got)
	}
	// Everything past the last finite bucket: its bound.
	if got := histQuantile(bucketCounts{0.1: 0, inf: 0}, bucketCounts{0.1: 0, inf: 5}, 0.5); got != 0.1 {
		t.Errorf("past the last bucket: %v, want 0.1", got)
	}
}

func TestServerPuts(t *testing.T) {
	const body = `# TYPE confgate_gateway_request_seconds histogram
confgate_gateway_request_seconds_bucket{method="/confgate.v1.ConfigService/Get",le="0.005"} 7
confgate_gateway_request_seconds_bucket{method="/confgate.v1.ConfigService/Get",le="+Inf"} 7
confgate_gateway_request_seconds_sum{method="/confgate.v1.ConfigService/Get"} 0.01
confgate_gateway_request_seconds_count{method="/confgate.v1.ConfigService/Get"} 7
confgate_gateway_request_seconds_bucket{method="/confgate.v1.ConfigService/Put",le="0.005"} 3
confgate_gateway_request_seconds_bucket{method="/confgate.v1.ConfigService/Put",le="+Inf"} 4
confgate_gateway_request_seconds_sum{method="/confgate.v1.ConfigService/Put"} 0.02
confgate_gateway_request_seconds_count{method="/confgate.v1.ConfigService/Put"} 4
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) }))
	defer srv.Close()
	got, ok, err := serverPuts(context.Background(), srv.URL)
	if err != nil || !ok {
		t.Fatalf("serverPuts: %v, %v", ok, err)
	}
	if got[0.005] != 3 || got[math.Inf(1)] != 4 || len(got) != 2 {
		t.Fatalf("Put buckets = %v", got)
	}
	none := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "go_goroutines 3\n") }))
	defer none.Close()
	if _, ok, err := serverPuts(context.Background(), none.URL); ok || err != nil {
		t.Fatalf("no histogram: ok %v err %v", ok, err)
	}
}
