package digest

import (
	"encoding/binary"

	"github.com/zeebo/xxh3"
)

// Size is the length of an encoded digest.
const Size = 16

// Digest is the sum, lane by lane modulo 2^64, of the 128-bit hash of every
// entry. Sums make it independent of order and let a single entry be added
// or removed in O(1). The zero value is the digest of the empty set.
type Digest struct {
	lo, hi uint64
}

// Hash returns the 128-bit hash of one entry. The encoding is
// length-prefixed so no two distinct entries share an input.
func Hash(key string, value []byte, partition int32, offset int64) xxh3.Uint128 {
	var buf [64]byte
	b := buf[:0]
	b = binary.AppendUvarint(b, uint64(len(key)))
	h := xxh3.New()
	_, _ = h.Write(b)
	_, _ = h.WriteString(key)
	b = buf[:0]
	b = binary.AppendUvarint(b, uint64(len(value)))
	_, _ = h.Write(b)
	_, _ = h.Write(value)
	b = buf[:0]
	b = binary.BigEndian.AppendUint32(b, uint32(partition))
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	_, _ = h.Write(b)
	return h.Sum128()
}

// Add includes an entry hash.
func (d *Digest) Add(h xxh3.Uint128) {
	d.lo += h.Lo
	d.hi += h.Hi
}

// Remove takes out an entry hash that was added before.
func (d *Digest) Remove(h xxh3.Uint128) {
	d.lo -= h.Lo
	d.hi -= h.Hi
}

// Bytes returns the 16-byte wire form.
func (d Digest) Bytes() []byte {
	b := make([]byte, Size)
	binary.BigEndian.PutUint64(b[:8], d.hi)
	binary.BigEndian.PutUint64(b[8:], d.lo)
	return b
}
