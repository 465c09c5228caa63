package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"
)

func TestProcUsageSelf(t *testing.T) {
	// Burn some CPU so the reading is not zero.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = fmt.Sprint(x)
	}
	u, err := ProcUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.CPU <= 0 || u.RSS < 1<<20 {
		t.Fatalf("usage of this process = %+v, want CPU > 0 and RSS >= 1 MiB", u)
	}
	if _, err := ProcUsage(-1); err == nil {
		t.Fatal("usage of pid -1: no error")
	}
}

func TestMetricsUsage(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       Usage
		wantErr    bool
	}{
		{"typed", "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 4.194304e+06\n", Usage{CPU: 12500 * time.Millisecond, RSS: 4194304}, false},
		{"untyped", "process_cpu_seconds_total 2\nprocess_resident_memory_bytes 1024\n", Usage{CPU: 2 * time.Second, RSS: 1024}, false},
		{"missing", "go_goroutines 3\n", Usage{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, tc.body) }))
			defer srv.Close()
			u, ok, err := Server{MetricsURL: srv.URL}.Usage(context.Background())
			if !ok || (err != nil) != tc.wantErr {
				t.Fatalf("Usage = %+v, %v, %v", u, ok, err)
			}
			if !tc.wantErr && u != tc.want {
				t.Fatalf("Usage = %+v, want %+v", u, tc.want)
			}
		})
	}
}
