package auth

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Size limits of the files auth reads. A file over its limit is refused
// (the previous content stays in force): these files are small by nature,
// and the limit keeps a mistaken path (a log, a disk image) from being
// read into memory every time it changes.
const (
	MaxTokensFileSize = 1 << 20 // 1 MiB
	MaxJWKSFileSize   = 1 << 20 // 1 MiB
	MaxPolicyFileSize = 4 << 20 // 4 MiB
)

// DefaultPollInterval is how often a watched file is checked for changes
// (one stat call); a change takes effect within about this long.
const DefaultPollInterval = time.Second

// fileStamp identifies a version of a file without reading it: a change of
// any field (an in-place edit, a rename over it, a Kubernetes ConfigMap's
// symlink swap) means the file must be read again.
type fileStamp struct {
	dev, ino uint64
	size     int64
	mtime    int64 // UnixNano
}

// watchedFile reads a file again when its stamp changed, checking at most
// once per interval. It only reads: parsing and keeping the last good
// content is its user's job.
type watchedFile struct {
	flag     string // the flag that names the file, for messages ("--acl")
	path     string
	max      int64
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex // guards the fields below
	stamp   fileStamp  // of the version last read (good or not)
	read    bool       // stamp is set
	checked time.Time  // last stat
}

func newWatchedFile(flag, path string, max int64, interval time.Duration, now func() time.Time) *watchedFile {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	if now == nil {
		now = time.Now
	}
	return &watchedFile{flag: flag, path: path, max: max, interval: interval, now: now}
}

// errUnchanged: the file has the stamp it had when last read.
var errUnchanged = errors.New("unchanged")

// poll returns the file's content when it changed since the last read,
// errUnchanged when it did not or when the last check is less than an
// interval old (unless force), or why it could not be read. A failed read
// is tried again at the next poll.
func (w *watchedFile) poll(force bool) ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if !force && w.read && now.Sub(w.checked) < w.interval && !now.Before(w.checked) {
		return nil, errUnchanged
	}
	w.checked = now
	before, err := w.statLocked()
	if err != nil {
		return nil, err
	}
	if !force && w.read && before == w.stamp {
		return nil, errUnchanged
	}
	b, err := w.readLocked()
	if err != nil {
		return nil, err
	}
	// A writer still at work changes the stamp: keep the old one so the
	// next poll reads the file again (the user will have seen a parse
	// error or a partial but valid file; either is corrected then).
	if after, err := w.statLocked(); err == nil && after == before {
		w.stamp, w.read = before, true
	}
	return b, nil
}

func (w *watchedFile) statLocked() (fileStamp, error) {
	st, err := os.Stat(w.path)
	if err != nil {
		return fileStamp{}, fmt.Errorf("%s: %w", w.flag, err)
	}
	if !st.Mode().IsRegular() {
		return fileStamp{}, fmt.Errorf("%s %s: not a regular file", w.flag, w.path)
	}
	dev, ino := fileID(st)
	return fileStamp{dev: dev, ino: ino, size: st.Size(), mtime: st.ModTime().UnixNano()}, nil
}

func (w *watchedFile) readLocked() ([]byte, error) {
	f, err := os.Open(w.path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.flag, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, w.max+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", w.flag, w.path, err)
	}
	if int64(len(b)) > w.max {
		return nil, fmt.Errorf("%s %s is larger than the limit of %d bytes (%d KiB): is it the right file?", w.flag, w.path, w.max, w.max>>10)
	}
	return b, nil
}
