package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFreshGroup(t *testing.T) {
	var g freshGroup[int64]
	var starts atomic.Int64 // calls started
	release := make(chan struct{})
	fn := func() (int64, error) {
		n := starts.Add(1)
		if n == 1 {
			<-release // the first call runs while the burst arrives
		}
		return n, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	first := make(chan int64, 1)
	go func() {
		v, _ := g.do(ctx, fn)
		first <- v
	}()
	for starts.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	// Arrivals while call 1 runs must not get its result: it started
	// before them. They share call 2.
	const burst = 50
	var wg sync.WaitGroup
	got := make([]int64, burst)
	arrived := make([]int64, burst) // calls started before each caller arrived
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arrived[i] = starts.Load()
			v, err := g.do(ctx, fn)
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		}()
	}
	// Let (most of) the burst queue up behind call 1, bounded.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		g.mu.Lock()
		queued := g.next != nil
		g.mu.Unlock()
		if queued {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if v := <-first; v != 1 {
		t.Errorf("first caller got call %d, want 1", v)
	}
	for i, v := range got {
		if v <= arrived[i] {
			t.Fatalf("caller %d of the burst got call %d, which started before it arrived (after call %d)", i, v, arrived[i])
		}
	}
	// The burst shares: call 2 for those queued behind call 1, and a few
	// more for stragglers on a busy machine, but far fewer than callers.
	if n := starts.Load(); n >= burst {
		t.Errorf("%d calls for %d callers: nothing shared", n, burst+1)
	} else {
		t.Logf("%d calls for %d callers", n, burst+1)
	}
	// Idle again: a new caller starts a new call at once.
	before := starts.Load()
	if v, _ := g.do(ctx, fn); v != before+1 {
		t.Errorf("after the burst got call %d, want a new one (%d)", v, before+1)
	}

	// A caller whose ctx ends leaves; the call still completes for others.
	block := make(chan struct{})
	gone, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := g.do(gone, func() (int64, error) { <-block; return 0, nil })
		errc <- err
	}()
	stop()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("do after its ctx ended = %v, want context.Canceled", err)
	}
	close(block)
}
