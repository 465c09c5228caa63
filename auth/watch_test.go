package auth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// writeFile writes content with a modification time distinct from any
// earlier write (so the change shows even on coarse-mtime file systems).
func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	writeSeq++
	mt := time.Unix(1_600_000_000+writeSeq, 0)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

var writeSeq int64

func TestWatchedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	writeFile(t, path, "one")
	clk := newFakeClock()
	w := newWatchedFile("--f", path, 16, time.Second, clk.Now)
	if b, err := w.poll(false); err != nil || string(b) != "one" {
		t.Fatalf("first poll: %q %v", b, err)
	}
	if _, err := w.poll(false); err != errUnchanged {
		t.Fatalf("unchanged file: %v", err)
	}
	writeFile(t, path, "two")
	if _, err := w.poll(false); err != errUnchanged {
		t.Fatalf("within the interval: %v", err)
	}
	clk.Add(time.Second)
	if b, err := w.poll(false); err != nil || string(b) != "two" {
		t.Fatalf("after the interval: %q %v", b, err)
	}
	clk.Add(time.Second)
	if _, err := w.poll(false); err != errUnchanged {
		t.Fatalf("unchanged again: %v", err)
	}
	if b, err := w.poll(true); err != nil || string(b) != "two" {
		t.Fatalf("forced: %q %v", b, err)
	}

	// A rename over the file (new inode) is a change, even with the same
	// size and modification time.
	other := filepath.Join(dir, "g")
	if err := os.WriteFile(other, []byte("six"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if err := os.Chtimes(other, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	if b, err := w.poll(false); err != nil || string(b) != "six" {
		t.Fatalf("renamed over: %q %v", b, err)
	}

	// Too large.
	writeFile(t, path, strings.Repeat("x", 17))
	clk.Add(time.Second)
	if _, err := w.poll(false); err == nil || !strings.Contains(err.Error(), "larger than the limit of 16 bytes") {
		t.Fatalf("oversized: %v", err)
	}
	// Exactly at the limit is fine.
	writeFile(t, path, strings.Repeat("x", 16))
	clk.Add(time.Second)
	if b, err := w.poll(false); err != nil || len(b) != 16 {
		t.Fatalf("at the limit: %d %v", len(b), err)
	}
	// Missing, then a directory.
	os.Remove(path)
	clk.Add(time.Second)
	if _, err := w.poll(false); err == nil || !strings.Contains(err.Error(), "--f") {
		t.Fatalf("missing: %v", err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	if _, err := w.poll(false); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory: %v", err)
	}
}

// TestPolicyReload: good -> broken keeps the old policy and reports;
// broken -> good applies it; each new policy closes Changed once.
func TestPolicyReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acl.yaml")
	writeFile(t, path, "rules:\n- principals: [a]\n  read: [x/]\n")
	clk := newFakeClock()
	w, err := NewPolicyWatcher(PolicyConfig{File: path, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	a := named("a")
	canRead := func(prefix string) bool { return w.Policy().CanRead(a, sel(t, prefix)) == nil }
	if !canRead("x/") || canRead("y/") {
		t.Fatal("initial policy")
	}
	ch := w.Changed()

	// Broken: old policy stays, error reported, no change signalled.
	writeFile(t, path, "rules:\n- principals: [a]\n  read: [/y]\n")
	if err := w.Reload(); err == nil {
		t.Fatal("broken file loaded")
	}
	if w.Err() == nil || !canRead("x/") || canRead("y/") {
		t.Fatal("broken file changed the policy")
	}
	select {
	case <-ch:
		t.Fatal("Changed closed for a broken file")
	default:
	}

	// Good again: applies, Changed closes, Err clears.
	writeFile(t, path, "rules:\n- principals: [a]\n  read: [y/]\n")
	clk.Add(time.Second)
	if err := w.check(false); err != nil {
		t.Fatal(err)
	}
	if w.Err() != nil || canRead("x/") || !canRead("y/") {
		t.Fatal("good file not applied")
	}
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed")
	}

	// Same content written again: no change signalled.
	ch = w.Changed()
	writeFile(t, path, "rules:\n- principals: [a]\n  read: [y/]\n")
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("Changed closed for identical content")
	default:
	}

	// Deleted file: old policy stays.
	os.Remove(path)
	clk.Add(time.Second)
	if err := w.check(false); err == nil || !canRead("y/") {
		t.Fatalf("deleted file: %v", err)
	}
}

func TestPolicyWatcherStartErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewPolicyWatcher(PolicyConfig{File: filepath.Join(dir, "missing")}); err == nil {
		t.Fatal("missing file accepted")
	}
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "rules:\n- read: [x/]\n")
	if _, err := NewPolicyWatcher(PolicyConfig{File: bad}); err == nil {
		t.Fatal("broken file accepted")
	}
	big := filepath.Join(dir, "big")
	writeFile(t, big, "rules: []\n#"+strings.Repeat("x", MaxPolicyFileSize))
	if _, err := NewPolicyWatcher(PolicyConfig{File: big}); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized file: %v", err)
	}
}

func TestPolicyWatcherWithoutFile(t *testing.T) {
	w, err := NewPolicyWatcher(PolicyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if w.Policy() != nil || w.Reload() != nil || w.Err() != nil {
		t.Fatal("no ACL file must mean the nil (allow-all) policy")
	}
	w.Run(context.Background()) // returns at once
}

// TestPolicyWatcherRun: Run notices a change by itself (real clock, short
// interval; waits for the signal, asserts no timing).
func TestPolicyWatcherRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acl.yaml")
	writeFile(t, path, "rules: []\n")
	w, err := NewPolicyWatcher(PolicyConfig{File: path, PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	ch := w.Changed()
	writeFile(t, path, "rules:\n- anonymous: true\n  read: [\"\"]\n")
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatal("no change noticed")
	}
	if err := w.Policy().CanRead(Anonymous(), sel(t)); err != nil {
		t.Fatal(err)
	}
}
