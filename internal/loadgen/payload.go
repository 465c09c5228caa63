package loadgen

import (
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"time"
)

// PayloadHeader is the smallest payload: a write id and a time.
const PayloadHeader = 16

// A payload is the value of one write:
//
//	bytes 0..7   the write id, uint64 big endian
//	bytes 8..15  the write call's time, UnixNano, int64 big endian
//	bytes 16..   filler (pseudo-random, so compression does not shrink it)
//
// RunFanout's write ids are a run tag (high 32 bits, random per run, never
// zero) and the write's sequence number (low 32 bits), so that values left
// by another run on the same deployment are told apart and ignored.

// NewPayload returns a value of size bytes (at least PayloadHeader)
// carrying id and at.
func NewPayload(size int, id uint64, at time.Time) []byte {
	b := make([]byte, max(size, PayloadHeader))
	binary.BigEndian.PutUint64(b[0:8], id)
	binary.BigEndian.PutUint64(b[8:16], uint64(at.UnixNano()))
	fill(b[PayloadHeader:], id)
	return b
}

// fill writes pseudo-random bytes seeded by id.
func fill(b []byte, id uint64) {
	r := rand.NewPCG(id, 0x9e3779b97f4a7c15)
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, r.Uint64())
		b = b[8:]
	}
	if len(b) > 0 {
		var t [8]byte
		binary.LittleEndian.PutUint64(t[:], r.Uint64())
		copy(b, t[:])
	}
}

// DecodePayload reads a payload's write id and write time. ok is false
// for a value too short to be one; any other bytes decode (whether the id
// belongs to a run is the runner's business).
func DecodePayload(b []byte) (id uint64, at time.Time, ok bool) {
	if len(b) < PayloadHeader {
		return 0, time.Time{}, false
	}
	id = binary.BigEndian.Uint64(b[0:8])
	at = time.Unix(0, int64(binary.BigEndian.Uint64(b[8:16])))
	return id, at, true
}

// writeID makes a write id from a run tag and a sequence number.
func writeID(tag uint32, seq int) uint64 { return uint64(tag)<<32 | uint64(uint32(seq)) }

// splitID is writeID's inverse.
func splitID(id uint64) (tag uint32, seq int) { return uint32(id >> 32), int(uint32(id)) }

// SubscriberPrefix is the prefix subscriber i watches:
// keyPrefix + "p<i%prefixes>/".
func SubscriberPrefix(keyPrefix string, i, prefixes int) string {
	return prefixName(keyPrefix, i%max(prefixes, 1))
}

// WriteKey is the key write j goes to: "<prefix of j%prefixes>k<j%keys>",
// so consecutive writes spread over the prefixes and keys.
func WriteKey(keyPrefix string, j, prefixes, keys int) string {
	return prefixName(keyPrefix, j%max(prefixes, 1)) + "k" + strconv.Itoa(j%max(keys, 1))
}

func prefixName(keyPrefix string, p int) string {
	return keyPrefix + "p" + strconv.Itoa(p) + "/"
}
