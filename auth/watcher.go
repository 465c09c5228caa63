package auth

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// PolicyConfig configures a PolicyWatcher.
type PolicyConfig struct {
	// File is the ACL file (--acl); re-read when it changes. Empty: no
	// ACL, every principal may do everything (Policy returns nil).
	File string
	// PollInterval is how often Run checks the file (one stat). Default
	// DefaultPollInterval (1s): a changed ACL is in force, and Changed
	// closed, within about that long.
	PollInterval time.Duration
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
	// Logger receives reload reports. Default: none.
	Logger *slog.Logger
}

// PolicyWatcher keeps the ACL in force: the last version of the file that
// loaded. A file that fails to load (unreadable, too large, invalid)
// leaves the previous policy in force; Err says why until a good version
// is loaded. Safe for concurrent use.
type PolicyWatcher struct {
	src      *source[Policy] // nil without a file
	interval time.Duration

	mu      sync.Mutex    // guards changed
	changed chan struct{} // closed and replaced when a new policy is in force
}

// NewPolicyWatcher loads cfg.File; a file missing or invalid at start is
// an error (a gateway must not start with less protection than asked for).
func NewPolicyWatcher(cfg PolicyConfig) (*PolicyWatcher, error) {
	w := &PolicyWatcher{interval: cfg.PollInterval, changed: make(chan struct{})}
	if w.interval <= 0 {
		w.interval = DefaultPollInterval
	}
	if cfg.File == "" {
		return w, nil
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := newWatchedFile("--acl", cfg.File, MaxPolicyFileSize, w.interval, cfg.Now)
	src, err := newSource(f, ParsePolicy, log)
	if err != nil {
		return nil, err
	}
	w.src = src
	return w, nil
}

// Policy is the policy in force: nil (allow all) without an ACL file.
func (w *PolicyWatcher) Policy() *Policy {
	if w.src == nil {
		return nil
	}
	return w.src.get()
}

// Changed is closed when a new policy comes into force (one with other
// content than the previous: touching the file does not count). Take the
// channel before reading Policy so that no change is missed:
//
//	for {
//		ch := w.Changed()
//		if err := w.Policy().CanRead(p, sel); err != nil { end the stream with err }
//		select { case <-ch: case ... }
//	}
func (w *PolicyWatcher) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// Run checks the file every poll interval until ctx is done. Without an
// ACL file it returns at once.
func (w *PolicyWatcher) Run(ctx context.Context) {
	if w.src == nil {
		return
	}
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.check(false)
		}
	}
}

// Reload re-reads the file now (the gateway's SIGHUP), whatever its stamp
// says, and returns why it did not load (the previous policy stays).
func (w *PolicyWatcher) Reload() error {
	if w.src == nil {
		return nil
	}
	return w.check(true)
}

func (w *PolicyWatcher) check(force bool) error {
	old := w.src.get()
	changed, err := w.src.check(force)
	if changed && w.src.get().version != old.version {
		w.mu.Lock()
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	}
	return err
}

// Err is why the ACL file's current version is not in force (the previous
// one is), or nil: for health checks and metrics.
func (w *PolicyWatcher) Err() error {
	if w.src == nil {
		return nil
	}
	return w.src.lastErr()
}
