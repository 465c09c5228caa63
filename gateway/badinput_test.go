package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Invariant 8: bad requests get precise codes and messages that say what
// to fix, and change nothing.
func TestBadInputStatusCodes(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gatewayWait(300 * time.Millisecond)})
	put := testkit.Put(t, g, "ok/key", "1")
	here, _ := cursor.Decode(put.Cursor)
	ahead := here.Clone()
	ahead.Offsets[0] += 1 << 20
	other := cursor.Cursor{Topic: cursor.TopicID{9}, Offsets: here.Offsets}

	// raw sends request bytes no proto library would encode.
	raw := func(ctx context.Context, method string, req []byte) error {
		var out confgatev1.PutResponse // any message: only the status matters
		err := g.Conn.Invoke(ctx, "/confgate.v1.ConfigService/"+method, rawMsg(req), &out, grpc.ForceCodecV2(rawCodec{}))
		return err
	}
	rawStream := func(ctx context.Context, req []byte) error {
		st, err := g.Conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/confgate.v1.ConfigService/Subscribe", grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			return err
		}
		if err := st.SendMsg(rawMsg(req)); err != nil {
			return err
		}
		if err := st.CloseSend(); err != nil {
			return err
		}
		return st.RecvMsg(new(confgatev1.SubscribeResponse))
	}
	stream := func(ctx context.Context, req *confgatev1.SubscribeRequest) error {
		st, err := g.Client.Subscribe(ctx, req)
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	snapshot := func(ctx context.Context, req *confgatev1.GetSnapshotRequest) error {
		st, err := g.Client.GetSnapshot(ctx, req)
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	tests := []struct {
		name string
		call func(ctx context.Context) error
		code codes.Code
		msg  string
	}{
		{"get empty key", func(ctx context.Context) error {
			_, err := g.Client.Get(ctx, &confgatev1.GetRequest{})
			return err
		}, codes.InvalidArgument, "key is empty"},
		{"get leading slash", func(ctx context.Context) error {
			_, err := g.Client.Get(ctx, &confgatev1.GetRequest{Key: "/ok/key"})
			return err
		}, codes.InvalidArgument, "leading slash"},
		{"get missing", func(ctx context.Context) error {
			_, err := g.Client.Get(ctx, &confgatev1.GetRequest{Key: "no/such"})
			return err
		}, codes.NotFound, `"no/such" not found`},
		{"get garbage min_cursor", func(ctx context.Context) error {
			_, err := g.Client.Get(ctx, &confgatev1.GetRequest{Key: "ok/key", MinCursor: []byte("garbage")})
			return err
		}, codes.InvalidArgument, "min_cursor: cursor has unknown format"},
		{"get min_cursor of another topic", func(ctx context.Context) error {
			_, err := g.Client.Get(ctx, &confgatev1.GetRequest{Key: "ok/key", MinCursor: other.Encode()})
			return err
		}, codes.FailedPrecondition, "another incarnation of the topic"},
		{"get min_cursor past the end of the log", func(ctx context.Context) error {
			_, err := g.Client.Get(ctx, &confgatev1.GetRequest{Key: "ok/key", MinCursor: ahead.Encode()})
			return err
		}, codes.FailedPrecondition, "min_cursor is past the end of the topic's log"},
		{"snapshot min_cursor past the end of the log", func(ctx context.Context) error {
			return snapshot(ctx, &confgatev1.GetSnapshotRequest{MinCursor: ahead.Encode()})
		}, codes.FailedPrecondition, "partition 0 ends at offset"},
		{"put bad key", func(ctx context.Context) error {
			_, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: "a//b", Value: []byte("x")})
			return err
		}, codes.InvalidArgument, "empty path segment"},
		{"put huge value", func(ctx context.Context) error {
			_, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: "ok/huge", Value: make([]byte, 1<<20+1)})
			return err
		}, codes.InvalidArgument, "value: is 1048577 bytes, more than the limit"},
		{"put value one byte over the limit", func(ctx context.Context) error {
			_, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: "ok/huge", Value: make([]byte, gateway.MaxValueBytes+1)})
			return err
		}, codes.InvalidArgument, "value: is 1000001 bytes, more than the limit 1000000"},
		{"put content_type too long", func(ctx context.Context) error {
			_, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: "ok/ct", ContentType: strings.Repeat("x", 257)})
			return err
		}, codes.InvalidArgument, "content_type: is 257 bytes, longer than the limit 256"},
		{"put content-type header too long", func(ctx context.Context) error {
			_, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: "ok/ct", Headers: []*confgatev1.Header{{Key: "content-type", Value: make([]byte, 500000)}}})
			return err
		}, codes.InvalidArgument, "headers: content type is 500000 bytes, longer than the limit 256"},
		{"put content type twice", func(ctx context.Context) error {
			_, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: "ok/ct", ContentType: "a", Headers: []*confgatev1.Header{{Key: "content-type", Value: []byte("b")}}})
			return err
		}, codes.InvalidArgument, "content type given twice"},
		{"put too many headers", func(ctx context.Context) error {
			hs := make([]*confgatev1.Header, store.MaxHeaders+1)
			for i := range hs {
				hs[i] = &confgatev1.Header{Key: "h"}
			}
			_, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: "ok/h", Headers: hs})
			return err
		}, codes.InvalidArgument, "65 headers, more than the limit 60 (an entry holds 64, content type included, less 4 reserved for the headers gateways write"},
		{"get key not UTF-8", func(ctx context.Context) error {
			return raw(ctx, "Get", field(1, []byte("ok/\xff")))
		}, codes.InvalidArgument, "key: is not valid UTF-8"},
		{"put header key not UTF-8", func(ctx context.Context) error {
			return raw(ctx, "Put", cat(field(1, []byte("ok/h")), field(4, field(1, []byte{0xc3}))))
		}, codes.InvalidArgument, "headers[0].key: is not valid UTF-8"},
		{"put second header key not UTF-8", func(ctx context.Context) error {
			return raw(ctx, "Put", cat(field(1, []byte("ok/h")), field(4, field(1, []byte("fine"))), field(4, field(1, []byte{0x80}))))
		}, codes.InvalidArgument, "headers[1].key: is not valid UTF-8"},
		{"subscribe prefix not UTF-8", func(ctx context.Context) error {
			return rawStream(ctx, field(1, cat(field(1, []byte("a/")), field(1, []byte("b/\xfe")))))
		}, codes.InvalidArgument, "selector.prefixes[1]: is not valid UTF-8"},
		{"put control character", func(ctx context.Context) error {
			_, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: "ok/\x01", Value: []byte("x")})
			return err
		}, codes.InvalidArgument, "control character"},
		{"delete bad key", func(ctx context.Context) error {
			_, err := g.Client.Delete(ctx, &confgatev1.DeleteRequest{Key: "trailing/"})
			return err
		}, codes.InvalidArgument, "ends with '/'"},
		{"subscribe bad selector", func(ctx context.Context) error {
			return stream(ctx, &confgatev1.SubscribeRequest{Selector: sel("/abs")})
		}, codes.InvalidArgument, "selector: selector prefix"},
		{"subscribe too many prefixes", func(ctx context.Context) error {
			return stream(ctx, &confgatev1.SubscribeRequest{Selector: sel(make([]string, 100)...)})
		}, codes.InvalidArgument, "has 100 prefixes, more than this gateway's limit 64"},
		{"subscribe truncated cursor", func(ctx context.Context) error {
			return stream(ctx, &confgatev1.SubscribeRequest{ResumeCursor: put.Cursor[:10]})
		}, codes.InvalidArgument, "resume_cursor: cursor is truncated"},
		{"snapshot bad selector", func(ctx context.Context) error {
			return snapshot(ctx, &confgatev1.GetSnapshotRequest{Selector: sel("a\x00b")})
		}, codes.InvalidArgument, "control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := tt.call(ctx)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tt.code, tt.msg)
			}
			if tt.code != codes.InvalidArgument {
				return
			}
			// The field at fault, machine-readable, matches the message.
			var field string
			for _, d := range status.Convert(err).Details() {
				if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) == 1 {
					field = br.FieldViolations[0].Field
				}
			}
			if field == "" || !strings.HasPrefix(status.Convert(err).Message(), field+": ") {
				t.Fatalf("no BadRequest field violation matching %q", status.Convert(err).Message())
			}
		})
	}
	// Nothing was written by the rejected calls.
	view, _, _ := testkit.Snapshot(t, g)
	if keys := testkit.SortedKeys(view); len(keys) != 1 || keys[0] != "ok/key" {
		t.Fatalf("rejected calls changed state: %v", keys)
	}
}
