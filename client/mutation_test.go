package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/confgate/confgate/internal/digest"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// Tests written for the mutants that survived the first mutation run of
// replica.go, statefile.go and credentials.go (docs/testing.md, "Mutation
// score"): each pins a behaviour no other test checked precisely.

// mutLog records log lines as "LEVEL message".
type mutLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *mutLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *mutLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Level.String()+" "+r.Message)
	return nil
}
func (l *mutLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *mutLog) WithGroup(string) slog.Handler      { return l }
func (l *mutLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// A message that fails or vouches for nothing leaves a loaded, not yet
// live view not live; the first message that vouches for it makes it
// live, once.
func TestHandleErrorDoesNotMakeLive(t *testing.T) {
	sel := selector(t)
	r, err := decode(encoded(t, sel, stateOf(t, cur(6, 1), ent("k", "v", 0, 5))), sel)
	if err != nil {
		t.Fatal(err)
	}
	if !r.synced || r.live {
		t.Fatalf("loaded replica: synced %v, live %v; want synced, not live", r.synced, r.live)
	}
	s := &session{}
	res, err := r.handle(s, delta(cur(5, 1))) // behind the view's cursor
	if err == nil {
		t.Fatal("a delta behind the cursor was accepted")
	}
	if r.live || res.first {
		t.Fatalf("after a refused delta: live %v, first %v; want neither", r.live, res.first)
	}
	// Messages that are applied but vouch for nothing: a progress without
	// a cursor, a snapshot chunk.
	noCursor := &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Progress{
		Progress: &confgatev1.Progress{LagRecords: 3}}}
	for _, m := range []*confgatev1.SubscribeResponse{noCursor, chunk(ent("k", "v", 0, 5))} {
		res, err := r.handle(s, m)
		if err != nil {
			t.Fatal(err)
		}
		if r.live || res.first {
			t.Fatalf("after %v: live %v, first %v; want neither", m, r.live, res.first)
		}
	}
	s = &session{} // the snapshot above is abandoned with its stream
	if res, err = r.handle(s, progress(cur(7, 1), 0, false)); err != nil || !res.first || !r.live {
		t.Fatalf("first good progress: err %v, first %v, live %v; want first and live", err, res.first, r.live)
	}
	if res, err = r.handle(s, progress(cur(8, 1), 0, false)); err != nil || res.first {
		t.Fatalf("second progress: err %v, first %v; want not first", err, res.first)
	}
}

// The refusal of a snapshot entry at or past the cursor names the entry's
// own offset.
func TestSnapshotPastCursorMessage(t *testing.T) {
	r := newReplica()
	s := &session{}
	e := ent("k", "v", 0, 5)
	if _, err := r.handle(s, chunk(e)); err != nil {
		t.Fatal(err)
	}
	_, err := r.handle(s, end(cur(5), initial, e))
	if err == nil || !strings.Contains(err.Error(), "partition 0 offset 5, at or past its cursor 5") {
		t.Fatalf("error %v, want it to name partition 0 offset 5 and cursor 5", err)
	}
}

// A delta reports a change (publish the view) only when it applied one; it
// always moves the cursor.
func TestDeltaChangedOnlyWhenApplied(t *testing.T) {
	tests := []struct {
		name    string
		changes []*confgatev1.Change
		changed bool
	}{
		{"no changes", nil, false},
		{"only an older put", []*confgatev1.Change{put(ent("k", "old", 0, 4))}, false},
		{"only a delete of an absent key", []*confgatev1.Change{del("absent", 0, 7)}, false},
		{"a newer put", []*confgatev1.Change{put(ent("k", "new", 0, 7))}, true},
		{"a newer delete", []*confgatev1.Change{del("k", 0, 7)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := syncedReplica(t, cur(6, 1), ent("k", "v", 0, 5))
			res, err := r.handle(&session{}, delta(cur(9, 1), tt.changes...))
			if err != nil {
				t.Fatal(err)
			}
			if res.changed != tt.changed || !res.moved || len(res.events) > 0 != tt.changed {
				t.Fatalf("changed %v, moved %v, %d events; want changed %v, moved", res.changed, res.moved, len(res.events), tt.changed)
			}
			if !r.cur.Equal(cur(9, 1)) {
				t.Fatalf("cursor %s, want %s", r.cur, cur(9, 1))
			}
		})
	}
}

// Two changes of one key at the same version in one delta: the second is
// not newer than what the first applied, so it is skipped.
func TestDeltaSameVersionTwice(t *testing.T) {
	tests := []struct {
		name   string
		second *confgatev1.Change
	}{
		{"put twice", put(ent("k", "second", 0, 7))},
		{"put then delete", del("k", 0, 7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := syncedReplica(t, cur(6, 1), ent("k", "v", 0, 5))
			res, err := r.handle(&session{}, delta(cur(9, 1), put(ent("k", "first", 0, 7)), tt.second))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.events) != 1 || res.events[0].Kind != EventPut || string(res.events[0].Entry.Value) != "first" {
				t.Fatalf("events %+v, want one put of \"first\"", res.events)
			}
			if e, ok := r.tree.Get(&Entry{Key: "k"}); !ok || string(e.Value) != "first" || e.Offset != 7 {
				t.Fatalf("k = %+v (present %v), want first@0:7", e, ok)
			}
			checkDigest(t, r)
		})
	}
}

// An entry without headers has nil Headers (so it compares equal to an
// Entry literal without them); one with headers has them in order.
func TestFromProtoHeaders(t *testing.T) {
	e, err := fromProto(ent("k", "v", 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	if e.Headers != nil {
		t.Fatalf("Headers = %#v, want nil", e.Headers)
	}
	pe := ent("k", "v", 0, 1)
	pe.Headers = []*confgatev1.Header{{Key: "a", Value: []byte("1")}, {Key: "b"}}
	if e, err = fromProto(pe); err != nil {
		t.Fatal(err)
	}
	if len(e.Headers) != 2 || e.Headers[0].Key != "a" || string(e.Headers[0].Value) != "1" || e.Headers[1].Key != "b" {
		t.Fatalf("Headers = %+v, want a=1, b", e.Headers)
	}
}

// savedState.holds: the file holds a state only when it was written
// (ok) with the same digest and the same cursor.
func TestSavedStateHolds(t *testing.T) {
	var sum, other digest.Digest
	sum.Add(digest.Hash("k", []byte("v"), 0, 1))
	other.Add(digest.Hash("k", []byte("w"), 0, 2))
	st := &state{cur: cur(3), sum: sum, synced: true}
	tests := []struct {
		name  string
		saved savedState
		want  bool
	}{
		{"same", savedState{ok: true, cur: cur(3), sum: sum}, true},
		{"nothing written yet", savedState{ok: false, cur: cur(3), sum: sum}, false},
		{"other digest", savedState{ok: true, cur: cur(3), sum: other}, false},
		{"other cursor", savedState{ok: true, cur: cur(4), sum: sum}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.saved.holds(st); got != tt.want {
				t.Fatalf("holds = %v, want %v", got, tt.want)
			}
		})
	}
}

// save writes nothing for a view without a cursor, and nothing when the
// file already holds the view.
func TestSaveSkips(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	v := &View{s: settings{stateFile: path, selector: selector(t), log: slog.New(slog.DiscardHandler)}}
	unsynced := newReplica().publish()
	v.state.Store(unsynced)
	v.save()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a view without a cursor was written (stat: %v)", err)
	}

	v.state.Store(stateOf(t, cur(6, 1), ent("k", "v", 0, 5)))
	v.save()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("a synced view was not written: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	v.save() // the file is known to hold this state: no write
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an unchanged view was written again (stat: %v)", err)
	}
}

// A removed leftover temporary file is logged as removed, not as a
// failure.
func TestRemoveStateTempsLogs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	tmp := path + stateTempInfix + "123"
	if err := os.WriteFile(tmp, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := &mutLog{}
	removeStateTemps(path, slog.New(rec))
	if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("leftover not removed (stat: %v)", err)
	}
	if got, want := rec.get(), []string{"INFO removed a leftover temporary state file"}; !slices.Equal(got, want) {
		t.Fatalf("log %q, want %q", got, want)
	}
}

// syncDir syncs a directory and reports why it could not.
func TestSyncDir(t *testing.T) {
	if err := syncDir(t.TempDir()); err != nil {
		t.Fatalf("syncDir of a directory: %v", err)
	}
	if err := syncDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("syncDir of a missing directory: %v, want not exist", err)
	}
	if runtime.GOOS != "linux" {
		return
	}
	// procfs directories cannot be fsynced (EINVAL): the error is returned,
	// not replaced by Close's nil.
	if fi, err := os.Stat("/proc/self"); err != nil || !fi.IsDir() {
		t.Skip("no /proc")
	}
	if err := syncDir("/proc"); err == nil {
		t.Fatal("syncDir(/proc) = nil, want the fsync error")
	}
}

// stateChunks parses a state file's records and returns the number of
// entries of each chunk record.
func stateChunks(t *testing.T, b []byte) []int {
	t.Helper()
	b = b[len(stateMagic)+1 : len(b)-4]
	var out []int
	for i := 0; len(b) > 0; i++ {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			t.Fatalf("bad record %d", i)
		}
		body := b[k : k+int(n)]
		b = b[k+int(n):]
		if i == 0 {
			continue // the selector
		}
		var m confgatev1.SubscribeResponse
		if err := proto.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		if c := m.GetSnapshotChunk(); c != nil {
			out = append(out, len(c.GetEntries()))
		}
	}
	return out
}

// bigEntry is an entry whose encoding (as toProto makes it) is exactly
// size bytes.
func bigEntry(t *testing.T, key string, off int64, size int) *confgatev1.Entry {
	t.Helper()
	for n := size; n > size-16; n-- {
		e := ent(key, strings.Repeat("x", n), 0, off)
		if proto.Size(e) == size {
			return e
		}
	}
	t.Fatalf("no entry of %d bytes", size)
	return nil
}

// Entries records hold entries until they reach stateChunkBytes, the
// entry that reaches it included; no empty record is written.
func TestStateFileChunks(t *testing.T) {
	const third = stateChunkBytes / 3 // three reach the limit, two do not
	tests := []struct {
		name    string
		entries []*confgatev1.Entry
		want    []int
	}{
		{"empty view", nil, nil},
		{"one small entry", []*confgatev1.Entry{ent("a", "v", 0, 0)}, []int{1}},
		{"exactly the limit each", []*confgatev1.Entry{
			bigEntry(t, "a", 0, stateChunkBytes), bigEntry(t, "b", 1, stateChunkBytes),
		}, []int{1, 1}},
		{"five thirds", []*confgatev1.Entry{
			bigEntry(t, "a", 0, third+1), bigEntry(t, "b", 1, third+1), bigEntry(t, "c", 2, third+1),
			bigEntry(t, "d", 3, third+1), bigEntry(t, "e", 4, third+1),
		}, []int{3, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel := selector(t)
			b := encoded(t, sel, stateOf(t, cur(10), tt.entries...))
			if got := stateChunks(t, b); !slices.Equal(got, tt.want) {
				t.Fatalf("entries per record %v, want %v", got, tt.want)
			}
			r, err := decode(b, sel)
			if err != nil {
				t.Fatal(err)
			}
			if r.tree.Len() != len(tt.entries) {
				t.Fatalf("decoded %d entries, want %d", r.tree.Len(), len(tt.entries))
			}
		})
	}
}

// A record longer than what is left of the file is refused by its length,
// before any read; one that exactly fills the rest is read (and the
// missing checksum is what is refused).
func TestStateRecordBounds(t *testing.T) {
	sel := selector(t)
	good := encoded(t, sel, stateOf(t, cur(6), ent("k", "v", 0, 5)))

	hdr, _ := proto.Marshal(&confgatev1.Selector{})
	short := append([]byte(stateMagic), stateVersion)
	short = binary.AppendUvarint(short, uint64(len(hdr)))
	short = append(short, hdr...)
	short = binary.AppendUvarint(short, 100)
	short = append(short, make([]byte, 10)...)

	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"record past the end", short, "record of 100 bytes is past the end of the file or over the limit"},
		{"no checksum", good[:len(good)-4], "checksum: file is truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decode(tt.file, sel)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// zeros reads as zero bytes.
type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// A record of exactly maxStateRecord bytes is read; one byte more is
// refused.
func TestStateRecordLimit(t *testing.T) {
	// A confgate.v1.Entry whose value fills the record with zero bytes.
	field := (&confgatev1.Entry{}).ProtoReflect().Descriptor().Fields().ByName("value").Number()
	reader := func(total int) (*stateReader, int) {
		var head []byte
		head = binary.AppendUvarint(head, uint64(total))
		body := protowire.AppendTag(nil, field, protowire.BytesType)
		valueLen := total - len(body) - 1
		for protowire.SizeBytes(valueLen)+len(body) != total {
			valueLen--
		}
		body = protowire.AppendVarint(body, uint64(valueLen))
		head = append(head, body...)
		src := io.MultiReader(bytes.NewReader(head), io.LimitReader(zeros{}, int64(valueLen)))
		return &stateReader{r: bufio.NewReader(src), sum: crc32.New(castagnoli), left: 1 << 40}, valueLen
	}

	sr, valueLen := reader(maxStateRecord)
	var e confgatev1.Entry
	if err := sr.record(&e); err != nil {
		t.Fatalf("record of exactly maxStateRecord bytes: %v", err)
	}
	if len(e.GetValue()) != valueLen {
		t.Fatalf("value of %d bytes, want %d", len(e.GetValue()), valueLen)
	}

	sr, _ = reader(maxStateRecord + 1)
	if err := sr.record(&e); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("record of maxStateRecord+1 bytes: %v, want the limit", err)
	}
}

// A token file read through newTokenCredentials logs to the logger given.
func TestTokenCredentialsLogger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	writeToken(t, path, tokenA)
	rec := &mutLog{}
	c, err := newTokenCredentials("", path, false, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	c.file.now = func() time.Time { return now }
	c.file.checked = now
	writeToken(t, path, "not a token")
	now = now.Add(tokenFileCheck)
	if tok, err := c.file.get(); err != nil || tok != tokenA {
		t.Fatalf("get = %.8s..., %v; want the previous token", tok, err)
	}
	if got := rec.get(); len(got) != 1 || !strings.HasPrefix(got[0], "WARN token file unusable") {
		t.Fatalf("log %q, want one warning", got)
	}
}

// What a token file's life logs: nothing for a rotation, one warning per
// distinct problem, one line when it is readable again.
func TestTokenFileLogs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	writeToken(t, path, tokenA)
	rec := &mutLog{}
	now := time.Unix(1000, 0)
	f := &tokenFile{path: path, now: func() time.Time { return now }, log: slog.New(rec)}
	const unusable = "WARN token file unusable, still sending the token read from it before"
	var want []string
	step := func(tok string, logs ...string) {
		t.Helper()
		now = now.Add(tokenFileCheck)
		if got, err := f.get(); err != nil || got != tok {
			t.Fatalf("get = %.8s..., %v; want %.8s...", got, err, tok)
		}
		want = append(want, logs...)
		if got := rec.get(); !slices.Equal(got, want) {
			t.Fatalf("log\n%q\nwant\n%q", got, want)
		}
	}
	step(tokenA)
	tmp := filepath.Join(dir, "token.new")
	writeToken(t, tmp, tokenB)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	step(tokenB) // rotated: nothing to log
	writeToken(t, path, "not a token")
	step(tokenB, unusable)
	writeToken(t, path, "not a token either")
	step(tokenB) // the same problem (a space at offset 3): not logged again
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	step(tokenB, unusable) // another problem
	writeToken(t, path, tokenA)
	step(tokenA, "INFO token file readable again, its token is in use")
}

// A token file is re-read only when its identity, size or modification
// time moved: a content change that keeps all three is not seen, a size
// change with the same modification time is.
func TestTokenFileSameFileNotReread(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	writeToken(t, path, tokenA)
	now := time.Unix(1000, 0)
	f := &tokenFile{path: path, now: func() time.Time { return now }, log: slog.New(slog.DiscardHandler)}
	step := func(want string) {
		t.Helper()
		now = now.Add(tokenFileCheck)
		if got, err := f.get(); err != nil || got != want {
			t.Fatalf("get = %.8s..., %v; want %.8s...", got, err, want)
		}
	}
	step(tokenA)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	mtime := fi.ModTime()
	rewrite := func(content string) {
		t.Helper()
		writeToken(t, path, content) // in place: same file
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(tokenB) // same size, same time
	step(tokenA)
	tokenC := tokenB + "c"
	rewrite(tokenC) // other size, same time
	step(tokenC)
}

// A token file of exactly maxTokenFileSize bytes is read; one byte more is
// refused.
func TestTokenFileSizeLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	tok := strings.Repeat("a", maxTokenFileSize-1)
	writeToken(t, path, tok+"\n")
	f := &tokenFile{path: path, now: time.Now, log: slog.New(slog.DiscardHandler)}
	if got, err := f.get(); err != nil || got != tok {
		t.Fatalf("file of %d bytes: token of %d bytes, %v; want it read", maxTokenFileSize, len(got), err)
	}
	writeToken(t, path, tok+"a\n")
	f = &tokenFile{path: path, now: time.Now, log: slog.New(slog.DiscardHandler)}
	if _, err := f.get(); err == nil || !strings.Contains(err.Error(), "more than the 65536") {
		t.Fatalf("file of %d bytes: %v, want the size limit", maxTokenFileSize+1, err)
	}
}

// checkToken's byte range: '!' through '~' only.
func TestCheckTokenBytes(t *testing.T) {
	for _, tt := range []struct {
		tok string
		ok  bool
	}{
		{"a!~z", true},
		{"a b", false},
		{"a\x7fb", false},
		{"a\x1fb", false},
		{"a\x80b", false},
	} {
		if err := checkToken(tt.tok); (err == nil) != tt.ok {
			t.Errorf("checkToken(%q) = %v, want ok %v", tt.tok, err, tt.ok)
		}
	}
}

// A target whose scheme part is empty (":///host") is judged by its host.
func TestLoopbackTargetEmptyScheme(t *testing.T) {
	for target, want := range map[string]bool{
		":///127.0.0.1:443":   true,
		":///localhost":       true,
		":///example.com:443": false,
	} {
		if got := loopbackTarget(target); got != want {
			t.Errorf("loopbackTarget(%q) = %v, want %v", target, got, want)
		}
	}
}
