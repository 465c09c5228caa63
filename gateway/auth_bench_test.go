package gateway_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// BenchmarkNoisyNeighbour measures how long a well-behaved subscriber
// waits for its deltas (a write by its own principal until the change
// arrives on its stream), alone and while another principal opens and
// closes streams and writes as fast as it can, into its per-principal
// limits (50 streams, 1000 writes per second here). It reports the
// latency's median and 99th percentile, and how much of the noisy
// principal's work was refused. Not a test: it asserts nothing about time.
//
//	go test -run '^$' -bench NoisyNeighbour -benchtime 500x ./gateway/
func BenchmarkNoisyNeighbour(b *testing.B) {
	for _, noisy := range []bool{false, true} {
		b.Run(map[bool]string{false: "alone", true: "noisy"}[noisy], func(b *testing.B) {
			k := testkit.StartKafka(b)
			e := newAuthEnv(b, "rules:\n  - principals: [quiet]\n    read: [q/]\n    write: [q/]\n  - principals: [noisy]\n    read: ['']\n    write: [n/]\n", false, "quiet", "noisy")
			g := e.start(k, testkit.Topic(b), testkit.Options{Gateway: gateway.Config{MaxStreamsPerPrincipal: 50, MaxWritesPerSecond: 1000}})
			quiet := e.as(g, "quiet")
			s := testkit.Subscribe(b, quiet, &confgatev1.SubscribeRequest{Selector: sel("q/")})
			s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })

			ctx, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var streams, writes, refused atomic.Int64
			if noisy {
				n := e.as(g, "noisy").Client
				wg.Add(2)
				go func() { // streams: open, read the snapshot, keep up to 60
					defer wg.Done()
					var open []context.CancelFunc
					for ctx.Err() == nil {
						sctx, cancel := context.WithCancel(ctx)
						st, err := n.Subscribe(sctx, &confgatev1.SubscribeRequest{})
						if err == nil {
							_, err = st.Recv()
						}
						if status.Code(err) == codes.ResourceExhausted {
							refused.Add(1)
						}
						streams.Add(1)
						open = append(open, cancel)
						if len(open) > 60 {
							open[0]()
							open = open[1:]
						}
					}
					for _, c := range open {
						c()
					}
				}()
				go func() { // writes, 4 KiB each
					defer wg.Done()
					v := make([]byte, 4<<10)
					for i := 0; ctx.Err() == nil; i++ {
						_, err := n.Put(ctx, &confgatev1.PutRequest{Key: fmt.Sprintf("n/%d", i%1000), Value: v})
						if status.Code(err) == codes.ResourceExhausted {
							refused.Add(1)
						}
						writes.Add(1)
					}
				}()
				time.Sleep(500 * time.Millisecond) // let it ramp up
			}

			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				key, val := fmt.Sprintf("q/%d", i%100), fmt.Sprint(i)
				start := time.Now()
				if _, err := quiet.Client.Put(ctx, &confgatev1.PutRequest{Key: key, Value: []byte(val)}); err != nil {
					b.Fatal(err)
				}
				s.Until(30*time.Second, "the delta", func(s *testkit.Stream) bool {
					e := s.View[key]
					return e != nil && string(e.Value) == val
				})
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			stop()
			wg.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			if noisy {
				b.ReportMetric(float64(streams.Load()), "noisy-streams")
				b.ReportMetric(float64(writes.Load()), "noisy-writes")
				b.ReportMetric(float64(refused.Load()), "noisy-refused")
			}
		})
	}
}
