package gateway

import (
	"strings"
	"testing"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// FuzzRequestDecode feeds arbitrary bytes to the codec as every request
// type. It never panics; it fails only where protobuf itself fails; a
// request it decodes despite a string that is not UTF-8 is noted with the
// field's path, and what the handler then sees is valid UTF-8 throughout.
func FuzzRequestDecode(f *testing.F) {
	f.Add([]byte("\x0a\x05ok/\xff\xfe"))
	f.Add([]byte("\x0a\x04ok/h\x22\x03\x0a\x01\xc3"))
	f.Add([]byte("\x0a\x08\x0a\x02a/\x0a\x02\xfe/"))
	f.Add([]byte("\x22\x05\x0a\x03\x0a\x01\x80"))
	f.Add([]byte("\x0a"))
	bad := &badStrings{}
	c := newFrameCodec(bad)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, newMsg := range []func() proto.Message{
			func() proto.Message { return new(confgatev1.GetRequest) },
			func() proto.Message { return new(confgatev1.PutRequest) },
			func() proto.Message { return new(confgatev1.DeleteRequest) },
			func() proto.Message { return new(confgatev1.SubscribeRequest) },
			func() proto.Message { return new(confgatev1.GetSnapshotRequest) },
		} {
			m := newMsg()
			err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, m)
			plainErr := proto.Unmarshal(b, newMsg())
			field, noted := bad.take(m)
			switch {
			case err != nil && plainErr == nil:
				t.Fatalf("%T: codec failed where protobuf does not: %v", m, err)
			case err == nil && !noted && plainErr != nil:
				t.Fatalf("%T: decoded silently what protobuf refuses (%v)", m, plainErr)
			case noted && (field == "" || strings.HasPrefix(field, ".")):
				t.Fatalf("%T: bad string noted without a field path: %q", m, field)
			case noted:
				if _, err := proto.Marshal(m); err != nil {
					t.Fatalf("%T: handler would see invalid strings (field %s): %v", m, field, err)
				}
			}
		}
	})
}
