package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/testkit"
)

// RunFanout against an in-process gateway on the dev broker (real Kafka
// with CONFGATE_KAFKA_BROKERS), in both modes: every write reaches every
// concerned subscriber once.
func TestRunFanoutConfgate(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	for _, tc := range []struct {
		mode  string
		conns int
	}{
		{ModeStub, 0},
		{ModeStub, 3},
		{ModeClient, 0},
	} {
		t.Run(fmt.Sprintf("%s/conns=%d", tc.mode, tc.conns), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			tg, err := NewConfgate(ctx, ConfgateOptions{Addrs: []string{g.Addr}, Mode: tc.mode, Server: Server{PIDs: []int{os.Getpid()}, MetricsURL: "http://" + g.Admin + "/metrics"}})
			if err != nil {
				t.Fatal(err)
			}
			defer tg.Close()
			cfg := FanoutConfig{
				Subscribers: 20, Conns: tc.conns, Prefixes: 2, Keys: 6, Rate: 40, Size: 200,
				Duration: time.Second, Warmup: 200 * time.Millisecond, Drain: 20 * time.Second,
				KeyPrefix: "bench-" + tc.mode + "/",
			}
			r, err := RunFanout(ctx, tg, cfg)
			if err != nil {
				t.Fatal(err)
			}
			// 40 writes, 20 per prefix, 10 subscribers each.
			if r.Writes != 40 || r.WriteErrors != 0 || r.Expected != 400 {
				t.Fatalf("writes %d errors %d expected %d; want 40, 0, 400", r.Writes, r.WriteErrors, r.Expected)
			}
			if r.Delivered != r.Expected || r.Duplicates != 0 {
				t.Fatalf("delivered %d of %d, %d duplicates", r.Delivered, r.Expected, r.Duplicates)
			}
			if r.Delivery.TotalCount() != r.Delivered || r.AllHave.TotalCount() != r.Writes || r.Put.TotalCount() != r.Writes {
				t.Fatalf("histogram counts: delivery %d, all-have %d, put %d", r.Delivery.TotalCount(), r.AllHave.TotalCount(), r.Put.TotalCount())
			}
			if r.Delivery.Max() > r.AllHave.Max()+1 {
				t.Errorf("a receipt (%d us) later than the last one of any write (%d us)", r.Delivery.Max(), r.AllHave.Max())
			}
			if !r.ServerKnown || r.ServerRSSBase <= 0 || r.ServerRSSIdle <= 0 || r.ServerRSSMax < r.ServerRSSIdle {
				t.Errorf("server usage: %+v", r)
			}
			// The gateway's own Put time: every measured Put is in its
			// histogram, and it is no longer than the round trip seen here.
			if math.IsNaN(r.ServerPutP50) || r.ServerPutP50 <= 0 || r.ServerPutP99 < r.ServerPutP50 {
				t.Errorf("gateway put p50 %v p99 %v", r.ServerPutP50, r.ServerPutP99)
			}
			if r.ConnectTime <= 0 || r.Elapsed <= 0 {
				t.Errorf("connect time %v, elapsed %v", r.ConnectTime, r.Elapsed)
			}
			var text, md, js bytes.Buffer
			if err := WriteText(&text, []*FanoutResult{r}); err != nil {
				t.Fatal(err)
			}
			if err := WriteMarkdown(&md, []*FanoutResult{r}); err != nil {
				t.Fatal(err)
			}
			if err := WriteJSON(&js, []*FanoutResult{r}); err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%s", text.String())
			if !strings.Contains(text.String(), "100.00%") || !strings.Contains(md.String(), "| "+r.Target+" | 20×40/s |") {
				t.Errorf("tables:\n%s\n%s", text.String(), md.String())
			}
			var s Summary
			if err := json.Unmarshal(js.Bytes(), &s); err != nil || s.Delivered != 400 || s.DeliveredPct != 100 || s.ServerCPUS == nil {
				t.Errorf("JSON %s: %+v, %v", js.String(), s, err)
			}
		})
	}
}

// A gateway that cannot be reached fails NewConfgate within its context.
func TestNewConfgateErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	for _, o := range []ConfgateOptions{
		{},
		{Addrs: []string{"127.0.0.1:1"}, Mode: "bogus"},
		{Addrs: []string{"127.0.0.1:1"}},
	} {
		if tg, err := NewConfgate(ctx, o); err == nil {
			tg.Close()
			t.Errorf("NewConfgate(%+v): no error", o)
		}
	}
}
