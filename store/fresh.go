package store

import (
	"context"
	"sync"
)

// freshCall is one run of a freshGroup's function.
type freshCall[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// freshGroup shares calls of an expensive function among concurrent
// callers, like singleflight, with one difference: a caller only joins a
// call that starts after it arrived, never one already running. A caller
// that needs a result at least as new as its own arrival (an end offset
// newer than the cursor it holds) gets one, and a burst of callers still
// costs at most two calls at a time: the running one and the next.
type freshGroup[T any] struct {
	mu      sync.Mutex
	running bool
	next    *freshCall[T] // waiting to start when the running call ends
}

// do returns the result of a call of fn that started after do was called,
// or ctx's error. fn runs on a goroutine of its own and should bound
// itself: a caller leaving does not stop it.
func (g *freshGroup[T]) do(ctx context.Context, fn func() (T, error)) (T, error) {
	g.mu.Lock()
	c := g.next
	if c == nil {
		c = &freshCall[T]{done: make(chan struct{})}
		if g.running {
			g.next = c
		} else {
			g.running = true
			go g.run(c, fn)
		}
	}
	g.mu.Unlock()
	select {
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	case <-c.done:
		return c.val, c.err
	}
}

func (g *freshGroup[T]) run(c *freshCall[T], fn func() (T, error)) {
	for c != nil {
		c.val, c.err = fn()
		close(c.done)
		g.mu.Lock()
		c, g.next = g.next, nil
		if c == nil {
			g.running = false
		}
		g.mu.Unlock()
	}
}
