package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// BenchmarkWriteModes measures the round trip of each write semantics
// (docs/writes.md quotes it, on Apache Kafka): a plain Put (at least
// once), a Put with a request ID (retry-safe), a conditional Put (compare
// and set on the version it read), a change set of 10 keys, and the
// retry-safe Put under 16 concurrent writers (group commit shares
// transactions) and alternating between two gateways (every write moves
// the serialization point: a fence each time).
func BenchmarkWriteModes(b *testing.B) {
	version := func(r *confgatev1.PutResponse) *confgatev1.Precondition {
		return &confgatev1.Precondition{Condition: &confgatev1.Precondition_Version{Version: r.GetVersion()}}
	}
	type writeFn func(ctx context.Context, c []confgatev1.ConfigServiceClient, i, w int, last *confgatev1.PutResponse) (*confgatev1.PutResponse, error)
	modes := []struct {
		name     string
		writers  int
		gateways int
		fn       writeFn
	}{
		{"plain", 1, 1, func(ctx context.Context, c []confgatev1.ConfigServiceClient, i, w int, _ *confgatev1.PutResponse) (*confgatev1.PutResponse, error) {
			return c[0].Put(ctx, &confgatev1.PutRequest{Key: fmt.Sprintf("w/%d", i%256), Value: []byte("v")})
		}},
		{"request-id", 1, 1, func(ctx context.Context, c []confgatev1.ConfigServiceClient, i, w int, _ *confgatev1.PutResponse) (*confgatev1.PutResponse, error) {
			return c[0].Put(ctx, &confgatev1.PutRequest{Key: fmt.Sprintf("w/%d", i%256), Value: []byte("v"), RequestId: fmt.Sprintf("r-%d-%d-%d", time.Now().UnixNano(), w, i)})
		}},
		{"conditional", 1, 1, func(ctx context.Context, c []confgatev1.ConfigServiceClient, i, w int, last *confgatev1.PutResponse) (*confgatev1.PutResponse, error) {
			req := &confgatev1.PutRequest{Key: fmt.Sprintf("cas/%d", w), Value: []byte("v"), RequestId: fmt.Sprintf("c-%d-%d-%d", time.Now().UnixNano(), w, i)}
			if last != nil {
				req.Precondition = version(last)
			} else {
				req.Precondition = &confgatev1.Precondition{Condition: &confgatev1.Precondition_Absent{Absent: true}}
			}
			return c[0].Put(ctx, req)
		}},
		{"change-set-10", 1, 1, func(ctx context.Context, c []confgatev1.ConfigServiceClient, i, w int, _ *confgatev1.PutResponse) (*confgatev1.PutResponse, error) {
			ops := make([]*confgatev1.Operation, 10)
			for j := range ops {
				ops[j] = &confgatev1.Operation{Key: fmt.Sprintf("set/%d/%d", i%64, j), Value: []byte("v")}
			}
			r, err := c[0].Apply(ctx, &confgatev1.ApplyRequest{Operations: ops, RequestId: fmt.Sprintf("s-%d-%d-%d", time.Now().UnixNano(), w, i)})
			if err != nil {
				return nil, err
			}
			return &confgatev1.PutResponse{Version: r.GetVersions()[0], Cursor: r.GetCursor()}, nil
		}},
		{"request-id-16-writers", 16, 1, func(ctx context.Context, c []confgatev1.ConfigServiceClient, i, w int, _ *confgatev1.PutResponse) (*confgatev1.PutResponse, error) {
			return c[0].Put(ctx, &confgatev1.PutRequest{Key: fmt.Sprintf("w/%d/%d", w, i%64), Value: []byte("v"), RequestId: fmt.Sprintf("g-%d-%d-%d", time.Now().UnixNano(), w, i)})
		}},
		{"request-id-alternating-2-gateways", 1, 2, func(ctx context.Context, c []confgatev1.ConfigServiceClient, i, w int, _ *confgatev1.PutResponse) (*confgatev1.PutResponse, error) {
			return c[i%2].Put(ctx, &confgatev1.PutRequest{Key: fmt.Sprintf("w/%d", i%256), Value: []byte("v"), RequestId: fmt.Sprintf("a-%d-%d-%d", time.Now().UnixNano(), w, i)})
		}},
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			k := testkit.StartKafka(b)
			topic := testkit.Topic(b)
			var clients []confgatev1.ConfigServiceClient
			for range m.gateways {
				clients = append(clients, testkit.StartGateway(b, k, topic, testkit.Options{}).Client)
			}
			ctx := context.Background()
			// Warm up: the first conditional write initializes the
			// transactional producer.
			for i := range 20 {
				if _, err := clients[0].Put(ctx, &confgatev1.PutRequest{Key: "warm", Value: []byte("v"), RequestId: fmt.Sprintf("warm-%d-%d", time.Now().UnixNano(), i)}); err != nil {
					b.Fatal(err)
				}
			}
			h := hdrhistogram.New(1, int64(30*time.Second/time.Microsecond), 3)
			var mu sync.Mutex
			var wg sync.WaitGroup
			per := max(1, b.N/m.writers)
			b.ResetTimer()
			start := time.Now()
			for w := range m.writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var last *confgatev1.PutResponse
					for i := range per {
						t0 := time.Now()
						r, err := m.fn(ctx, clients, i, w, last)
						if err != nil && status.Code(err) != codes.FailedPrecondition {
							b.Error(err)
							return
						}
						last = r
						mu.Lock()
						_ = h.RecordValue(time.Since(t0).Microseconds())
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(h.ValueAtQuantile(50)), "p50-us")
			b.ReportMetric(float64(h.ValueAtQuantile(99)), "p99-us")
			b.ReportMetric(float64(per*m.writers)/elapsed.Seconds(), "writes/s")
		})
	}
}
