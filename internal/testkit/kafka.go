package testkit

import (
	"context"
	"errors"
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
			t.Fatalf("create topic %s: %v", topic, err)
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
// the records (data and control) still in the log.
func (k *Kafka) CountRecords(t testing.TB, topic string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ends, err := k.Admin(t).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return 0
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("count records of %s: %v", topic, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return n
}

// Compact makes the broker compact topic and waits until the log holds
// fewer than before records: kfake compacts on request, real Kafka's
// cleaner runs on its own (the topic needs segment.ms and
// min.cleanable.dirty.ratio small enough, and a record written after the
// segment rolled so the dirty segment can be cleaned).
func (k *Kafka) Compact(t testing.TB, topic string, before int, roll func()) {
	t.Helper()
	if k.Fake != nil {
		k.Fake.Compact()
		return
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		roll()
		if n := k.CountRecords(t, topic); n < before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log cleaner did not compact %s within 3m", topic)
		}
		time.Sleep(2 * time.Second)
	}
}
