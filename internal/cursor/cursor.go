package cursor

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// formatV1 is the first byte of every encoded cursor. A new layout gets a
// new value so old cursors are rejected with a clear error, never misread.
const formatV1 byte = 1

// maxPartitions bounds decoding so a hostile cursor cannot make a gateway
// allocate without limit. Kafka topics rarely exceed a few thousand.
const maxPartitions = 1 << 16

// TopicID is Kafka's 16-byte topic identity.
type TopicID [16]byte

// String renders the ID like Kafka's tools do (URL-safe base64, no padding).
func (id TopicID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// Cursor is an applied position. Offsets[p] is the next offset to apply in
// partition p; a partition missing from Offsets is at offset 0.
type Cursor struct {
	Topic   TopicID
	Offsets []int64
}

// Clone returns a deep copy.
func (c Cursor) Clone() Cursor {
	return Cursor{Topic: c.Topic, Offsets: slices.Clone(c.Offsets)}
}

// Offset returns the next offset of partition p (0 when unknown).
func (c Cursor) Offset(p int32) int64 {
	if p < 0 || int(p) >= len(c.Offsets) {
		return 0
	}
	return c.Offsets[p]
}

// Covers reports whether c is at or past o in every partition. Cursors of
// different topics never cover each other.
func (c Cursor) Covers(o Cursor) bool {
	if c.Topic != o.Topic {
		return false
	}
	for p, off := range o.Offsets {
		if c.Offset(int32(p)) < off {
			return false
		}
	}
	return true
}

// Max returns the position at or past both, partition by partition. For
// cursors of different topics it returns a copy of b: the later incarnation
// wins, and a zero a (no position yet) is of no topic.
func Max(a, b Cursor) Cursor {
	out := b.Clone()
	if a.Topic != b.Topic {
		return out
	}
	for p, off := range a.Offsets {
		if p >= len(out.Offsets) {
			out.Offsets = append(out.Offsets, off)
		} else {
			out.Offsets[p] = max(out.Offsets[p], off)
		}
	}
	return out
}

// Equal reports whether both cursors name the same position.
func (c Cursor) Equal(o Cursor) bool { return c.Covers(o) && o.Covers(c) }

// Sum is the total of all next offsets, a cheap scalar for logs and metrics.
func (c Cursor) Sum() int64 {
	var s int64
	for _, o := range c.Offsets {
		s += o
	}
	return s
}

// Encode returns the wire form.
func (c Cursor) Encode() []byte {
	b := make([]byte, 0, 1+16+binary.MaxVarintLen32+len(c.Offsets)*4)
	return c.AppendEncode(b)
}

// AppendEncode appends the wire form to b.
func (c Cursor) AppendEncode(b []byte) []byte {
	b = append(b, formatV1)
	b = append(b, c.Topic[:]...)
	b = binary.AppendUvarint(b, uint64(len(c.Offsets)))
	for _, o := range c.Offsets {
		b = binary.AppendUvarint(b, uint64(o))
	}
	return b
}

// String renders the cursor as URL-safe base64, the form the CLI prints and
// accepts.
func (c Cursor) String() string { return base64.RawURLEncoding.EncodeToString(c.Encode()) }

// ErrEmpty is returned by Decode for an empty input.
var ErrEmpty = errors.New("cursor is empty")

// Decode parses the wire form. Errors say what is wrong so a gateway can
// return them as INVALID_ARGUMENT.
func Decode(b []byte) (Cursor, error) {
	if len(b) == 0 {
		return Cursor{}, ErrEmpty
	}
	if b[0] != formatV1 {
		return Cursor{}, fmt.Errorf("cursor has unknown format %d (want %d): pass a cursor exactly as a gateway returned it", b[0], formatV1)
	}
	b = b[1:]
	if len(b) < 16 {
		return Cursor{}, errors.New("cursor is truncated: topic ID incomplete")
	}
	var c Cursor
	copy(c.Topic[:], b[:16])
	b = b[16:]
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return Cursor{}, errors.New("cursor is truncated: partition count missing")
	}
	if n > maxPartitions {
		return Cursor{}, fmt.Errorf("cursor names %d partitions, more than the limit %d", n, maxPartitions)
	}
	b = b[k:]
	c.Offsets = make([]int64, n)
	for i := range c.Offsets {
		o, k := binary.Uvarint(b)
		if k <= 0 {
			return Cursor{}, fmt.Errorf("cursor is truncated: offset of partition %d missing", i)
		}
		if o > 1<<62 {
			return Cursor{}, fmt.Errorf("cursor offset of partition %d is out of range", i)
		}
		c.Offsets[i] = int64(o)
		b = b[k:]
	}
	if len(b) != 0 {
		return Cursor{}, fmt.Errorf("cursor has %d trailing bytes", len(b))
	}
	return c, nil
}

// Parse decodes the text form printed by String.
func Parse(s string) (Cursor, error) {
	// Go's decoder skips '\r' and '\n'; one text form per cursor, so
	// they are refused like any other character outside the alphabet.
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return Cursor{}, fmt.Errorf("cursor is not URL-safe base64: line break at byte %d", i)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, fmt.Errorf("cursor is not URL-safe base64: %w", err)
	}
	return Decode(b)
}
