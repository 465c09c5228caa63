package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// envInt reads a positive integer knob from the environment.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkPropagation measures the time from a Put call until a
// subscriber on the same gateway has the change: produce with acks=all,
// fetch, apply, encode, send. Reports p50/p99/max in microseconds.
func BenchmarkPropagation(b *testing.B) {
	for _, wait := range []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 5 * time.Second} {
		b.Run("fetch-max-wait="+wait.String(), func(b *testing.B) {
			k := testkit.StartKafka(b)
			g := testkit.StartGateway(b, k, testkit.Topic(b), testkit.Options{Store: store.Config{FetchMaxWait: wait}})
			s := testkit.Subscribe(b, g, &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: []string{"lat/"}}})
			s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
			h := hdrhistogram.New(1, int64(30*time.Second/time.Microsecond), 3)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				key := fmt.Sprintf("lat/%d", i%64)
				start := time.Now()
				r, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: key, Value: []byte(strconv.Itoa(i))})
				if err != nil {
					b.Fatal(err)
				}
				s.Until(30*time.Second, "the change", func(s *testkit.Stream) bool {
					v := s.View[key].GetVersion()
					return v.GetPartition() == r.Version.Partition && v.GetOffset() == r.Version.Offset
				})
				_ = h.RecordValue(time.Since(start).Microseconds())
				// Idle between writes so each one waits on an empty long poll.
				if i%8 == 7 {
					time.Sleep(wait / 4)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(h.ValueAtQuantile(50)), "p50-us")
			b.ReportMetric(float64(h.ValueAtQuantile(99)), "p99-us")
			b.ReportMetric(float64(h.Max()), "max-us")
		})
	}
}

// BenchmarkPutLatency measures Put (acks=all) round trips through a
// gateway, for the producer linger setting.
func BenchmarkPutLatency(b *testing.B) {
	for _, linger := range []time.Duration{0, 10 * time.Millisecond} {
		b.Run("linger="+linger.String(), func(b *testing.B) {
			k := testkit.StartKafka(b)
			g := testkit.StartGateway(b, k, testkit.Topic(b), testkit.Options{Store: store.Config{ProducerLinger: linger}})
			h := hdrhistogram.New(1, int64(30*time.Second/time.Microsecond), 3)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				if _, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: fmt.Sprintf("put/%d", i%256), Value: []byte("v")}); err != nil {
					b.Fatal(err)
				}
				_ = h.RecordValue(time.Since(start).Microseconds())
			}
			b.StopTimer()
			b.ReportMetric(float64(h.ValueAtQuantile(50)), "p50-us")
			b.ReportMetric(float64(h.ValueAtQuantile(99)), "p99-us")
		})
	}
}

// fill writes mb megabytes of 1 KiB entries over keys distinct keys.
func fill(b *testing.B, k *testkit.Kafka, topic string, mb, keys int) int64 {
	b.Helper()
	k.CreateTopic(b, topic, 6, map[string]string{"cleanup.policy": "compact"})
	cl := testkit.Producer(b, k, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(1<<16))
	value := bytes.Repeat([]byte("x"), 1024)
	n := mb * 1024
	ctx := context.Background()
	errs := make(chan error, 1)
	for i := range n {
		cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprintf("boot/%07d", i%keys)), Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	return int64(n) * (1024 + 13)
}

// rawConsume reads topic to its end offsets with a plain franz-go
// consumer: the floor bootstrap cannot beat.
func rawConsume(b *testing.B, k *testkit.Kafka, topic string, opts ...kgo.Opt) time.Duration {
	b.Helper()
	ctx := context.Background()
	ends, err := k.Admin(b).ListEndOffsets(ctx, topic)
	if err != nil {
		b.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	start := time.Now()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.Brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	for len(want) > 0 {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return time.Since(start)
}

// BenchmarkBootstrap measures how long a gateway takes to become ready on
// a pre-filled topic (CONFGATE_BENCH_MB megabytes, default 32; use 100+
// for the design target), next to raw consumption of the same topic with
// franz-go defaults. ratio = bootstrap / raw.
func BenchmarkBootstrap(b *testing.B) {
	mb := envInt("CONFGATE_BENCH_MB", 32)
	k := testkit.StartKafka(b)
	topic := testkit.Topic(b)
	bytesIn := fill(b, k, topic, mb, mb*1024/2)
	for _, pb := range []int32{1 << 20, 8 << 20} {
		b.Run(fmt.Sprintf("partition-bytes=%dMiB", pb>>20), func(b *testing.B) {
			var boot, raw time.Duration
			for range b.N {
				raw += rawConsume(b, k, topic, kgo.FetchMaxPartitionBytes(pb))
				start := time.Now()
				g := testkit.StartGateway(b, k, topic, testkit.Options{Store: store.Config{FetchMaxPartitionBytes: pb}, Gateway: gateway.Config{}})
				boot += time.Since(start)
				g.Stop()
			}
			b.ReportMetric(float64(bytesIn)/(1<<20)/boot.Seconds()*float64(b.N), "MB/s")
			b.ReportMetric(float64(bytesIn)/(1<<20)/raw.Seconds()*float64(b.N), "raw-MB/s")
			b.ReportMetric(boot.Seconds()/raw.Seconds(), "ratio")
		})
	}
}

// BenchmarkSnapshotEncode measures a full snapshot of CONFGATE_BENCH_MB
// megabytes over GetSnapshot, cold (cache off) and warm.
func BenchmarkSnapshotEncode(b *testing.B) {
	mb := envInt("CONFGATE_BENCH_MB", 32)
	k := testkit.StartKafka(b)
	topic := testkit.Topic(b)
	bytesIn := fill(b, k, topic, mb, mb*1024)
	for _, cache := range []int64{0, 512 << 20} {
		b.Run(fmt.Sprintf("cache=%dMiB", cache>>20), func(b *testing.B) {
			g := testkit.StartGateway(b, k, topic, testkit.Options{Gateway: gateway.Config{CacheBytes: cache}})
			b.SetBytes(bytesIn)
			b.ResetTimer()
			for range b.N {
				view, _, _ := testkit.Snapshot(b, g)
				if len(view) != mb*1024 {
					b.Fatalf("snapshot has %d entries", len(view))
				}
			}
		})
	}
}
