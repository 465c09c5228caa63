package store

import (
	"fmt"
	"strconv"
	"strings"
)

// Headers the gateways write on records that go through the
// serialization point (Commit). They are reserved: writers cannot set
// them (every "confgate-" header is), and readers treat a malformed one
// as absent.
const (
	// ReservedHeaderPrefix starts every header a gateway writes itself.
	ReservedHeaderPrefix = "confgate-"
	// SetHeader marks a record as operation Index of a change set of
	// Count records written in one Kafka transaction under a request ID:
	// "<index>/<count>:<request id>", for example "0/3:7f3a9c". A
	// single conditional or retry-safe write is a set of one. Gateways
	// apply a set only once all its records are read, in one batch.
	SetHeader = "confgate-set"
	// IfHeader carries the precondition the gateway checked before
	// writing the record: "absent" or "<partition>:<offset>". Every
	// gateway re-checks it when applying the record and counts a
	// violation (possible only through a foreign producer).
	IfHeader = "confgate-if"
)

// MaxRequestIDBytes bounds a request ID.
const MaxRequestIDBytes = 128

// SetMark is a parsed SetHeader.
type SetMark struct {
	Index, Count int
	ID           string
}

// String is the header's value.
func (m SetMark) String() string {
	return strconv.Itoa(m.Index) + "/" + strconv.Itoa(m.Count) + ":" + m.ID
}

// ParseSetMark parses a SetHeader value; ok is false for anything
// malformed (a foreign producer's header is then ignored).
func ParseSetMark(v []byte) (m SetMark, ok bool) {
	s := string(v)
	slash := strings.IndexByte(s, '/')
	colon := strings.IndexByte(s, ':')
	if slash <= 0 || colon <= slash+1 {
		return SetMark{}, false
	}
	i, err1 := strconv.Atoi(s[:slash])
	n, err2 := strconv.Atoi(s[slash+1 : colon])
	id := s[colon+1:]
	if err1 != nil || err2 != nil || n < 1 || n > MaxSetOps || i < 0 || i >= n || CheckRequestID(id) != nil || id == "" {
		return SetMark{}, false
	}
	return SetMark{Index: i, Count: n, ID: id}, true
}

// CheckRequestID reports why id cannot be a request ID ("" is valid: none).
func CheckRequestID(id string) error {
	if len(id) > MaxRequestIDBytes {
		return fmt.Errorf("request ID is %d bytes, more than %d", len(id), MaxRequestIDBytes)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return fmt.Errorf("request ID has byte 0x%02x at %d: use printable ASCII without spaces", id[i], i)
		}
	}
	return nil
}

// CondKind is what a precondition requires.
type CondKind uint8

const (
	// CondNone: no precondition.
	CondNone CondKind = iota
	// CondAbsent: the key is absent (never written, or deleted).
	CondAbsent
	// CondVersion: the key is live at exactly Partition/Offset.
	CondVersion
)

// Cond is a precondition on a key's current state.
type Cond struct {
	Kind      CondKind
	Partition int32
	Offset    int64
}

// String is the IfHeader value ("" for CondNone).
func (c Cond) String() string {
	switch c.Kind {
	case CondAbsent:
		return "absent"
	case CondVersion:
		return strconv.FormatInt(int64(c.Partition), 10) + ":" + strconv.FormatInt(c.Offset, 10)
	}
	return ""
}

// ParseCond parses an IfHeader value (also the CLI's --if-version
// "PARTITION:OFFSET").
func ParseCond(s string) (Cond, error) {
	if s == "absent" {
		return Cond{Kind: CondAbsent}, nil
	}
	ps, os, ok := strings.Cut(s, ":")
	p, err1 := strconv.ParseInt(ps, 10, 32)
	o, err2 := strconv.ParseInt(os, 10, 64)
	if !ok || err1 != nil || err2 != nil || p < 0 || o < 0 {
		return Cond{}, fmt.Errorf("version %q: want PARTITION:OFFSET, both non-negative integers (as put and get -o json print it)", s)
	}
	return Cond{Kind: CondVersion, Partition: int32(p), Offset: o}, nil
}

// holds reports whether c holds for the key's current entry (nil or a
// tombstone: absent).
func (c Cond) holds(cur *Entry) bool {
	live := cur != nil && !cur.Deleted
	switch c.Kind {
	case CondAbsent:
		return !live
	case CondVersion:
		return live && cur.Partition == c.Partition && cur.Offset == c.Offset
	}
	return true
}

// Bounds of one change set: it is applied as one batch and sent as one
// delta, never cut: after the default 1 MiB ChunkBytes of other changes,
// that delta stays under gRPC's default 4 MiB message limit (the shipped
// clients accept 16 MiB).
const (
	MaxSetOps   = 1000
	MaxSetBytes = 2 << 20
)
