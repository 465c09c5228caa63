package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Not ready until every partition has reached its target: driven record by
// record through Store.apply, so a store that turned ready once any one
// partition (or the first non-empty one) caught up fails deterministically.
func TestReadyOnlyWhenEveryPartitionCaughtUp(t *testing.T) {
	tests := []struct {
		name    string
		targets []int64
		steps   [][]rec // ready must be false after every step but the last
	}{
		{"two non-empty partitions", []int64{2, 1, 0}, [][]rec{
			{put(0, 0, "a", "1")},
			{put(0, 1, "b", "1")}, // partition 0 done, 1 not
			{put(1, 0, "c", "1")},
		}},
		{"the other order", []int64{2, 1, 0}, [][]rec{
			{put(1, 0, "c", "1")}, // partition 1 done, 0 not
			{put(0, 0, "a", "1")},
			{put(0, 1, "b", "1")},
		}},
		{"a skipped record at a tail", []int64{1, 2}, [][]rec{
			{put(1, 0, "c", "1")},
			{put(0, 0, "a", "1")},
			{skip(1, 1, skipControl)},
		}},
		{"records past the target", []int64{1, 1}, [][]rec{
			{put(0, 0, "a", "1"), put(0, 1, "b", "1")},
			{put(1, 0, "c", "1")},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", NoBootstrapDiffs: true,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			start := make([]int64, len(tt.targets))
			s.install(topicMeta{id: topicA, partitions: int32(len(start))}, start, tt.targets, logTrust{})
			for i, step := range tt.steps {
				if s.Ready() {
					t.Fatalf("ready before step %d: %v", i, s.Status().Cursor.Offsets)
				}
				s.apply(step)
			}
			if !s.Ready() {
				t.Fatalf("not ready at %v with targets %v", s.Status().Cursor.Offsets, tt.targets)
			}
		})
	}
}

// Writes fail fast while Kafka is away: once the store is stale, Produce
// answers ErrUnreachable for that reason at once, rather than waiting out
// ProduceTimeout (an hour here, so the slow path would say "not
// acknowledged within 1h0m0s", after the test's deadline).
func TestWritesFailFastWhileKafkaAway(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Brokers: c.ListenAddrs(), Topic: "t", CreateTopic: true, StaleAfter: 300 * time.Millisecond,
		ProbeInterval: 100 * time.Millisecond, ProduceTimeout: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	defer func() { cancel(); <-done; s.Close() }()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := s.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.Produce(wctx, Write{Key: "a", Value: []byte("1")}); err != nil {
		t.Fatalf("write while Kafka is up: %v", err)
	}
	c.Close()
	for !s.Stale() {
		if wctx.Err() != nil {
			t.Fatal("never stale after Kafka went away")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, _, _, err = s.Produce(wctx, Write{Key: "a", Value: []byte("2")})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), fmt.Sprintf("no answer from Kafka for over %s", 300*time.Millisecond)) {
		t.Fatalf("write while stale: %v, want ErrUnreachable for having no answer from Kafka", err)
	}
}
