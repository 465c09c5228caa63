package store

import (
	"bytes"
	"errors"
	"testing"

	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

// fuzzHeaders turns bytes into headers: a length-prefixed key ("ct" stands
// for the content-type header, so the fuzzer reaches it), then a
// length-prefixed value, repeated.
func fuzzHeaders(b []byte) []kgo.RecordHeader {
	var hs []kgo.RecordHeader
	next := func(max int) []byte {
		if len(b) == 0 {
			return nil
		}
		n := min(int(b[0])%max, len(b)-1)
		v := b[1 : 1+n]
		b = b[1+n:]
		return v
	}
	for len(b) > 0 {
		k := string(next(32))
		if k == "ct" {
			k = ContentTypeHeader
		}
		hs = append(hs, kgo.RecordHeader{Key: k, Value: next(256)})
	}
	return hs
}

// FuzzRecordDecode feeds records any producer could write through decode,
// then encodes what it accepted the way the gateway does. Accepted entries
// always encode (the crash this guards against: a header that is not UTF-8
// made every covering message panic the gateway), and the read rules agree
// with the write rules both ways: a write Produce accepts is never skipped
// on read, and an accepted record is a write Produce accepts.
func FuzzRecordDecode(f *testing.F) {
	f.Add([]byte("app/a"), []byte("v"), false, []byte("\x02ct\x0atext/plain"))
	f.Add([]byte("app/a"), []byte("v"), false, []byte("\x02\xff\xfe\x01v"))
	f.Add([]byte("app/a"), []byte(nil), true, []byte("\x02ct\x02\xc3("))
	f.Add([]byte("app/a"), []byte("v"), false, []byte("\x02ct\x01a\x02ct\x01a"))
	f.Add([]byte("a\x00b"), []byte("v"), false, []byte(nil))
	f.Add([]byte(""), []byte("v"), false, []byte(nil))
	s, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(s.Close)
	const partitions = 6
	f.Fuzz(func(t *testing.T, key, value []byte, tombstone bool, headerBytes []byte) {
		if tombstone {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		r := &kgo.Record{Key: key, Value: value, Headers: fuzzHeaders(headerBytes)}
		r.Partition = int32(s.keyPart.Partition(&kgo.Record{Key: key}, partitions))
		out := s.decode(r, partitions)

		w := Write{Key: string(key), Value: value, Delete: tombstone}
		for _, h := range r.Headers {
			w.Headers = append(w.Headers, Header{Key: h.Key, Value: h.Value})
		}
		_, werr := checkWrite(w)

		if out.skip != skipNone {
			switch out.skip {
			case skipNoKey, skipBadKey, skipBadHeader, skipTooLarge:
			default:
				t.Fatalf("skipped as %q, a reason decode must not give for a record in its partition", out.skip)
			}
			if werr == nil {
				t.Fatalf("skipped on read as %q, but Produce would accept it: an acknowledged write would vanish", out.skip)
			}
			return
		}
		if werr != nil {
			t.Fatalf("accepted on read, refused on write: %v", werr)
		}
		e := out.entry
		if e.Key != string(key) || e.Deleted != tombstone || (!tombstone && !bytes.Equal(e.Value, value)) {
			t.Fatalf("decoded %+v from key %q value %q", e, key, value)
		}
		if err := keyspace.ValidateKey(e.Key); err != nil {
			t.Fatalf("accepted a bad key: %v", err)
		}
		pe := &confgatev1.Entry{Key: e.Key, Value: e.Value, ContentType: e.ContentType, Version: &confgatev1.Version{Partition: 1, Offset: 1}}
		for _, h := range e.Headers {
			pe.Headers = append(pe.Headers, &confgatev1.Header{Key: h.Key, Value: h.Value})
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(pe)
		if err != nil {
			t.Fatalf("accepted an entry that does not encode: %v", err)
		}
		if len(b) > MaxRecordBytes+64<<10 {
			t.Fatalf("accepted entry encodes to %d bytes", len(b))
		}
		if _, err := proto.Marshal(&confgatev1.Deletion{Key: e.Key}); err != nil {
			t.Fatalf("accepted a key that does not encode: %v", err)
		}
	})
}

// TestRuleErrors: every rule violation is a RuleError of its kind, naming
// the request field.
func TestRuleErrors(t *testing.T) {
	for _, tc := range []struct {
		w     Write
		kind  error
		field string
	}{
		{Write{Key: "k", Value: make([]byte, MaxValueBytes+1)}, ErrTooLarge, "value"},
		{Write{Key: "k", Headers: []Header{{Key: "\xff"}}}, ErrBadHeader, "headers"},
		{Write{Key: "k", ContentType: "a", Headers: []Header{{Key: ContentTypeHeader, Value: []byte("b")}}}, ErrBadHeader, "headers"},
	} {
		_, err := checkWrite(tc.w)
		var re *RuleError
		if !errors.As(err, &re) || !errors.Is(err, tc.kind) || re.Field != tc.field {
			t.Errorf("checkWrite(%+v) = %v, want a RuleError %v on %q", tc.w.Headers, err, tc.kind, tc.field)
		}
	}
}
