package gateway

import (
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	// Registers the proto codec that frameCodec falls back to.
	_ "google.golang.org/grpc/encoding/proto"
)

// frame is an already-encoded response message. The same bytes go out on
// every stream that needs them.
type frame struct {
	b []byte
	// changes, for a plain (not coalesced) delta, is its encoded changes
	// within b, so that consecutive deltas merge into one (mergeDeltas).
	changes []byte
	cursor  []byte
}

// frameCodec passes frames through untouched and marshals anything else
// with the proto codec. Installed per server (ForceServerCodecV2), never
// globally.
//
// A request whose string fields are not UTF-8 fails to unmarshal, and grpc
// answers every unmarshal failure with INTERNAL, although it is the
// caller's error. So the codec decodes such a request with the bad strings
// replaced, notes which field was bad in badStrings, and the interceptors
// answer INVALID_ARGUMENT naming that field before any handler runs.
type frameCodec struct {
	proto encoding.CodecV2
	bad   *badStrings
}

func newFrameCodec(bad *badStrings) frameCodec {
	return frameCodec{proto: encoding.GetCodecV2("proto"), bad: bad}
}

func (c frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*frame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f.b)}, nil
	}
	return c.proto.Marshal(v)
}

func (c frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.proto.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	b := data.Materialize()
	fixed, field, found := replaceBadStrings(b, m.ProtoReflect().Descriptor(), "")
	if !found {
		return err
	}
	if uerr := proto.Unmarshal(fixed, m); uerr != nil {
		return err
	}
	c.bad.put(m, field)
	return nil
}

func (frameCodec) Name() string { return "proto" }

// badStrings remembers, per decoded request message, the first string field
// that was not UTF-8. Every entry is taken by the interceptors, which see
// every message the codec decodes for a handler.
type badStrings struct{ m sync.Map } // proto.Message -> field path

func (b *badStrings) put(m proto.Message, field string) { b.m.Store(m, field) }

// take returns and forgets the bad field of m, if any.
func (b *badStrings) take(m any) (string, bool) {
	v, ok := b.m.LoadAndDelete(m)
	if !ok {
		return "", false
	}
	return v.(string), true
}

// check answers INVALID_ARGUMENT for a request decoded with a bad string.
func (b *badStrings) check(req any) error {
	if field, ok := b.take(req); ok {
		return invalidArg(field, "is not valid UTF-8: string fields must be UTF-8 (send binary data in bytes fields such as value)")
	}
	return nil
}

// utf8Stream checks every message received on a stream, as check does for
// unary requests.
type utf8Stream struct {
	grpc.ServerStream
	bad *badStrings
}

func (s utf8Stream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.bad.check(m)
}

// replaceBadStrings returns b with every string field (at any depth) that
// is not UTF-8 replaced by a valid string, and the path of the first such
// field ("selector.prefixes[0]"). found is false when there is none or b is
// malformed.
func replaceBadStrings(b []byte, md protoreflect.MessageDescriptor, path string) (out []byte, field string, found bool) {
	out = make([]byte, 0, len(b))
	counts := map[protowire.Number]int{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, "", false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, "", false
		}
		raw := b[:n+m]
		b = b[n+m:]
		fd := md.Fields().ByNumber(num)
		if fd == nil || typ != protowire.BytesType {
			out = append(out, raw...)
			continue
		}
		idx := counts[num]
		counts[num]++
		name := join(path, string(fd.Name()))
		if fd.IsList() {
			name += "[" + strconv.Itoa(idx) + "]"
		}
		v, _ := protowire.ConsumeBytes(raw[n:])
		switch {
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(v):
			if !found {
				field, found = name, true
			}
			out = protowire.AppendTag(out, num, protowire.BytesType)
			out = protowire.AppendBytes(out, []byte(strings.ToValidUTF8(string(v), "\uFFFD")))
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			inner, f, ok := replaceBadStrings(v, fd.Message(), name)
			if inner == nil {
				return nil, "", false
			}
			if ok && !found {
				field, found = f, true
			}
			out = protowire.AppendTag(out, num, protowire.BytesType)
			out = protowire.AppendBytes(out, inner)
		default:
			out = append(out, raw...)
		}
	}
	return out, field, found
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
