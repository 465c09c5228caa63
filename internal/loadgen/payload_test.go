package loadgen

import (
	"bytes"
	"testing"
	"time"
)

func TestPayloadRoundTrip(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	for _, size := range []int{0, 1, 16, 17, 23, 24, 1024} {
		b := NewPayload(size, 0x0102030405060708, at)
		if len(b) != max(size, PayloadHeader) {
			t.Fatalf("size %d: payload of %d bytes", size, len(b))
		}
		id, got, ok := DecodePayload(b)
		if !ok || id != 0x0102030405060708 || !got.Equal(at) {
			t.Fatalf("size %d: decoded %x %v %v", size, id, got, ok)
		}
	}
	if _, _, ok := DecodePayload(make([]byte, 15)); ok {
		t.Fatal("15 bytes decoded")
	}
	// Filler differs between writes (no compressible runs of one byte).
	a, b := NewPayload(64, 1, at), NewPayload(64, 2, at)
	if bytes.Equal(a[16:], b[16:]) || bytes.Count(a[16:], a[16:17]) > 8 {
		t.Fatalf("filler looks constant: %x / %x", a[16:], b[16:])
	}
}

func TestWriteID(t *testing.T) {
	for _, tc := range []struct {
		tag uint32
		seq int
	}{{1, 0}, {0xffffffff, 1<<31 - 1}, {7, 12345}} {
		tag, seq := splitID(writeID(tc.tag, tc.seq))
		if tag != tc.tag || seq != tc.seq {
			t.Errorf("split(write(%d, %d)) = %d, %d", tc.tag, tc.seq, tag, seq)
		}
	}
}

func TestKeys(t *testing.T) {
	for _, tc := range []struct {
		fn   func() string
		want string
	}{
		{func() string { return SubscriberPrefix("bench/", 7, 3) }, "bench/p1/"},
		{func() string { return SubscriberPrefix("bench/", 7, 0) }, "bench/p0/"},
		{func() string { return WriteKey("bench/", 7, 3, 5) }, "bench/p1/k2"},
		{func() string { return WriteKey("", 12, 1000, 10000) }, "p12/k12"},
		{func() string { return WriteKey("x/", 1012, 1000, 10000) }, "x/p12/k1012"},
	} {
		if got := tc.fn(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	// Every write key lies under the prefix of the subscribers it concerns.
	for j := range 200 {
		k, p := WriteKey("b/", j, 7, 30), SubscriberPrefix("b/", j, 7)
		if len(k) <= len(p) || k[:len(p)] != p {
			t.Fatalf("write %d: key %q not under %q", j, k, p)
		}
	}
}

// FuzzDecodePayload: any bytes decode without panicking, and a payload made
// from what decoded decodes the same.
func FuzzDecodePayload(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 15))
	f.Add(NewPayload(16, 1, time.Unix(0, 0)))
	f.Add(NewPayload(100, 0xffffffffffffffff, time.Unix(1<<40, 5)))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, at, ok := DecodePayload(b)
		if ok != (len(b) >= PayloadHeader) {
			t.Fatalf("ok = %v for %d bytes", ok, len(b))
		}
		if !ok {
			return
		}
		id2, at2, ok2 := DecodePayload(NewPayload(len(b), id, at))
		if !ok2 || id2 != id || !at2.Equal(at) {
			t.Fatalf("re-encoded %x %v, decoded %x %v", id, at, id2, at2)
		}
	})
}
