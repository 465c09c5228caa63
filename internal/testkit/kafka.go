package testkit

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Admin returns a kadm client on k, closed at cleanup.
func (k *Kafka) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// CreateTopic creates a topic, retrying while a deleted topic of the same
// name is still being removed (real Kafka deletes asynchronously).
func (k *Kafka) CreateTopic(t testing.TB, topic string, partitions int32, configs map[string]string) {
	t.Helper()
	adm := k.Admin(t)
	cfg := map[string]*string{}
	for key, v := range configs {
		cfg[key] = kadm.StringPtr(v)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		resp, err := adm.CreateTopic(ctx, partitions, -1, cfg, topic)
		if err == nil {
			err = resp.Err
		}
		if err == nil {
			return
		}
		if !errors.Is(err, kerr.TopicAlreadyExists) || ctx.Err() != nil {
			t.Fatalf("create topic %s (retried %v while one of that name existed): %v", topic, time.Since(start).Round(time.Millisecond), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// DeleteTopic deletes a topic and waits until it is gone from metadata.
func (k *Kafka) DeleteTopic(t testing.TB, topic string) {
	t.Helper()
	adm := k.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := adm.DeleteTopic(ctx, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("delete topic %s: %v", topic, err)
	}
	Eventually(t, 60*time.Second, "topic deletion", func() bool {
		td, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return false
		}
		d, ok := td[topic]
		return !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition)
	})
}

// CountRecords reads a topic from the start to its end offsets and counts
// the data records still in the log.
func (k *Kafka) CountRecords(t testing.TB, topic string) int {
	n, _ := k.CountLog(t, topic)
	return n
}

// CountLog is CountRecords plus the number of tombstones among them.
func (k *Kafka) CountLog(t testing.TB, topic string) (records, tombstones int) {
	t.Helper()
	log := k.ReadLog(t, topic)
	for _, r := range log {
		if r.Tombstone {
			tombstones++
		}
	}
	return len(log), tombstones
}

// Compact makes the broker compact topic and waits until the log holds
// fewer than before records and no tombstone: kfake compacts on request,
// real Kafka's cleaner runs on its own (the topic needs segment.ms,
// min.cleanable.dirty.ratio and delete.retention.ms small, and records
// written after the segment rolled, which roll provides, so dirty segments
// become cleanable and tombstones expire in a later pass).
func (k *Kafka) Compact(t testing.TB, topic string, before int, roll func()) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		roll()
		if k.Fake != nil {
			// kfake drops tombstones older than delete.retention.ms from
			// every batch but a partition's last, on request.
			time.Sleep(200 * time.Millisecond)
			k.Fake.Compact()
		}
		if n, tombs := k.CountLog(t, topic); n < before && tombs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log cleaner did not compact %s (and drop its tombstones) within 3m", topic)
		}
		if k.Fake == nil {
			time.Sleep(2 * time.Second)
		}
	}
}

// KeysPerPartition returns one key under prefix for each of n partitions,
// by Kafka's default partitioner: writing them appends to every partition.
func KeysPerPartition(prefix string, n int) []string {
	keys := make([]string, n)
	found := 0
	part := kgo.StickyKeyPartitioner(nil).ForTopic("")
	for i := 0; found < n; i++ {
		k := prefix + strconv.Itoa(i)
		p := part.Partition(&kgo.Record{Key: []byte(k)}, n)
		if keys[p] == "" {
			keys[p] = k
			found++
		}
	}
	return keys
}

// LogRecord is one data record read back from a topic.
type LogRecord struct {
	Partition int32
	Offset    int64
	Key       string
	Value     []byte
	Tombstone bool
	Headers   []kgo.RecordHeader
}

// ReadLog reads every committed data record of topic up to its current
// end offsets, in offset order per partition.
func (k *Kafka) ReadLog(t testing.TB, topic string) []LogRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ends, err := k.Admin(t).ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []LogRecord
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read log of %s: %v", topic, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if r.Offset+1 >= end {
				delete(want, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			out = append(out, LogRecord{Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Value: bytes.Clone(r.Value), Tombstone: r.Value == nil, Headers: r.Headers})
		})
	}
	return out
}
