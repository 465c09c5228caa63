package bench

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
)

// BenchmarkSlowReaders measures what subscribers that stop reading cost
// under a steady write load: the gateway's heap after GC (bounded by the
// history window, not by what the stalled readers missed) and a reading
// subscriber's propagation latency, with 0 and 20 stalled subscribers.
// Each op is one 4 KiB write; run with -benchtime 5000x or more so the
// data written exceeds the 8 MiB history window several times.
func BenchmarkSlowReaders(b *testing.B) {
	for _, stalled := range []int{0, 20} {
		b.Run(fmt.Sprintf("stalled=%d", stalled), func(b *testing.B) {
			k := testkit.StartKafka(b)
			g := testkit.StartGateway(b, k, testkit.Topic(b), testkit.Options{Store: store.Config{HistoryBytes: 8 << 20}})
			fast := testkit.Subscribe(b, g, &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: []string{"slow/"}}})
			fast.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for range stalled {
				if _, err := testkit.SlowReaderClient(b, g).Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: []string{"slow/"}}}); err != nil {
					b.Fatal(err)
				}
			}
			value := strings.Repeat("v", 4<<10)
			h := hdrhistogram.New(1, int64(30*time.Second/time.Microsecond), 3)
			b.ResetTimer()
			for i := range b.N {
				key := fmt.Sprintf("slow/%03d", i%500)
				start := time.Now()
				r, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: key, Value: []byte(fmt.Sprint(i) + value)})
				if err != nil {
					b.Fatal(err)
				}
				fast.Until(30*time.Second, "the change", func(s *testkit.Stream) bool {
					v := s.View[key].GetVersion()
					return v.GetPartition() == r.Version.Partition && v.GetOffset() == r.Version.Offset
				})
				_ = h.RecordValue(time.Since(start).Microseconds())
				// Keep the reading stream's own record bounded.
				if len(fast.Raw) > 1000 {
					fast.Raw = fast.Raw[:0]
				}
			}
			b.StopTimer()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(h.ValueAtQuantile(50)), "p50-us")
			b.ReportMetric(float64(h.ValueAtQuantile(99)), "p99-us")
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
			b.ReportMetric(float64(b.N)*4/1024, "written-MiB")
		})
	}
}
