package client

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/btree"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/digest"
)

// Entry is one configuration key with its value, version and metadata.
// Value and Headers are shared with the view: treat them as read-only.
type Entry struct {
	Key   string
	Value []byte
	// Partition and Offset are the entry's version: the Kafka position of
	// the record that set it.
	Partition int32
	Offset    int64
	// ContentType is the "content-type" record header, when set.
	ContentType string
	// Headers are all record headers, in record order.
	Headers []Header
}

// Header is a Kafka record header carried with an entry.
type Header struct {
	Key   string
	Value []byte
}

// EventKind says what an Event reports.
type EventKind int

const (
	// EventPut: Key was set to Entry.
	EventPut EventKind = iota + 1
	// EventDelete: Key was deleted.
	EventDelete
	// EventSnapshot: the first snapshot was applied; the view is synced.
	// Read the view (Range) for its content.
	EventSnapshot
	// EventReset: a later snapshot replaced the whole view (history
	// expired, slow subscriber, topic recreated, ...), or replaced a view
	// loaded from the state file. Keys may have appeared, changed or
	// disappeared without individual events.
	EventReset
	// EventLoaded: the view was loaded from Config.StateFile. It is the
	// first event, delivered before any gateway is contacted; the view is
	// stale until a gateway answers (Status.FromFile). Then changes arrive
	// as EventPut and EventDelete, or as one EventReset; there is no
	// EventSnapshot in the life of a loaded view.
	EventLoaded
)

func (k EventKind) String() string {
	switch k {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	case EventSnapshot:
		return "snapshot"
	case EventReset:
		return "reset"
	case EventLoaded:
		return "loaded"
	}
	return "unknown"
}

// Event is one change to the view, passed to Config.OnChange.
type Event struct {
	Kind EventKind
	// Key is the changed key (EventPut, EventDelete); "" otherwise.
	Key string
	// Entry is the new entry for EventPut; nil otherwise.
	Entry *Entry
	// Cursor is the view's cursor once the message carrying this change was
	// applied (text form, see View.Cursor).
	Cursor string
}

// Status describes the subscription's connection.
type Status struct {
	// Connected is true while a stream to a gateway delivers messages.
	Connected bool
	// Addr is the gateway of the current stream, or of the last attempt.
	Addr string
	// Stale is true when the view may be behind the topic: not synced yet
	// (or only loaded from the state file), disconnected (the view serves
	// the last-known-good state), or the gateway reported that it has not
	// heard from Kafka recently.
	Stale bool
	// FromFile is true while the view holds what was loaded from
	// Config.StateFile and no gateway has answered yet (WaitSynced has not
	// returned). Stale is true meanwhile.
	FromFile bool
	// LagRecords is the gateway's lag behind the topic, from the last
	// progress message.
	LagRecords int64
	// Reconnects counts stream attempts after the first one.
	Reconnects int
	// Resets counts snapshots that replaced an existing view.
	Resets int
	// LastError is the error that ended the most recent failed stream (kept
	// after a successful reconnect), or the permanent error that stopped
	// the subscription.
	LastError error
	// StateFileError is why the state file was ignored at Subscribe or why
	// its last write failed; nil once a write succeeded. The view is not
	// affected, only what a restart would boot from.
	StateFileError error
}

// ErrClosed is returned by WaitSynced when the view was closed before its
// first snapshot.
var ErrClosed = errors.New("client: view closed")

// View is a local, continuously updated copy of the entries a selector
// matches. All methods are safe for concurrent use. Reads never block on
// the network: they see the last applied state.
type View struct {
	s settings

	// state is the published, immutable version of the view. Only the run
	// goroutine stores it.
	state atomic.Pointer[state]
	// streams counts the streams opened; only the run goroutine uses it.
	streams int

	cancel    context.CancelFunc
	synced    chan struct{} // closed once a gateway vouched for the view
	done      chan struct{} // closed when the run goroutine returns
	closeOnce sync.Once
	// loaded is true when Subscribe loaded the view from the state file.
	// Set before the run goroutine starts, never changed.
	loaded bool
	// dirty asks the state file writer for a write (capacity 1: one
	// pending request stands for any number of changes).
	dirty chan struct{}
	// saved is what the state file holds; only loadStateFile (before the
	// goroutines start) and then the writer goroutine touch it.
	saved savedState
	// kick asks the reporter of the current stream for a report (capacity
	// 1); nil when reporting is off.
	kick chan struct{}

	mu sync.Mutex // guards the fields below; never held while calling out
	st connState
	// rejections are the values the application refused (Reject), by key.
	rejections map[string]*rejection
	rejectSeq  uint64
}

// connState is what Status reports, plus what it is derived from.
type connState struct {
	connected    bool
	addr         string
	gatewayStale bool
	isSynced     bool
	lag          int64
	reconnects   int
	resets       int
	lastErr      error
	stopErr      error // why the run goroutine stopped
	fileErr      error // state file: load failure or last write failure
}

// state is one immutable version of the view.
type state struct {
	tree   *btree.BTreeG[*Entry] // read-only clone; never modified
	cur    cursor.Cursor         // meaningful only when synced
	synced bool
	sum    digest.Digest
}

const btreeDegree = 32

func lessEntry(a, b *Entry) bool { return a.Key < b.Key }

func newTree() *btree.BTreeG[*Entry] { return btree.NewG(btreeDegree, lessEntry) }

// Get returns the entry for key.
func (v *View) Get(key string) (Entry, bool) {
	e, ok := v.state.Load().tree.Get(&Entry{Key: key})
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// Range calls fn for every entry whose key starts with prefix, in key
// order, until fn returns false. It iterates one consistent version of the
// view, holds no lock, and fn may call any View method.
func (v *View) Range(prefix string, fn func(Entry) bool) {
	v.state.Load().tree.AscendGreaterOrEqual(&Entry{Key: prefix}, func(e *Entry) bool {
		if !strings.HasPrefix(e.Key, prefix) {
			return false
		}
		return fn(*e)
	})
}

// Len returns the number of entries in the view.
func (v *View) Len() int { return v.state.Load().tree.Len() }

// Cursor returns the last applied cursor in its text form (the one the CLI
// prints and accepts), or "" before the first snapshot. A view loaded from
// the state file starts at the file's cursor.
func (v *View) Cursor() string {
	s := v.state.Load()
	if !s.synced {
		return ""
	}
	return s.cur.String()
}

// Digest returns the state digest of the view's entries (16 bytes), the same
// value a gateway computes for this selector at the view's cursor.
func (v *View) Digest() []byte { return v.state.Load().sum.Bytes() }

// Status returns the connection state.
func (v *View) Status() Status {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.st
	return Status{
		Connected:      st.connected,
		Addr:           st.addr,
		Stale:          !st.connected || !st.isSynced || st.gatewayStale,
		FromFile:       v.loaded && !st.isSynced,
		LagRecords:     st.lag,
		Reconnects:     st.reconnects,
		Resets:         st.resets,
		LastError:      st.lastErr,
		StateFileError: st.fileErr,
	}
}

// WaitLoaded is WaitSynced, except that it returns nil at once when the view
// was loaded from Config.StateFile: it waits until the view has a state to
// serve, fresh or last-known-good. A service that should start even while
// every gateway is down waits with WaitLoaded and watches Status().Stale.
func (v *View) WaitLoaded(ctx context.Context) error {
	if v.loaded {
		return nil
	}
	return v.WaitSynced(ctx)
}

// WaitSynced blocks until a gateway has vouched for the view and returns
// nil: the first snapshot was applied or, for a view loaded from the state
// file, the resumed stream's first delta, progress or snapshot. It returns
// early with ctx's error, with the permanent error that stopped the
// subscription (for example INVALID_ARGUMENT for the selector), or with
// ErrClosed.
func (v *View) WaitSynced(ctx context.Context) error {
	select {
	case <-v.synced:
		return nil
	default:
	}
	select {
	case <-v.synced:
		return nil
	case <-v.done:
		select {
		case <-v.synced:
			return nil
		default:
		}
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.st.stopErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the subscription and waits for its goroutines (and a running
// OnChange call) to return; with a state file, that includes its last
// write. The view stays readable with its last state.
// Close is idempotent and always returns nil.
func (v *View) Close() error {
	v.closeOnce.Do(func() {
		v.mu.Lock()
		if v.st.stopErr == nil {
			v.st.stopErr = ErrClosed
		}
		v.mu.Unlock()
		v.cancel()
	})
	<-v.done
	return nil
}
