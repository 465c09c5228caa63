package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// result is one finished command.
type result struct {
	code           int
	stdout, stderr string
}

// cli runs commands against one gateway, found through CONFGATE_ADDR like a
// user's shell would.
type cli struct {
	t    testing.TB
	addr string
}

func (c cli) env(stdin io.Reader, stdout, stderr io.Writer) *Env {
	return &Env{
		Stdin:  stdin,
		Stdout: stdout,
		Stderr: stderr,
		Getenv: func(k string) string {
			if k == addrEnv {
				return c.addr
			}
			return ""
		},
	}
}

// run executes a command to completion (bounded by --timeout and the
// command's own limits; a test deadline guards the rest).
func (c cli) run(args ...string) result {
	return c.runIn(nil, args...)
}

func (c cli) runIn(stdin []byte, args ...string) result {
	c.t.Helper()
	var out, errb syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, args, c.env(bytes.NewReader(stdin), &out, &errb))
	return result{code, out.String(), errb.String()}
}

// ok runs a command that must succeed and returns its stdout.
func (c cli) ok(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("confgate %s: exit %d, stderr: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// background is a command running in a goroutine.
type background struct {
	stdout, stderr *syncBuffer
	done           chan int
	cancel         context.CancelFunc
}

func (c cli) start(args ...string) *background {
	b := &background{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan int, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	env := c.env(bytes.NewReader(nil), b.stdout, b.stderr)
	go func() { b.done <- run(ctx, args, env) }()
	c.t.Cleanup(func() {
		cancel()
		select {
		case <-b.done:
		case <-time.After(20 * time.Second):
			c.t.Errorf("confgate %s did not stop", strings.Join(args, " "))
		}
	})
	return b
}

// wait waits for the command to exit by itself.
func (b *background) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case code := <-b.done:
		b.done <- code // keep it for the cleanup
		return code
	case <-time.After(timeout):
		t.Fatalf("command still running after %s; stdout: %s stderr: %s", timeout, b.stdout, b.stderr)
		return -1
	}
}

// node is a `serve` or `dev` started through the command line, in process.
type testNode struct {
	Addrs
	stdout, stderr *syncBuffer
	stop           func() int // cancels and returns the exit status
}

// startNodeCmd runs `confgate ARGS...` (serve or dev), waits for it to be
// ready and returns its addresses, learned through Env.Started.
func startNodeCmd(t testing.TB, args ...string) *testNode {
	t.Helper()
	return startNodeCmdEnv(t, func(string) string { return "" }, args...)
}

// startNodeCmdEnv is startNodeCmd with an environment.
func startNodeCmdEnv(t testing.TB, getenv func(string) string, args ...string) *testNode {
	t.Helper()
	started := make(chan Addrs, 1)
	n := &testNode{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	env := &Env{Stdin: bytes.NewReader(nil), Stdout: n.stdout, Stderr: n.stderr,
		Getenv:  getenv,
		Started: func(a Addrs) { started <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, env) }()
	var once sync.Once
	code := 0
	n.stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Errorf("confgate %s did not stop", args[0])
				code = -1
			}
		})
		return code
	}
	t.Cleanup(func() {
		if c := n.stop(); c != 0 {
			t.Errorf("confgate %s exited %d; stderr: %s", args[0], c, n.stderr)
		}
	})
	select {
	case n.Addrs = <-started:
	case c := <-done:
		done <- c
		t.Fatalf("confgate %s exited %d before ready; stderr: %s", strings.Join(args, " "), c, n.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("confgate %s not ready after 30s; stderr: %s", strings.Join(args, " "), n.stderr)
	}
	return n
}

// startDev runs `confgate dev` on free ports with a fast probe interval.
func startDev(t testing.TB, extra ...string) (*testNode, cli) {
	t.Helper()
	args := append([]string{"dev", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--probe-interval", "200ms", "--fetch-max-wait", "100ms", "--log-level", "warn"}, extra...)
	n := startNodeCmd(t, args...)
	return n, cli{t: t, addr: n.GRPC}
}

// jsonLines decodes output of -o json, one object per line.
func jsonLines(t testing.TB, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	return lines
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
