package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/digest"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// fuzzBytes hands out fuzz input a byte at a time (0 once it runs out).
type fuzzBytes struct{ b []byte }

func (f *fuzzBytes) next() byte {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}

func (f *fuzzBytes) take(n int) []byte {
	n = min(n, len(f.b))
	out := f.b[:n]
	f.b = f.b[n:]
	return out
}

var fuzzKeys = []string{"a/1", "a/2", "b/1", "a", ""}

// messageGen makes gateway messages from fuzz bytes: mostly plausible ones
// (cursors near the view's, correct counts and digests) so the fuzzer gets
// past the checks, sometimes wrong ones, and sometimes raw protobuf.
type messageGen struct {
	in *fuzzBytes
	r  *replica
	// building mirrors the snapshot in progress, to send correct ends.
	building map[string]*confgatev1.Entry
}

func (g *messageGen) entry() *confgatev1.Entry {
	key := fuzzKeys[int(g.in.next())%len(fuzzKeys)]
	e := &confgatev1.Entry{Key: key, Value: []byte{'v', '0' + g.in.next()%4}}
	if v := g.in.next(); v != 255 {
		e.Version = &confgatev1.Version{Partition: int32(v % 3), Offset: int64(g.in.next()%12) - 1}
	}
	return e
}

func (g *messageGen) cursor() []byte {
	mode := g.in.next()
	if mode == 255 {
		return g.in.take(int(g.in.next() % 24)) // anything
	}
	c := cursor.Cursor{Topic: topicA}
	if mode%16 == 1 {
		c.Topic = topicB
	}
	n := int(g.in.next() % 3)
	for p := range n {
		off := int64(g.in.next() % 12)
		if mode&0x80 != 0 { // near the view's cursor
			off = g.r.cur.Offset(int32(p)) + int64(g.in.next()%3)
		}
		c.Offsets = append(c.Offsets, off)
	}
	return c.Encode()
}

func (g *messageGen) message() *confgatev1.SubscribeResponse {
	switch g.in.next() % 5 {
	case 0:
		var es []*confgatev1.Entry
		for range g.in.next() % 4 {
			e := g.entry()
			es = append(es, e)
			if g.building == nil {
				g.building = map[string]*confgatev1.Entry{}
			}
			g.building[e.GetKey()] = e
		}
		return chunk(es...)
	case 1:
		var es []*confgatev1.Entry
		for _, e := range g.building {
			es = append(es, e)
		}
		g.building = nil
		end := &confgatev1.SnapshotEnd{
			Cursor:     g.cursor(),
			Reason:     confgatev1.SnapshotReason(g.in.next() % 7),
			EntryCount: uint64(len(es)),
			Digest:     digestOf(es...),
		}
		flags := g.in.next()
		end.Reset_ = flags&1 != 0
		if flags&2 != 0 {
			end.EntryCount = uint64(g.in.next() % 4)
		}
		switch (flags >> 2) % 4 {
		case 1:
			end.Digest = nil
		case 2:
			end.Digest = g.in.take(16)
		}
		return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_SnapshotEnd{SnapshotEnd: end}}
	case 2:
		d := &confgatev1.Delta{Cursor: g.cursor(), Coalesced: g.in.next()&1 != 0}
		for range g.in.next() % 4 {
			e := g.entry()
			switch g.in.next() % 3 {
			case 0:
				d.Changes = append(d.Changes, put(e))
			case 1:
				d.Changes = append(d.Changes, &confgatev1.Change{Change: &confgatev1.Change_Delete{
					Delete: &confgatev1.Deletion{Key: e.GetKey(), Version: e.GetVersion()}}})
			default:
				d.Changes = append(d.Changes, &confgatev1.Change{})
			}
		}
		return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Delta{Delta: d}}
	case 3:
		return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Progress{
			Progress: &confgatev1.Progress{Cursor: g.cursor(), LagRecords: int64(g.in.next()), Stale: g.in.next()&1 != 0}}}
	default:
		var m confgatev1.SubscribeResponse
		if proto.Unmarshal(g.in.take(int(g.in.next()%64)), &m) != nil {
			return &confgatev1.SubscribeResponse{}
		}
		return &m
	}
}

// replicaImage is everything a reader of the view sees.
type replicaImage struct {
	entries []string
	sum     []byte
	cur     cursor.Cursor
	synced  bool
	live    bool
}

func imageOf(r *replica) replicaImage {
	im := replicaImage{sum: r.sum.Bytes(), cur: r.cur.Clone(), synced: r.synced, live: r.live}
	r.tree.Ascend(func(e *Entry) bool {
		im.entries = append(im.entries, fmt.Sprintf("%q=%q@%d:%d", e.Key, e.Value, e.Partition, e.Offset))
		return true
	})
	return im
}

func (a replicaImage) equal(b replicaImage) bool {
	return slices.Equal(a.entries, b.entries) && bytes.Equal(a.sum, b.sum) && a.cur.Equal(b.cur) &&
		a.cur.Topic == b.cur.Topic && len(a.cur.Offsets) == len(b.cur.Offsets) && a.synced == b.synced && a.live == b.live
}

// checkReplica asserts what holds of any view at any time: the digest is
// the digest of its entries, and once synced every entry's version is a
// real Kafka position before the view's cursor.
func checkReplica(t *testing.T, r *replica) {
	t.Helper()
	var d digest.Digest
	r.tree.Ascend(func(e *Entry) bool {
		d.Add(digest.Hash(e.Key, e.Value, e.Partition, e.Offset))
		if e.Key == "" {
			t.Fatalf("entry without a key in the view")
		}
		if r.synced && (e.Partition < 0 || e.Offset < 0 || e.Offset >= r.cur.Offset(e.Partition)) {
			t.Fatalf("entry %q at partition %d offset %d: not a position before the view's cursor %v", e.Key, e.Partition, e.Offset, r.cur)
		}
		return true
	})
	if !bytes.Equal(d.Bytes(), r.sum.Bytes()) {
		t.Fatalf("digest %x, its entries give %x", r.sum.Bytes(), d.Bytes())
	}
	if st := r.publish(); !bytes.Equal(st.sum.Bytes(), r.sum.Bytes()) || st.tree.Len() != r.tree.Len() {
		t.Fatalf("published state differs from the replica")
	}
}

// FuzzReplica feeds the client's message handler arbitrary sequences of
// gateway messages, on streams that break after each refused message the
// way the run loop does, and asserts: it never panics; a refused message
// changes nothing; the digest always matches the entries; entry versions
// lie before the cursor; the cursor never moves backwards or to another
// topic except through a snapshot flagged as a reset of the kinds that may
// (or another topic's snapshot on a stream without a resume cursor).
func FuzzReplica(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x00\x03\x00\x00\x01\x01\x01\x00\x02\x02\x01\x05\x01\x00\x00\x80\x01\x00\x00\x00"))
	f.Add([]byte("\x01\x80\x02\x00\x00\x00\x00\x02\x80\x02\x01\x01\x01\x00\x00\x01\x05\x00\x03\x80\x02\x02\x02"))
	f.Add([]byte("\x00\x02\x00\x01\x01\x03\x02\x01\x02\x02\x01\x04\x01\x01\x00\x01\x06\x05\x01\x03\x06\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzBytes{b: data}
		r := newReplica()
		g := &messageGen{in: in, r: r}
		s := &session{}
		for i := 0; len(in.b) > 0 && i < 200; i++ {
			m := g.message()
			before := imageOf(r)
			res, err := r.handle(s, m)
			if err != nil {
				var pe *protocolError
				if !errors.As(err, &pe) {
					t.Fatalf("message %d: error %v is not a protocol error", i, err)
				}
				if after := imageOf(r); !after.equal(before) {
					t.Fatalf("message %d (%v) refused (%v) but the view changed:\n%+v\n%+v", i, m, err, before, after)
				}
				// The run loop drops the stream and opens another.
				r.fresh = r.fresh || pe.fresh
				s = &session{resumed: r.synced && !r.fresh}
				g.building = nil
				continue
			}
			checkReplica(t, r)
			if !before.synced || !r.synced {
				if before.synced {
					t.Fatalf("message %d (%v) unsynced the view", i, m)
				}
				continue
			}
			if r.cur.Covers(before.cur) {
				continue
			}
			end := m.GetSnapshotEnd()
			otherTopic := r.cur.Topic != before.cur.Topic
			rebuilt := end.GetReason() == confgatev1.SnapshotReason_SNAPSHOT_REASON_STATE_REBUILT ||
				end.GetReason() == confgatev1.SnapshotReason_SNAPSHOT_REASON_TOPIC_CHANGED
			allowed := end != nil && res.reset && ((end.GetReset_() && (otherTopic || rebuilt)) || (otherTopic && !s.resumed))
			if !allowed {
				t.Fatalf("message %d (%v) moved the cursor backwards: %v -> %v", i, m, before.cur, r.cur)
			}
		}
	})
}

// withCRC replaces the last 4 bytes of b with the checksum of the rest, so
// the fuzzer can reach the checks behind it.
func withCRC(b []byte) []byte {
	if len(b) < 4 {
		return b
	}
	out := slices.Clone(b)
	binary.BigEndian.PutUint32(out[len(out)-4:], crc32.Checksum(out[:len(out)-4], castagnoli))
	return out
}

// FuzzStateFile loads arbitrary bytes as a state file (as they are, and
// with the checksum made right) for two selectors and asserts: it never
// panics; a file it accepts gives a synced view whose digest matches its
// entries, whose entries match the selector and lie before its cursor; and
// writing that view again gives a file that loads to the same view and
// writes to the same bytes.
func FuzzStateFile(f *testing.F) {
	sels := []keyspace.Selector{selector(f), selector(f, "a/")}
	full := syncedReplica(f, cur(3, 5), ent("a/1", "x", 0, 1), ent("a/2", "y", 1, 4), ent("b/1", "z", 0, 2))
	part := syncedReplica(f, cur(3, 5), ent("a/1", "x", 0, 1), ent("a/2", "y", 1, 4))
	for _, c := range []struct {
		sel keyspace.Selector
		r   *replica
	}{{sels[0], full}, {sels[1], part}, {sels[0], newReplica()}} {
		var b bytes.Buffer
		if err := encodeState(&b, c.sel, c.r.publish()); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Add(handMade(stateVersion, &confgatev1.Selector{}, chunk(ent("a/1", "x", 0, 9)),
		end(cur(3), initial, ent("a/1", "x", 0, 9))))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, b := range [][]byte{data, withCRC(data)} {
			for _, sel := range sels {
				r, err := decode(b, sel)
				if err != nil {
					if r != nil {
						t.Fatalf("error %v with a replica", err)
					}
					continue
				}
				if !r.synced || r.live || r.fresh {
					t.Fatalf("loaded replica synced %v live %v fresh %v, want synced only", r.synced, r.live, r.fresh)
				}
				checkReplica(t, r)
				r.tree.Ascend(func(e *Entry) bool {
					if !sel.Match(e.Key) {
						t.Fatalf("loaded entry %q outside the selector %s", e.Key, sel)
					}
					return true
				})
				var again bytes.Buffer
				if err := encodeState(&again, sel, r.publish()); err != nil {
					t.Fatal(err)
				}
				r2, err := decode(again.Bytes(), sel)
				if err != nil {
					t.Fatalf("a loaded state written again does not load: %v", err)
				}
				if a, b := imageOf(r), imageOf(r2); !a.equal(b) {
					t.Fatalf("reload differs:\n%+v\n%+v", a, b)
				}
				var third bytes.Buffer
				if err := encodeState(&third, sel, r2.publish()); err != nil || !bytes.Equal(third.Bytes(), again.Bytes()) {
					t.Fatalf("writing is not stable (%v)", err)
				}
			}
		}
	})
}

// TestNegativeVersionRefused: found by FuzzReplica. A version with a
// negative partition or offset is no Kafka position; accepted, it passed
// the "before the cursor" checks and, as another partition, could replace
// or delete any entry whatever its version.
func TestNegativeVersionRefused(t *testing.T) {
	tests := []struct {
		name string
		msgs func(r *replica) []*confgatev1.SubscribeResponse
	}{
		{"snapshot entry offset", func(*replica) []*confgatev1.SubscribeResponse {
			return snapshot(cur(9), initial, ent("a/1", "x", 0, -1))
		}},
		{"snapshot entry partition", func(*replica) []*confgatev1.SubscribeResponse {
			return snapshot(cur(9), initial, ent("a/1", "x", -1, -1))
		}},
		{"delta put", func(*replica) []*confgatev1.SubscribeResponse {
			return []*confgatev1.SubscribeResponse{delta(cur(6), put(ent("a/1", "y", -1, -1)))}
		}},
		{"delta delete", func(*replica) []*confgatev1.SubscribeResponse {
			return []*confgatev1.SubscribeResponse{delta(cur(6), del("a/1", -1, -1))}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := syncedReplica(t, cur(5), ent("a/1", "x", 0, 4))
			before := imageOf(r)
			s := &session{resumed: true}
			var err error
			for _, m := range tt.msgs(r) {
				if _, err = r.handle(s, m); err != nil {
					break
				}
			}
			var pe *protocolError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v, want a protocol violation", err)
			}
			if after := imageOf(r); !after.equal(before) {
				t.Fatalf("view changed:\n%+v\n%+v", before, after)
			}
		})
	}
}
