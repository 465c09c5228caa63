package client

// The language-neutral conformance vectors in testdata/conformance (see its
// README.md): the Go implementation is the reference, so this test checks
// Go against every vector and, with -update, rewrites the fields Go
// computes (encodings, comparisons, hashes, expected views). What a vector
// asserts by hand (that a message is accepted or rejected, and why; that an
// encoding is invalid, and why; that a selector is refused, and why) is
// never rewritten: -update fails when Go disagrees with it.
//
//	go test ./client -run TestConformance            # check
//	go test ./client -run TestConformance -update    # regenerate, then review the diff

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/digest"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

var update = flag.Bool("update", false, "rewrite the generated fields of ../testdata/conformance from the Go implementation")

const conformanceDir = "../testdata/conformance"

// maxJSONInt is the largest integer every JSON parser reads exactly
// (JavaScript numbers are doubles); larger int64 values are decimal strings.
const maxJSONInt = 1<<53 - 1

func readConformance(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(conformanceDir, name))
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func writeConformance(t *testing.T, name string, v any) {
	t.Helper()
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	e.SetIndent("", " ")
	if err := e.Encode(v); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conformanceDir, name), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// gen sets a generated field under -update and checks it otherwise.
func gen[T any](t *testing.T, what string, field *T, got T) {
	t.Helper()
	if *update {
		*field = got
		return
	}
	if !reflect.DeepEqual(*field, got) {
		t.Errorf("%s: the file says %s, Go computes %s (regenerate with -update if Go is right)", what, show(*field), show(got))
	}
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// phrases are the error classes of phrases.json: a message of class c
// contains phrases[c].
func loadPhrases(t *testing.T) map[string]string {
	var f struct {
		Comment string            `json:"comment"`
		Phrases map[string]string `json:"phrases"`
	}
	readConformance(t, "phrases.json", &f)
	var rules struct {
		Phrases map[string]string `json:"phrases"`
	}
	b, err := os.ReadFile("../internal/keyspace/testdata/rules.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	for k, v := range rules.Phrases {
		if _, dup := f.Phrases[k]; dup {
			t.Fatalf("phrases.json redefines the key rule %q of rules.json", k)
		}
		f.Phrases[k] = v
	}
	return f.Phrases
}

func checkClass(t *testing.T, phrases map[string]string, what, class string, err error) {
	t.Helper()
	p, ok := phrases[class]
	switch {
	case class == "":
		t.Errorf("%s: rejected (%v) but the vector names no error class", what, err)
	case !ok:
		t.Errorf("%s: error class %q is not in phrases.json", what, class)
	case !strings.Contains(err.Error(), p):
		t.Errorf("%s: error %q is not of class %q (phrase %q)", what, err, class, p)
	}
}

// decStr is an int64 written as a decimal string (offsets may exceed 2^53).
type decStr int64

func (d decStr) MarshalJSON() ([]byte, error) { return json.Marshal(strconv.FormatInt(int64(d), 10)) }

func (d *decStr) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("int64 values are decimal strings here: %w", err)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	*d = decStr(n)
	return err
}

// Cursors.

type cursorVec struct {
	Topic   string   `json:"topic"` // 32 hex digits
	Offsets []decStr `json:"offsets"`
}

func (v cursorVec) cursor(t *testing.T) cursor.Cursor {
	t.Helper()
	b, err := hex.DecodeString(v.Topic)
	if err != nil || len(b) != 16 {
		t.Fatalf("topic %q is not 32 hex digits", v.Topic)
	}
	var c cursor.Cursor
	copy(c.Topic[:], b)
	c.Offsets = []int64{}
	for _, o := range v.Offsets {
		c.Offsets = append(c.Offsets, int64(o))
	}
	return c
}

func vecOf(c cursor.Cursor) cursorVec {
	v := cursorVec{Topic: hex.EncodeToString(c.Topic[:]), Offsets: []decStr{}}
	for _, o := range c.Offsets {
		v.Offsets = append(v.Offsets, decStr(o))
	}
	return v
}

type cursorFile struct {
	Comment string `json:"comment"`
	Valid   []struct {
		Name string `json:"name"`
		cursorVec
		Hex  string `json:"hex"`
		Text string `json:"text"`
	} `json:"valid"`
	Noncanonical []struct {
		Name string `json:"name"`
		Hex  string `json:"hex"`
		cursorVec
		Canonical string `json:"canonical"`
	} `json:"noncanonical"`
	Invalid []struct {
		Name  string `json:"name"`
		Hex   string `json:"hex"`
		Error string `json:"error"`
	} `json:"invalid"`
	InvalidText []struct {
		Name  string `json:"name"`
		Text  string `json:"text"`
		Error string `json:"error"`
	} `json:"invalid_text"`
	Compare []struct {
		Name     string    `json:"name"`
		A        cursorVec `json:"a"`
		B        cursorVec `json:"b"`
		ACoversB bool      `json:"a_covers_b"`
		BCoversA bool      `json:"b_covers_a"`
		Equal    bool      `json:"equal"`
	} `json:"compare"`
}

func TestConformanceCursor(t *testing.T) {
	phrases := loadPhrases(t)
	var f cursorFile
	readConformance(t, "cursor.json", &f)
	for i := range f.Valid {
		v := &f.Valid[i]
		c := v.cursor(t)
		gen(t, v.Name+": hex", &v.Hex, hex.EncodeToString(c.Encode()))
		gen(t, v.Name+": text", &v.Text, c.String())
		for _, in := range []struct {
			form string
			dec  func() (cursor.Cursor, error)
		}{
			{"hex", func() (cursor.Cursor, error) { b, _ := hex.DecodeString(v.Hex); return cursor.Decode(b) }},
			{"text", func() (cursor.Cursor, error) { return cursor.Parse(v.Text) }},
		} {
			got, err := in.dec()
			if err != nil {
				t.Errorf("%s: decoding the %s form: %v", v.Name, in.form, err)
			} else if !reflect.DeepEqual(vecOf(got), v.cursorVec) {
				t.Errorf("%s: the %s form decodes to %s", v.Name, in.form, show(vecOf(got)))
			}
		}
	}
	for i := range f.Noncanonical {
		v := &f.Noncanonical[i]
		b, _ := hex.DecodeString(v.Hex)
		c, err := cursor.Decode(b)
		if err != nil {
			t.Errorf("%s: %v", v.Name, err)
			continue
		}
		gen(t, v.Name+": decoded", &v.cursorVec, vecOf(c))
		gen(t, v.Name+": canonical", &v.Canonical, hex.EncodeToString(c.Encode()))
		if v.Canonical == v.Hex {
			t.Errorf("%s: the encoding is canonical; move it to valid", v.Name)
		}
	}
	for _, v := range f.Invalid {
		b, err := hex.DecodeString(v.Hex)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if c, err := cursor.Decode(b); err == nil {
			t.Errorf("%s: decoded to %s, want error class %q", v.Name, show(vecOf(c)), v.Error)
		} else {
			checkClass(t, phrases, v.Name, v.Error, err)
		}
	}
	for _, v := range f.InvalidText {
		if c, err := cursor.Parse(v.Text); err == nil {
			t.Errorf("%s: parsed to %s, want error class %q", v.Name, show(vecOf(c)), v.Error)
		} else {
			checkClass(t, phrases, v.Name, v.Error, err)
		}
	}
	for i := range f.Compare {
		v := &f.Compare[i]
		a, b := v.A.cursor(t), v.B.cursor(t)
		gen(t, v.Name+": a covers b", &v.ACoversB, a.Covers(b))
		gen(t, v.Name+": b covers a", &v.BCoversA, b.Covers(a))
		gen(t, v.Name+": equal", &v.Equal, a.Equal(b))
		if a.Equal(b) != b.Equal(a) {
			t.Errorf("%s: Equal is not symmetric", v.Name)
		}
	}
	if *update {
		writeConformance(t, "cursor.json", &f)
	}
	t.Logf("cursor.json: %d valid, %d noncanonical, %d invalid, %d invalid text, %d comparisons",
		len(f.Valid), len(f.Noncanonical), len(f.Invalid), len(f.InvalidText), len(f.Compare))
}

// Digests.

type digestEntry struct {
	Name      string `json:"name,omitempty"`
	Key       string `json:"key"`
	Value     string `json:"value,omitempty"`
	ValueHex  string `json:"value_hex,omitempty"`
	Partition int32  `json:"partition"`
	Offset    decStr `json:"offset"`
	Hash      string `json:"hash,omitempty"`
}

func (e digestEntry) value(t *testing.T) []byte {
	if e.ValueHex != "" {
		b, err := hex.DecodeString(e.ValueHex)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return []byte(e.Value)
}

type digestFile struct {
	Comment string        `json:"comment"`
	Entries []digestEntry `json:"entries"`
	Sets    []struct {
		Name    string        `json:"name"`
		Entries []digestEntry `json:"entries"`
		Digest  string        `json:"digest"`
	} `json:"sets"`
}

func TestConformanceDigest(t *testing.T) {
	var f digestFile
	readConformance(t, "digest.json", &f)
	for i := range f.Entries {
		e := &f.Entries[i]
		h := digest.Hash(e.Key, e.value(t), e.Partition, int64(e.Offset))
		b := h.Bytes() // hi then lo, big-endian
		gen(t, e.Name+": hash", &e.Hash, hex.EncodeToString(b[:]))
		var d digest.Digest
		d.Add(h)
		if got := hex.EncodeToString(d.Bytes()); got != e.Hash {
			t.Errorf("%s: the digest of the one-entry set is %s, not its hash", e.Name, got)
		}
	}
	for i := range f.Sets {
		s := &f.Sets[i]
		var d digest.Digest
		for _, e := range s.Entries {
			d.Add(digest.Hash(e.Key, e.value(t), e.Partition, int64(e.Offset)))
		}
		gen(t, s.Name+": digest", &s.Digest, hex.EncodeToString(d.Bytes()))
		// Removing every entry again, in reverse order, leaves the empty set.
		for _, e := range slices.Backward(s.Entries) {
			d.Remove(digest.Hash(e.Key, e.value(t), e.Partition, int64(e.Offset)))
		}
		if !bytes.Equal(d.Bytes(), make([]byte, digest.Size)) {
			t.Errorf("%s: removing every entry leaves %x", s.Name, d.Bytes())
		}
	}
	if *update {
		writeConformance(t, "digest.json", &f)
	}
	t.Logf("digest.json: %d entries, %d sets", len(f.Entries), len(f.Sets))
}

// Selectors.

type selectorFile struct {
	Comment   string `json:"comment"`
	Normalize []struct {
		Name       string    `json:"name"`
		Prefixes   []string  `json:"prefixes"`
		Normalized *[]string `json:"normalized,omitempty"`
		Error      string    `json:"error,omitempty"`
	} `json:"normalize"`
	Match []struct {
		Prefixes []string `json:"prefixes"`
		Key      string   `json:"key"`
		Match    bool     `json:"match"`
	} `json:"match"`
}

func TestConformanceSelectors(t *testing.T) {
	phrases := loadPhrases(t)
	var f selectorFile
	readConformance(t, "selectors.json", &f)
	for i := range f.Normalize {
		v := &f.Normalize[i]
		s, err := keyspace.NewSelector(v.Prefixes)
		switch {
		case v.Error != "" && err == nil:
			t.Errorf("%s: normalized to %q, want error class %q", v.Name, s.Prefixes(), v.Error)
		case v.Error != "":
			checkClass(t, phrases, v.Name, v.Error, err)
			if v.Normalized != nil {
				t.Errorf("%s: a refused selector has no normalized form", v.Name)
			}
		case err != nil:
			t.Errorf("%s: %v", v.Name, err)
		default:
			ps := s.Prefixes()
			if ps == nil {
				ps = []string{}
			}
			gen(t, v.Name+": normalized", &v.Normalized, &ps)
		}
	}
	for i := range f.Match {
		v := &f.Match[i]
		s, err := keyspace.NewSelector(v.Prefixes)
		if err != nil {
			t.Errorf("match %q: %v", v.Prefixes, err)
			continue
		}
		gen(t, fmt.Sprintf("match %q %q", v.Prefixes, v.Key), &v.Match, s.Match(v.Key))
	}
	if *update {
		writeConformance(t, "selectors.json", &f)
	}
	t.Logf("selectors.json: %d normalizations, %d matches", len(f.Normalize), len(f.Match))
}

// Replica message sequences.

type replicaFile struct {
	Comment string            `json:"comment"`
	Topics  map[string]string `json:"topics"`
	Steps   []replicaStep     `json:"steps"`
}

type replicaStep struct {
	Name   string         `json:"name"`
	Stream *replicaStream `json:"stream,omitempty"`
	Msg    *replicaMsg    `json:"msg,omitempty"`
	Expect *replicaExpect `json:"expect,omitempty"`
}

type replicaStream struct {
	Resumed bool `json:"resumed"`
}

type replicaMsg struct {
	SnapshotChunk *struct {
		Entries []replicaEntry `json:"entries"`
	} `json:"snapshot_chunk,omitempty"`
	SnapshotEnd *struct {
		Cursor     *replicaCursor `json:"cursor"`
		Reason     string         `json:"reason,omitempty"`
		Reset      bool           `json:"reset,omitempty"`
		EntryCount uint64         `json:"entry_count"`
		Digest     string         `json:"digest,omitempty"`
	} `json:"snapshot_end,omitempty"`
	Delta *struct {
		Changes []struct {
			Put    *replicaEntry `json:"put,omitempty"`
			Delete *struct {
				Key     string  `json:"key,omitempty"`
				Version []int64 `json:"version,omitempty"`
			} `json:"delete,omitempty"`
		} `json:"changes"`
		Cursor    *replicaCursor `json:"cursor"`
		Coalesced bool           `json:"coalesced,omitempty"`
	} `json:"delta,omitempty"`
	Progress *struct {
		Cursor     *replicaCursor `json:"cursor"`
		LagRecords int64          `json:"lag_records,omitempty"`
		Stale      bool           `json:"stale,omitempty"`
	} `json:"progress,omitempty"`
}

type replicaEntry struct {
	Key         string  `json:"key,omitempty"`
	Value       string  `json:"value,omitempty"`
	ValueHex    string  `json:"value_hex,omitempty"`
	Version     []int64 `json:"version,omitempty"` // [partition, offset]; absent: no version
	ContentType string  `json:"content_type,omitempty"`
}

type replicaCursor struct {
	Topic   string  `json:"topic,omitempty"` // a name from the file's topics
	Offsets []int64 `json:"offsets,omitempty"`
	Hex     string  `json:"hex,omitempty"` // raw bytes instead of topic and offsets
}

type replicaView struct {
	Value       string  `json:"value,omitempty"`
	ValueHex    string  `json:"value_hex,omitempty"`
	Version     []int64 `json:"version"`
	ContentType string  `json:"content_type,omitempty"`
}

type replicaEvent struct {
	Kind string `json:"kind"`
	Key  string `json:"key,omitempty"`
}

type replicaExpect struct {
	// Hand-written, never rewritten.
	Accepted bool   `json:"accepted"`
	Error    string `json:"error,omitempty"`
	// Generated.
	Fresh  bool                   `json:"fresh,omitempty"`
	Events []replicaEvent         `json:"events,omitempty"`
	View   map[string]replicaView `json:"view"`
	Cursor *replicaCursor         `json:"cursor"`
	Digest string                 `json:"digest"`
}

// autoDigest, as a snapshot end's digest, is replaced by -update with the
// digest of the entries of the snapshot's chunks (an authoring aid).
const autoDigest = "AUTO"

var reasons = map[string]confgatev1.SnapshotReason{
	"":                confgatev1.SnapshotReason_SNAPSHOT_REASON_UNSPECIFIED,
	"INITIAL":         confgatev1.SnapshotReason_SNAPSHOT_REASON_INITIAL,
	"HISTORY_EXPIRED": confgatev1.SnapshotReason_SNAPSHOT_REASON_HISTORY_EXPIRED,
	"TOPIC_CHANGED":   confgatev1.SnapshotReason_SNAPSHOT_REASON_TOPIC_CHANGED,
	"SLOW_SUBSCRIBER": confgatev1.SnapshotReason_SNAPSHOT_REASON_SLOW_SUBSCRIBER,
	"STATE_REBUILT":   confgatev1.SnapshotReason_SNAPSHOT_REASON_STATE_REBUILT,
}

// replicaRun turns one file's JSON into proto messages and back.
type replicaRun struct {
	t      *testing.T
	f      *replicaFile
	topics map[cursor.TopicID]string
}

func (x *replicaRun) cursorBytes(c *replicaCursor) []byte {
	x.t.Helper()
	switch {
	case c == nil:
		return nil
	case c.Hex != "":
		b, err := hex.DecodeString(c.Hex)
		if err != nil {
			x.t.Fatal(err)
		}
		return b
	}
	b, err := hex.DecodeString(x.f.Topics[c.Topic])
	if err != nil || len(b) != 16 {
		x.t.Fatalf("topic %q is not in the file's topics (32 hex digits)", c.Topic)
	}
	var cu cursor.Cursor
	copy(cu.Topic[:], b)
	cu.Offsets = c.Offsets
	return cu.Encode()
}

func (x *replicaRun) cursorOf(c cursor.Cursor) *replicaCursor {
	name, ok := x.topics[c.Topic]
	if !ok {
		return &replicaCursor{Hex: hex.EncodeToString(c.Encode())}
	}
	return &replicaCursor{Topic: name, Offsets: slices.Clone(c.Offsets)}
}

func (x *replicaRun) version(v []int64) *confgatev1.Version {
	x.t.Helper()
	switch len(v) {
	case 0:
		return nil
	case 2:
		return &confgatev1.Version{Partition: int32(v[0]), Offset: v[1]}
	}
	x.t.Fatalf("version %v is not [partition, offset]", v)
	return nil
}

func (x *replicaRun) value(s, h string) []byte {
	if h != "" {
		b, err := hex.DecodeString(h)
		if err != nil {
			x.t.Fatal(err)
		}
		return b
	}
	return []byte(s)
}

func (x *replicaRun) entry(e *replicaEntry) *confgatev1.Entry {
	pe := &confgatev1.Entry{Key: e.Key, Value: x.value(e.Value, e.ValueHex), Version: x.version(e.Version), ContentType: e.ContentType}
	if e.ContentType != "" {
		pe.Headers = []*confgatev1.Header{{Key: "content-type", Value: []byte(e.ContentType)}}
	}
	return pe
}

func (x *replicaRun) message(m *replicaMsg) *confgatev1.SubscribeResponse {
	x.t.Helper()
	switch {
	case m.SnapshotChunk != nil:
		c := &confgatev1.SnapshotChunk{}
		for i := range m.SnapshotChunk.Entries {
			c.Entries = append(c.Entries, x.entry(&m.SnapshotChunk.Entries[i]))
		}
		return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_SnapshotChunk{SnapshotChunk: c}}
	case m.SnapshotEnd != nil:
		e := m.SnapshotEnd
		reason, ok := reasons[e.Reason]
		if !ok {
			x.t.Fatalf("unknown snapshot reason %q", e.Reason)
		}
		d, err := hex.DecodeString(e.Digest)
		if err != nil {
			x.t.Fatalf("digest %q: %v", e.Digest, err)
		}
		return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_SnapshotEnd{SnapshotEnd: &confgatev1.SnapshotEnd{
			Cursor: x.cursorBytes(e.Cursor), Reason: reason, Reset_: e.Reset, EntryCount: e.EntryCount, Digest: d,
		}}}
	case m.Delta != nil:
		d := &confgatev1.Delta{Cursor: x.cursorBytes(m.Delta.Cursor), Coalesced: m.Delta.Coalesced}
		for _, c := range m.Delta.Changes {
			pc := &confgatev1.Change{}
			switch {
			case c.Put != nil:
				pc.Change = &confgatev1.Change_Put{Put: x.entry(c.Put)}
			case c.Delete != nil:
				pc.Change = &confgatev1.Change_Delete{Delete: &confgatev1.Deletion{Key: c.Delete.Key, Version: x.version(c.Delete.Version)}}
			}
			d.Changes = append(d.Changes, pc)
		}
		return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Delta{Delta: d}}
	case m.Progress != nil:
		return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Progress{Progress: &confgatev1.Progress{
			Cursor: x.cursorBytes(m.Progress.Cursor), LagRecords: m.Progress.LagRecords, Stale: m.Progress.Stale,
		}}}
	}
	return &confgatev1.SubscribeResponse{} // a message kind this client does not know
}

// state renders the replica as an expectation's generated fields.
func (x *replicaRun) state(r *replica) replicaExpect {
	var e replicaExpect
	e.View = map[string]replicaView{}
	r.tree.Ascend(func(en *Entry) bool {
		v := replicaView{Version: []int64{int64(en.Partition), en.Offset}, ContentType: en.ContentType}
		if utf8.Valid(en.Value) {
			v.Value = string(en.Value)
		} else {
			v.ValueHex = hex.EncodeToString(en.Value)
		}
		e.View[en.Key] = v
		return true
	})
	if r.synced {
		e.Cursor = x.cursorOf(r.cur)
	}
	e.Digest = hex.EncodeToString(r.sum.Bytes())
	return e
}

func TestConformanceReplica(t *testing.T) {
	phrases := loadPhrases(t)
	files, err := filepath.Glob(filepath.Join(conformanceDir, "replica", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no replica vectors: %v", err)
	}
	total := 0
	for _, path := range files {
		name := filepath.Join("replica", filepath.Base(path))
		t.Run(filepath.Base(path), func(t *testing.T) {
			var f replicaFile
			readConformance(t, name, &f)
			x := &replicaRun{t: t, f: &f, topics: map[cursor.TopicID]string{}}
			for n, h := range f.Topics {
				b, err := hex.DecodeString(h)
				if err != nil || len(b) != 16 {
					t.Fatalf("topic %s: %q is not 32 hex digits", n, h)
				}
				x.topics[cursor.TopicID(b)] = n
			}
			r := newReplica()
			s := &session{}
			var chunks []*replicaEntry // of the snapshot being received, for AUTO digests
			dropped := false           // the previous message was rejected: the stream is gone
			for i := range f.Steps {
				st := &f.Steps[i]
				what := fmt.Sprintf("step %d (%s)", i, st.Name)
				switch {
				case st.Stream != nil && st.Msg == nil && st.Expect == nil:
					s, chunks, dropped = &session{resumed: st.Stream.Resumed}, nil, false
					continue
				case st.Stream != nil || st.Msg == nil || st.Expect == nil:
					t.Fatalf("%s: a step is either {stream} or {msg, expect}", what)
				case dropped:
					t.Fatalf("%s: a rejected message ends its stream; start a new one first", what)
				}
				m := st.Msg
				switch {
				case m.SnapshotChunk != nil:
					for j := range m.SnapshotChunk.Entries {
						chunks = append(chunks, &m.SnapshotChunk.Entries[j])
					}
				case m.SnapshotEnd != nil:
					if m.SnapshotEnd.Digest == autoDigest {
						if !*update {
							t.Fatalf("%s: digest %s: run with -update", what, autoDigest)
						}
						m.SnapshotEnd.Digest = x.digestOf(chunks)
					}
					chunks = nil
				}
				before := x.state(r)
				res, err := r.handle(s, x.message(m))
				after := x.state(r)
				want := st.Expect
				switch {
				case err == nil && !want.Accepted:
					t.Errorf("%s: accepted, want rejected (%s)", what, want.Error)
				case err != nil && want.Accepted:
					t.Errorf("%s: rejected (%v), want accepted", what, err)
				case err != nil:
					var pe *protocolError
					if !errors.As(err, &pe) {
						t.Fatalf("%s: error %v is no protocol violation", what, err)
					}
					checkClass(t, phrases, what, want.Error, err)
					if !reflect.DeepEqual(before, after) {
						t.Errorf("%s: rejected, yet the view changed: %s -> %s", what, show(before), show(after))
					}
					after.Fresh = pe.fresh
					dropped = true
				case want.Error != "":
					t.Errorf("%s: an accepted message has no error class", what)
				}
				if err == nil {
					for _, ev := range res.events {
						after.Events = append(after.Events, replicaEvent{Kind: ev.Kind.String(), Key: ev.Key})
					}
				}
				gen(t, what+": fresh", &want.Fresh, after.Fresh)
				gen(t, what+": events", &want.Events, after.Events)
				gen(t, what+": view", &want.View, after.View)
				gen(t, what+": cursor", &want.Cursor, after.Cursor)
				gen(t, what+": digest", &want.Digest, after.Digest)
				checkBounds(t, what, st)
				total++
			}
			if *update {
				writeConformance(t, name, &f)
			}
		})
	}
	t.Logf("replica: %d files, %d messages", len(files), total)
}

func (x *replicaRun) digestOf(es []*replicaEntry) string {
	last := map[string]*replicaEntry{}
	for _, e := range es {
		last[e.Key] = e
	}
	var d digest.Digest
	for _, e := range last {
		v := x.version(e.Version)
		d.Add(digest.Hash(e.Key, x.value(e.Value, e.ValueHex), v.GetPartition(), v.GetOffset()))
	}
	return hex.EncodeToString(d.Bytes())
}

// checkBounds keeps replica numbers exact in every JSON parser.
func checkBounds(t *testing.T, what string, st *replicaStep) {
	t.Helper()
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Struct:
			for i := range v.NumField() {
				walk(v.Field(i))
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				walk(v.MapIndex(k))
			}
		case reflect.Int64, reflect.Int32:
			if n := v.Int(); n > maxJSONInt || n < -maxJSONInt {
				t.Errorf("%s: %d is beyond 2^53: replica vectors keep numbers exact in JavaScript", what, n)
			}
		case reflect.Uint64:
			if v.Uint() > maxJSONInt {
				t.Errorf("%s: %d is beyond 2^53", what, v.Uint())
			}
		}
	}
	walk(reflect.ValueOf(st))
}

// TestConformanceFiles fails when a vector file appears that no test runs
// (the Python and Node tests list the same files).
func TestConformanceFiles(t *testing.T) {
	got, err := filepath.Glob(filepath.Join(conformanceDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range got {
		got[i] = filepath.Base(p)
	}
	want := []string{"cursor.json", "digest.json", "phrases.json", "selectors.json"}
	if !slices.Equal(got, want) {
		t.Fatalf("vector files %q, want %q: run a new file in every client's conformance test", got, want)
	}
}
