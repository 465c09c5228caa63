package loadgen

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// The baseline writer writes once per measured write (none in the
// warmup), in the same open loop, and its failures are counted apart.
func TestRunFanoutBaseline(t *testing.T) {
	var mu sync.Mutex
	keys := map[string]int{}
	calls := 0
	baseline := func(ctx context.Context, key string, value []byte) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		keys[key]++
		if len(value) != 64 {
			t.Errorf("baseline value of %d bytes, want the writes' 64", len(value))
		}
		if calls%10 == 0 {
			return errors.New("refused")
		}
		return nil
	}
	r, err := RunFanout(context.Background(), &fakeTarget{}, FanoutConfig{
		Subscribers: 2, Rate: 50, Size: 64, Duration: time.Second, Warmup: 200 * time.Millisecond, Baseline: baseline,
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 50 || r.BaselineErrors != 5 || r.BaselinePut.TotalCount() != 45 {
		t.Fatalf("baseline: %d calls, %d errors, %d recorded; want 50, 5, 45", calls, r.BaselineErrors, r.BaselinePut.TotalCount())
	}
	s := Summarize(r)
	if s.BaselinePutP50Ms == nil || s.BaselinePutP99Ms == nil {
		t.Fatalf("summary lacks the baseline: %+v", s)
	}
	if none := Summarize(&FanoutResult{}); none.BaselinePutP50Ms != nil {
		t.Fatal("summary of a run without a baseline has one")
	}
}

func TestKafkaWriter(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, stop, err := KafkaWriter(ctx, c.ListenAddrs(), "baseline", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for range 3 {
		if err := w(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	// The topic exists now: a second writer reuses it.
	w2, stop2, err := KafkaWriter(ctx, c.ListenAddrs(), "baseline", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer stop2()
	if err := w2(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
}
