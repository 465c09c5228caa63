package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

func selector(t testing.TB, prefixes ...string) keyspace.Selector {
	t.Helper()
	sel, err := keyspace.NewSelector(prefixes)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

// stateOf is the published state of a replica synced at c with es.
func stateOf(t *testing.T, c cursor.Cursor, es ...*confgatev1.Entry) *state {
	t.Helper()
	return syncedReplica(t, c, es...).publish()
}

// encoded returns the state file bytes of st for sel.
func encoded(t *testing.T, sel keyspace.Selector, st *state) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := encodeState(&b, sel, st); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func decode(b []byte, sel keyspace.Selector) (*replica, error) {
	return decodeState(bytes.NewReader(b), int64(len(b)), sel)
}

// writeState writes a state file of es at c for prefixes.
func writeState(t *testing.T, path string, c cursor.Cursor, prefixes []string, es ...*confgatev1.Entry) {
	t.Helper()
	if _, err := writeStateFile(path, selector(t, prefixes...), stateOf(t, c, es...)); err != nil {
		t.Fatal(err)
	}
}

// replicaKeys lists a replica like viewKeys lists a view.
func replicaKeys(r *replica) []string {
	v := &View{}
	v.state.Store(r.publish())
	return viewKeys(v, "")
}

// handMade builds a state file record by record with a correct checksum,
// for files that are well-formed but wrong inside.
func handMade(version byte, msgs ...proto.Message) []byte {
	b := append([]byte(stateMagic), version)
	for _, m := range msgs {
		body, _ := proto.Marshal(m)
		b = binary.AppendUvarint(b, uint64(len(body)))
		b = append(b, body...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func TestStateFileRoundTrip(t *testing.T) {
	d := ent("app/d", "4", 1, 7)
	d.ContentType = "application/json"
	d.Headers = []*confgatev1.Header{{Key: "content-type", Value: []byte("application/json")}, {Key: "by", Value: []byte("ci")}}
	big := ent("app/big", strings.Repeat("x", 3*stateChunkBytes), 0, 3) // forces several chunk records
	es := []*confgatev1.Entry{ent("app/a", "1", 0, 0), ent("app/b", "", 0, 1), big, d}
	for i := range 50 {
		es = append(es, ent("app/many/"+strings.Repeat("k", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)), strings.Repeat("v", 10_000), 2, int64(i)))
	}
	c := cursor.Cursor{Topic: topicA, Offsets: []int64{4, 8, 50}}
	tests := []struct {
		name     string
		prefixes []string
		es       []*confgatev1.Entry
	}{
		{"empty view", []string{"app/"}, nil},
		{"entries, metadata, several chunks", []string{"app/"}, es},
		{"select all", nil, es},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel := selector(t, tt.prefixes...)
			want := stateOf(t, c, tt.es...)
			b := encoded(t, sel, want)
			if got := bytes.Count(b, []byte("app/big")); len(tt.es) > 0 && got != 1 {
				t.Errorf("app/big appears %d times in the file", got)
			}
			r, err := decode(b, sel)
			if err != nil {
				t.Fatal(err)
			}
			if !r.synced || r.live || r.fresh {
				t.Errorf("loaded replica synced=%v live=%v fresh=%v, want synced only", r.synced, r.live, r.fresh)
			}
			if !r.cur.Equal(c) || r.cur.Topic != c.Topic {
				t.Errorf("cursor = %s, want %s", r.cur, c)
			}
			if r.sum != want.sum || r.tree.Len() != want.tree.Len() {
				t.Errorf("digest or length differ: %d entries, want %d", r.tree.Len(), want.tree.Len())
			}
			checkDigest(t, r)
			got, ok := r.tree.Get(&Entry{Key: "app/d"})
			if len(tt.es) > 0 && (!ok || got.ContentType != "application/json" || len(got.Headers) != 2 || string(got.Headers[1].Value) != "ci" || got.Partition != 1 || got.Offset != 7) {
				t.Errorf("app/d = %+v: metadata or version lost", got)
			}
			// Deterministic: the same state encodes to the same bytes.
			if !bytes.Equal(b, encoded(t, sel, want)) {
				t.Error("two encodings of one state differ")
			}
		})
	}
}

// TestStateFileRejected: every damaged or foreign file is refused as a
// whole, with an error that says why.
func TestStateFileRejected(t *testing.T) {
	sel := selector(t, "app/")
	c := cur(3, 2)
	es := []*confgatev1.Entry{ent("app/a", "1", 0, 0), ent("app/b", "2", 1, 1), ent("app/c", "3", 0, 2)}
	good := encoded(t, sel, stateOf(t, c, es...))
	if _, err := decode(good, sel); err != nil {
		t.Fatal(err)
	}
	hdr := &confgatev1.Selector{Prefixes: []string{"app/"}}
	chunkOf := func(es ...*confgatev1.Entry) proto.Message { return chunk(es...) }
	endOf := func(m *confgatev1.SubscribeResponse) proto.Message { return m }

	t.Run("every truncation", func(t *testing.T) {
		for n := range len(good) {
			if r, err := decode(good[:n], sel); err == nil || r != nil {
				t.Fatalf("a file cut at %d of %d bytes was accepted", n, len(good))
			}
		}
	})
	t.Run("every flipped bit", func(t *testing.T) {
		for i := range len(good) {
			for bit := range 8 {
				b := bytes.Clone(good)
				b[i] ^= 1 << bit
				if r, err := decode(b, sel); err == nil || r != nil {
					t.Fatalf("a file with bit %d of byte %d flipped was accepted", bit, i)
				}
			}
		}
	})

	badDigest := end(c, initial, es...)
	badDigest.GetSnapshotEnd().Digest = digestOf(es[0])
	badCount := end(c, initial, es...)
	badCount.GetSnapshotEnd().EntryCount = 2
	noDigest := end(c, initial, es...)
	noDigest.GetSnapshotEnd().Digest = nil
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"not a state file", []byte("payments/db/timeout=30s\n"), "bad magic"},
		{"other selector", good, "made for selector [app/], this view's is [db/]"},
		{"unknown version", append(append([]byte(stateMagic), 2), good[len(stateMagic)+1:]...), "format version 2"},
		{"trailing bytes", append(bytes.Clone(good), 0), "after the checksum"},
		{"checksum ok, digest wrong", handMade(stateVersion, hdr, chunkOf(es...), endOf(badDigest)), "digest"},
		{"checksum ok, count wrong", handMade(stateVersion, hdr, chunkOf(es...), endOf(badCount)), "entries"},
		{"checksum ok, no digest", handMade(stateVersion, hdr, chunkOf(es...), endOf(noDigest)), "no digest"},
		{"checksum ok, entry outside the selector", handMade(stateVersion, hdr, chunkOf(ent("db/x", "1", 0, 0)), endOf(end(c, initial, ent("db/x", "1", 0, 0)))), "does not match the selector"},
		{"checksum ok, entry at the cursor", handMade(stateVersion, hdr, chunkOf(ent("app/a", "1", 0, 3)), endOf(end(c, initial, ent("app/a", "1", 0, 3)))), "at or past its cursor"},
		{"checksum ok, no end", handMade(stateVersion, hdr, chunkOf(es...)), ""},
		{"checksum ok, bad cursor", handMade(stateVersion, hdr, &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_SnapshotEnd{SnapshotEnd: &confgatev1.SnapshotEnd{Cursor: []byte{9}, Digest: digestOf()}}}), "unknown format"},
		{"checksum ok, unknown record", handMade(stateVersion, hdr, progress(c, 0, false)), "unknown record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sel
			if tt.name == "other selector" {
				s = selector(t, "db/")
			}
			r, err := decode(tt.file, s)
			if err == nil || r != nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "protocol violation") {
				t.Errorf("error %q blames a gateway for a file", err)
			}
		})
	}
}

func TestStateFileWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "view.state")
	sel := selector(t, "app/")
	st := stateOf(t, cur(2), ent("app/a", "1", 0, 0))
	n, err := writeStateFile(path, sel, st)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != n || fi.Mode().Perm() != 0o600 {
		t.Errorf("file is %d bytes, mode %v; want %d bytes, 0600", fi.Size(), fi.Mode().Perm(), n)
	}
	// Replaced as a whole by a second write.
	if _, err := writeStateFile(path, sel, stateOf(t, cur(5), ent("app/b", "2", 0, 4))); err != nil {
		t.Fatal(err)
	}
	r, err := readStateFile(path, sel)
	if err != nil {
		t.Fatal(err)
	}
	if got := replicaKeys(r); !slices.Equal(got, []string{"app/b=2@0:4"}) || !r.cur.Equal(cur(5)) {
		t.Errorf("after the second write: %q at %s", got, r.cur)
	}
	if des, _ := os.ReadDir(dir); len(des) != 1 {
		t.Errorf("directory holds %d files, want only the state file", len(des))
	}

	t.Run("failed write leaves no temporary file", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "view.state")
		// Renaming a file over a non-empty directory fails.
		if err := os.MkdirAll(filepath.Join(path, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := writeStateFile(path, sel, st); err == nil {
			t.Fatal("write over a directory succeeded")
		}
		if des, _ := os.ReadDir(dir); len(des) != 1 {
			t.Errorf("directory holds %d entries after a failed write, want the directory only", len(des))
		}
	})
}

// startFileView is startView with a state file.
func startFileView(t *testing.T, cfg Config, path string) *View {
	t.Helper()
	cfg.StateFile = path
	return startView(t, cfg)
}

// fileCursor reads the state file's cursor, or "" when it is absent or
// invalid.
func fileCursor(t *testing.T, path string, prefixes ...string) string {
	t.Helper()
	r, err := readStateFile(path, selector(t, prefixes...))
	if err != nil {
		return ""
	}
	return r.cur.String()
}

// TestStateFileLoadAndResume: a view boots from the file while its gateway
// is down, serves it at once, reports it as stale and from the file, and
// resumes from the file's cursor once the gateway is up.
func TestStateFileLoadAndResume(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.state")
	a, b := ent("app/a", "1", 0, 0), ent("app/b", "2", 1, 0)
	writeState(t, path, cur(3, 1), []string{"app/"}, a, b)

	up := make(chan struct{})
	g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		select {
		case <-up:
		case <-ss.Context().Done():
			return nil
		}
		if err := send(ss, progress(cur(3, 1), 0, false), delta(cur(4, 1), put(ent("app/c", "3", 0, 3)))); err != nil {
			return err
		}
		return hold(ss)
	})
	var rec recorder
	v := startFileView(t, Config{Addrs: []string{g.addr}, Prefixes: []string{"app/"}, OnChange: rec.add}, path)

	// At once, before any gateway answered.
	if got, want := viewKeys(v, ""), []string{"app/a=1@0:0", "app/b=2@1:0"}; !slices.Equal(got, want) {
		t.Errorf("loaded view = %q, want %q", got, want)
	}
	if v.Cursor() != cur(3, 1).String() || !bytes.Equal(v.Digest(), digestOf(a, b)) {
		t.Errorf("loaded cursor %s digest %x", v.Cursor(), v.Digest())
	}
	if st := v.Status(); !st.FromFile || !st.Stale || st.Connected || st.StateFileError != nil {
		t.Errorf("status = %+v, want from file, stale, not connected", st)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
	defer cancel()
	if err := v.WaitLoaded(ctx); err != nil {
		t.Errorf("WaitLoaded = %v, want nil at once", err)
	}
	if err := v.WaitSynced(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitSynced = %v before a gateway answered", err)
	}
	if rc := g.request(t, 0).GetResumeCursor(); !bytes.Equal(rc, cur(3, 1).Encode()) {
		t.Errorf("first request resume cursor = %x, want the file's %x", rc, cur(3, 1).Encode())
	}

	close(up)
	waitSynced(t, v)
	eventually(t, "delta", func() bool { return v.Cursor() == cur(4, 1).String() })
	// Change callbacks run just after the state is published.
	eventually(t, "the delta's event", func() bool { return len(rec.get()) >= 2 })
	if st := v.Status(); st.FromFile || st.Stale || !st.Connected || st.Resets != 0 {
		t.Errorf("status = %+v, want live, no reset", st)
	}
	var kinds []string
	for _, e := range rec.get() {
		kinds = append(kinds, e.Kind.String()+" "+e.Key)
	}
	if want := []string{"loaded ", "put app/c"}; !slices.Equal(kinds, want) {
		t.Errorf("events = %q, want %q", kinds, want)
	}
	if evs := rec.get(); len(evs) > 0 && evs[0].Cursor != cur(3, 1).String() {
		t.Errorf("loaded event cursor = %s", evs[0].Cursor)
	}
	// The change reaches the file (StateFileInterval default, 1s, at most).
	eventuallyFor(t, 5*time.Second, "state file update", func() bool { return fileCursor(t, path, "app/") == cur(4, 1).String() })
}

func eventuallyFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStateFileReset: a gateway that no longer holds the history after the
// file's cursor answers with a snapshot, which replaces the loaded view.
func TestStateFileReset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.state")
	writeState(t, path, cur(3), nil, ent("a", "1", 0, 0), ent("b", "2", 0, 1))
	g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if err := send(ss, snapshot(cur(9), expired, ent("a", "1b", 0, 7))...); err != nil {
			return err
		}
		return hold(ss)
	})
	var rec recorder
	v := startFileView(t, Config{Addrs: []string{g.addr}, OnChange: rec.add}, path)
	waitSynced(t, v)
	if got := viewKeys(v, ""); !slices.Equal(got, []string{"a=1b@0:7"}) {
		t.Errorf("view = %q", got)
	}
	if st := v.Status(); st.Resets != 1 || st.FromFile {
		t.Errorf("status = %+v, want one reset, not from file", st)
	}
	eventually(t, "events", func() bool { return len(rec.get()) == 2 })
	if evs := rec.get(); evs[0].Kind != EventLoaded || evs[1].Kind != EventReset {
		t.Errorf("events = %+v, want loaded then reset", evs)
	}
	// The first snapshot after a load is written at once.
	eventually(t, "state file update", func() bool { return fileCursor(t, path) == cur(9).String() })
}

// TestStateFileIgnored: a damaged, foreign or unreadable file leaves the
// view empty (never partial), is reported, and the view subscribes
// without a cursor and then replaces the file with a good one.
func TestStateFileIgnored(t *testing.T) {
	sel := selector(t, "app/")
	good := encoded(t, sel, stateOf(t, cur(3), ent("app/a", "1", 0, 0), ent("app/b", "2", 0, 1)))
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
		want  string
	}{
		{"truncated", func(t *testing.T, path string) {
			if err := os.WriteFile(path, good[:len(good)-7], 0o600); err != nil {
				t.Fatal(err)
			}
		}, "truncated"},
		{"corrupt", func(t *testing.T, path string) {
			b := bytes.Clone(good)
			b[len(b)/2] ^= 0x10
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "state file"},
		{"other selector", func(t *testing.T, path string) {
			writeState(t, path, cur(3), []string{"db/"}, ent("db/x", "1", 0, 0))
		}, "made for selector [db/]"},
		{"a directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "view.state")
			tt.setup(t, path)
			up := make(chan struct{})
			g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
				select {
				case <-up:
				case <-ss.Context().Done():
					return nil
				}
				if err := send(ss, snapshot(cur(5), initial, ent("app/z", "26", 0, 4))...); err != nil {
					return err
				}
				return hold(ss)
			})
			var rec recorder
			v := startFileView(t, Config{Addrs: []string{g.addr}, Prefixes: []string{"app/"}, OnChange: rec.add}, path)
			if v.Len() != 0 || v.Cursor() != "" {
				t.Errorf("view has %d entries at %q from an ignored file", v.Len(), v.Cursor())
			}
			st := v.Status()
			if st.FromFile || st.StateFileError == nil || !strings.Contains(st.StateFileError.Error(), tt.want) {
				t.Errorf("status = %+v, want not from file and an error mentioning %q", st, tt.want)
			}
			if rc := g.request(t, 0).GetResumeCursor(); len(rc) != 0 {
				t.Errorf("resumed with %x from an ignored file", rc)
			}
			close(up)
			waitSynced(t, v)
			if got := viewKeys(v, ""); !slices.Equal(got, []string{"app/z=26@0:4"}) {
				t.Errorf("view = %q", got)
			}
			eventually(t, "the snapshot's event", func() bool { return len(rec.get()) > 0 })
			if evs := rec.get(); evs[0].Kind != EventSnapshot {
				t.Errorf("events = %+v, want a snapshot first", evs)
			}
			if tt.name == "a directory" {
				eventually(t, "write error", func() bool {
					err := v.Status().StateFileError
					return err != nil && strings.Contains(err.Error(), "not written")
				})
				return
			}
			eventually(t, "good state file", func() bool { return fileCursor(t, path, "app/") == cur(5).String() })
			eventually(t, "error cleared", func() bool { return v.Status().StateFileError == nil })
		})
	}
}

// TestStateFileCrashLeftovers: a process killed mid-write leaves a
// temporary file and the previous state file (or none). The next start
// loads the previous file, never the partial one, and removes the leftover.
func TestStateFileCrashLeftovers(t *testing.T) {
	sel := selector(t, "app/")
	newer := encoded(t, sel, stateOf(t, cur(9), ent("app/a", "new", 0, 8)))
	partial := newer[:len(newer)/2]
	for _, previous := range []bool{true, false} {
		name := map[bool]string{true: "previous file kept", false: "no previous file"}[previous]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "view.state")
			if previous {
				writeState(t, path, cur(3), []string{"app/"}, ent("app/a", "old", 0, 2))
			}
			leftover := filepath.Join(dir, "view.state"+stateTempInfix+"12345")
			if err := os.WriteFile(leftover, partial, 0o600); err != nil {
				t.Fatal(err)
			}
			other := filepath.Join(dir, "other.state"+stateTempInfix+"1") // not ours
			if err := os.WriteFile(other, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			v := startFileView(t, Config{Addrs: []string{downAddr(t)}, Prefixes: []string{"app/"}}, path)
			want := []string(nil)
			if previous {
				want = []string{"app/a=old@0:2"}
			}
			if got := viewKeys(v, ""); !slices.Equal(got, want) {
				t.Errorf("view = %q, want %q", got, want)
			}
			if st := v.Status(); st.FromFile != previous || st.StateFileError != nil {
				t.Errorf("status = %+v", st)
			}
			if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("leftover temporary file still there: %v", err)
			}
			if _, err := os.Stat(other); err != nil {
				t.Errorf("another file's temporary file was removed: %v", err)
			}
		})
	}
}

// TestStateFileWriteSchedule: the first snapshot is written at once, later
// changes wait for StateFileInterval, and Close writes the last state.
func TestStateFileWriteSchedule(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.state")
	more := make(chan struct{})
	g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if call > 0 {
			return hold(ss)
		}
		if err := send(ss, snapshot(cur(2), initial, ent("a", "1", 0, 0))...); err != nil {
			return err
		}
		select {
		case <-more:
		case <-ss.Context().Done():
			return nil
		}
		if err := send(ss, delta(cur(3), put(ent("b", "2", 0, 2))), progress(cur(4), 0, false)); err != nil {
			return err
		}
		return hold(ss)
	})
	v := startFileView(t, Config{Addrs: []string{g.addr}, StateFileInterval: time.Hour}, path)
	waitSynced(t, v)
	eventually(t, "first write", func() bool { return fileCursor(t, path) == cur(2).String() })
	close(more)
	eventually(t, "progress", func() bool { return v.Cursor() == cur(4).String() })
	time.Sleep(50 * time.Millisecond) // would be long enough for a write
	if got := fileCursor(t, path); got != cur(2).String() {
		t.Errorf("file cursor = %s within the interval, want still %s", got, cur(2))
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := readStateFile(path, selector(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := replicaKeys(r); !r.cur.Equal(cur(4)) || !slices.Equal(got, []string{"a=1@0:0", "b=2@0:2"}) {
		t.Errorf("after Close the file holds %q at %s, want both keys at %s", got, r.cur, cur(4))
	}
}

// TestStateFileAlwaysWhole: a reader polling the file while the view
// changes and rewrites it as fast as allowed never sees a partial file.
func TestStateFileAlwaysWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.state")
	const deltas = 200
	g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if call > 0 {
			return hold(ss)
		}
		if err := send(ss, snapshot(cur(1), initial, ent("k/0", "v", 0, 0))...); err != nil {
			return err
		}
		for i := int64(1); i <= deltas; i++ {
			// Values grow so that files of different sizes replace each other.
			if err := send(ss, delta(cur(i+1), put(ent("k/"+string(rune('a'+i%26)), strings.Repeat("x", int(i)*100), 0, i)))); err != nil {
				return err
			}
			time.Sleep(200 * time.Microsecond)
		}
		return hold(ss)
	})
	// Rewrites as fast as the disk allows, without the duty bound.
	v := startViewWith(t, Config{Addrs: []string{g.addr}, StateFileInterval: time.Microsecond, StateFile: path},
		func(s *settings) { s.stateFileDuty = 0 })
	sel := selector(t)
	stopRead := make(chan struct{})
	var reads, distinct int
	var readErr error
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		last := ""
		for {
			select {
			case <-stopRead:
				return
			default:
			}
			r, err := readStateFile(path, sel)
			switch {
			case errors.Is(err, os.ErrNotExist):
				continue
			case err != nil:
				readErr = err
				return
			}
			reads++
			if c := r.cur.String(); c != last {
				last, distinct = c, distinct+1
			}
		}
	}()
	eventually(t, "last delta", func() bool { return v.Cursor() == cur(deltas+1).String() })
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	close(stopRead)
	<-readDone
	if readErr != nil {
		t.Fatalf("a reader saw a bad state file after %d good reads: %v", reads, readErr)
	}
	if distinct < 3 {
		t.Errorf("only %d distinct files in %d reads: the test did not race writes against reads", distinct, reads)
	}
	t.Logf("%d reads, %d distinct states", reads, distinct)
	if got := fileCursor(t, path); got != cur(deltas+1).String() {
		t.Errorf("final file cursor = %s", got)
	}
}

// The writer's pause after a write keeps it writing at most ~5% of the time,
// whatever the interval.
func TestStateFileWritePause(t *testing.T) {
	tests := []struct {
		interval, took, want time.Duration
	}{
		{time.Second, 0, time.Second},                                 // nothing written
		{time.Second, 10 * time.Millisecond, time.Second},             // small view: the interval
		{time.Second, 50 * time.Millisecond, time.Second},             // the bound meets the interval
		{time.Second, 500 * time.Millisecond, 10 * time.Second},       // 100 MB view: 20x the write
		{time.Minute, 500 * time.Millisecond, time.Minute},            // a long interval stays
		{10 * time.Millisecond, 2 * time.Second, 40 * time.Second},    // a slow disk
		{time.Millisecond, time.Millisecond, 20 * time.Millisecond},   // never a busy loop
		{time.Second, 51 * time.Millisecond, 1020 * time.Millisecond}, // just past it
	}
	for _, tt := range tests {
		if got := writePause(tt.interval, tt.took, stateFileDuty); got != tt.want {
			t.Errorf("writePause(%v, %v) = %v, want %v", tt.interval, tt.took, got, tt.want)
		}
	}
}

// BenchmarkStateFileWrite100MB writes a 100 MB view (100,000 entries of
// 1 KB) the way the writer does: temporary file, fsync, rename, directory
// fsync. Its time per write, times stateFileDuty, is the least pause between
// two writes of such a view.
func BenchmarkStateFileWrite100MB(b *testing.B) {
	const n, size = 100_000, 1000
	value := strings.Repeat("v", size)
	es := make([]*confgatev1.Entry, n)
	for i := range es {
		es[i] = ent(fmt.Sprintf("svc/%03d/key-%06d", i%1000, i), value, int32(i%6), int64(i/6))
	}
	st := syncedReplica(b, cursor.Cursor{Topic: topicA, Offsets: []int64{n, n, n, n, n, n}}, es...).publish()
	sel := selector(b)
	path := filepath.Join(b.TempDir(), "view.state")
	b.ResetTimer()
	var written int64
	for b.Loop() {
		n, err := writeStateFile(path, sel, st)
		if err != nil {
			b.Fatal(err)
		}
		written = n
	}
	b.SetBytes(written)
}
