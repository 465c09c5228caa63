package auth

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
)

// source keeps the last good parse of a watched file. A file that cannot
// be read or parsed leaves the last good value in force; the failure is
// logged once (not at every poll) and kept for Err until a good version
// is loaded.
type source[T any] struct {
	file  *watchedFile
	parse func([]byte) (*T, error)
	log   *slog.Logger

	cur atomic.Pointer[T] // never nil after a successful newSource

	mu  sync.Mutex // guards err; held across a check so reloads are serial
	err error      // why the file's current version is not in force, or nil
}

// newSource reads and parses the file once: a file that is bad at start
// is an error, not a silent empty set.
func newSource[T any](file *watchedFile, parse func([]byte) (*T, error), log *slog.Logger) (*source[T], error) {
	s := &source[T]{file: file, parse: parse, log: log}
	b, err := file.poll(true)
	if err != nil {
		return nil, err
	}
	v, err := parse(b)
	if err != nil {
		return nil, err
	}
	s.cur.Store(v)
	return s, nil
}

func (s *source[T]) get() *T { return s.cur.Load() }

// check reloads the file if it changed (force: whatever its stamp and the
// poll interval say). changed reports that a new value is in force; err is
// why the file's current version is not (nil when it is).
func (s *source[T]) check(force bool) (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.file.poll(force)
	if errors.Is(err, errUnchanged) {
		return false, s.err
	}
	var v *T
	if err == nil {
		v, err = s.parse(b)
	}
	if err != nil {
		if s.err == nil || s.err.Error() != err.Error() {
			s.log.Error("auth: file not loaded; the previous version stays in force", "flag", s.file.flag, "path", s.file.path, "err", err)
		}
		s.err = err
		return false, err
	}
	if s.err != nil {
		s.log.Info("auth: file loaded again after an error", "flag", s.file.flag, "path", s.file.path)
	} else {
		s.log.Info("auth: file reloaded", "flag", s.file.flag, "path", s.file.path)
	}
	s.err = nil
	s.cur.Store(v)
	return true, nil
}

// lastErr is why the file's current version is not in force, or nil.
func (s *source[T]) lastErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
