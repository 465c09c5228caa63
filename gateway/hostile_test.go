package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Records no client could decode (header keys and content types that are
// not UTF-8), too large for clients, and good records between them, all
// written by a plain Kafka producer: both gateways skip exactly the bad ones
// and count them, live subscribers and a resume from before them get every
// good record, nobody crashes, and the gateways' digests agree. Before the
// fix the first covering message panicked the gateway ("string field
// contains invalid UTF-8").
func TestHostileRecordsAreSkippedOnEveryGateway(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	g1 := testkit.StartGateway(t, k, topic, testkit.Options{})
	g2 := testkit.StartGateway(t, k, topic, testkit.Options{})

	before := testkit.Put(t, g1, "app/a", "1")
	live1 := testkit.Subscribe(t, g1, &confgatev1.SubscribeRequest{})
	live2 := testkit.Subscribe(t, g2, &confgatev1.SubscribeRequest{Selector: sel("app/")})
	for _, s := range []*testkit.Stream{live1, live2} {
		s.Until(10*time.Second, "the initial snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	}

	ct := func(v string) kgo.RecordHeader {
		return kgo.RecordHeader{Key: store.ContentTypeHeader, Value: []byte(v)}
	}
	rec := func(key, value string, hs ...kgo.RecordHeader) *kgo.Record {
		return &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(value), Headers: hs}
	}
	prod := testkit.Producer(t, k, kgo.ProducerBatchMaxBytes(store.ProducerBatchBytes), kgo.ProducerLinger(0))
	testkit.Produce(t, prod,
		rec("app/b", "2"),
		rec("app/bad-header-key", "x", kgo.RecordHeader{Key: "\xff\xfe", Value: []byte("v")}),
		rec("app/a", "overwritten by a bad record", ct("text/\xc3")),
		rec("app/c", "3", ct("text/plain")),
		rec("app/too-large", strings.Repeat("v", store.MaxValueBytes+1)),
		&kgo.Record{Topic: topic, Key: []byte("app/b"), Headers: []kgo.RecordHeader{{Key: "\x80"}}}, // a bad delete
		rec("app/d", "4"),
	)
	want := map[string]string{"app/a": "1", "app/b": "2", "app/c": "3", "app/d": "4"}
	has := func(s *testkit.Stream) bool { return mapsEqual(testkit.Values(s.View), want) }
	live1.Until(20*time.Second, "every good record on g1", has)
	live2.Until(20*time.Second, "every good record on g2", has)

	resumed := testkit.Subscribe(t, g2, &confgatev1.SubscribeRequest{ResumeCursor: before.Cursor})
	resumed.View = map[string]*confgatev1.Entry{"app/a": live1.View["app/a"]}
	resumed.Until(10*time.Second, "the resume to reach the good records", has)
	if len(resumed.Snapshots) != 0 {
		t.Errorf("resume from before the bad records got a snapshot: %v", resumed.Snapshots)
	}

	var digests [][]byte
	for _, g := range []*testkit.Gateway{g1, g2} {
		for reason, n := range map[string]float64{"bad_header": 3, "too_large": 1} {
			if got := testkit.Metric(t, g, "confgate_store_records_skipped_total", reason); got != n {
				t.Errorf("%s: skipped{reason=%s} = %v, want %v", g.Addr, reason, got, n)
			}
		}
		if n := testkit.Metric(t, g, "confgate_gateway_panics_total", ""); n != 0 {
			t.Errorf("%s: %v panics recovered, want none", g.Addr, n)
		}
		view, end, _ := testkit.Snapshot(t, g)
		if !mapsEqual(testkit.Values(view), want) {
			t.Errorf("%s: snapshot %v, want %v", g.Addr, testkit.Values(view), want)
		}
		digests = append(digests, end.Digest)
	}
	if !bytes.Equal(digests[0], digests[1]) {
		t.Errorf("digests differ: %x and %x", digests[0], digests[1])
	}
	if !bytes.Equal(testkit.DigestOf(live1.View), digests[0]) {
		t.Errorf("the live view's digest %x is not the gateways' %x", testkit.DigestOf(live1.View), digests[0])
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// panicSource panics where a bug in the store would.
type panicSource struct{ *fakeSource }

func (panicSource) Get(string) (*store.Entry, cursor.Cursor, bool, error) { panic("bug in Get") }

// The gateway's own defences, for entries a buggy store would let through:
// an entry that cannot be encoded is left out of its delta (counted) and the
// stream goes on; a panic in a handler fails that call with INTERNAL
// (counted) and the gateway keeps serving.
func TestGatewaySurvivesWhatTheStoreShouldNeverAdmit(t *testing.T) {
	topic := cursor.TopicID{7}
	mk := func(seq uint64, end []int64, changes ...*store.Entry) *store.Batch {
		c := cursor.Cursor{Topic: topic, Offsets: end}
		return &store.Batch{Seq: seq, Changes: changes, End: c, EndBytes: c.Encode()}
	}
	src := &fakeSource{topic: topic, batches: []*store.Batch{
		mk(1, []int64{1}, &store.Entry{Key: "a", Value: []byte("1"), Offset: 0}),
		mk(2, []int64{3},
			&store.Entry{Key: "bad", Value: []byte("x"), Offset: 1, Headers: []store.Header{{Key: "\xff"}}},
			&store.Entry{Key: "b", Value: []byte("2"), Offset: 2}),
		mk(3, []int64{4}, &store.Entry{Key: "bad", Offset: 3, ContentType: "\xc3"}),
	}}
	for _, cache := range []int64{0, 1 << 20} {
		reg := newRegistry()
		gw, err := gateway.New(gateway.Config{Source: panicSource{src}, ProgressInterval: 50 * time.Millisecond, CacheBytes: cache, Logger: testkit.Logger(t), Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		client := serveFake(t, gw)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := client.Subscribe(ctx, &confgatev1.SubscribeRequest{ResumeCursor: cursor.Cursor{Topic: topic, Offsets: []int64{0}}.Encode()})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for at := []int64{0}; at[0] < 4; {
			m, err := st.Recv()
			if err != nil {
				t.Fatalf("cache %d: stream ended after %v: %v", cache, keys, err)
			}
			var cb []byte
			switch x := m.Message.(type) {
			case *confgatev1.SubscribeResponse_Delta:
				for _, c := range x.Delta.Changes {
					keys = append(keys, c.GetPut().GetKey()+c.GetDelete().GetKey())
				}
				cb = x.Delta.Cursor
			case *confgatev1.SubscribeResponse_Progress:
				cb = x.Progress.Cursor
			}
			c, err := cursor.Decode(cb)
			if err != nil {
				t.Fatal(err)
			}
			at = c.Offsets
		}
		if fmtKeys(keys) != "[a b]" {
			t.Errorf("cache %d: got %v, want [a b] (the unencodable entries left out)", cache, keys)
		}
		if n := counter(t, reg, "confgate_gateway_unencodable_entries_total"); n < 2 {
			t.Errorf("cache %d: unencodable entries counted %v, want at least 2", cache, n)
		}
		_, err = client.Get(ctx, &confgatev1.GetRequest{Key: "a"})
		if status.Code(err) != codes.Internal {
			t.Errorf("cache %d: Get with a panicking source = %v, want INTERNAL", cache, err)
		}
		if n := counter(t, reg, "confgate_gateway_panics_total"); n != 1 {
			t.Errorf("cache %d: panics counted %v, want 1", cache, n)
		}
		// Still serving: a new stream works.
		st2, err := client.Subscribe(ctx, &confgatev1.SubscribeRequest{ResumeCursor: cursor.Cursor{Topic: topic, Offsets: []int64{4}}.Encode()})
		if err == nil {
			_, err = st2.Recv()
		}
		if err != nil {
			t.Errorf("cache %d: gateway not serving after the panic: %v", cache, err)
		}
		cancel()
	}
}

// serveFake serves gw on a free port until the test ends.
func serveFake(t *testing.T, gw *gateway.Gateway) confgatev1.ConfigServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = gw.Serve(ctx, lis, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return confgatev1.NewConfigServiceClient(conn)
}

// rawCodec sends pre-encoded request bytes, which no proto library would
// produce (strings that are not UTF-8), and decodes answers as proto.
type rawCodec struct{}

type rawMsg []byte

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(rawMsg); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return nil, errors.New("rawCodec: not raw")
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}
func (rawCodec) Name() string { return "proto" }

// field encodes one length-delimited field.
func field(n protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, n, protowire.BytesType), v)
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

// counter sums every series of the counter name in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// Every entry limit reached at once is accepted, on Apache Kafka with its
// default max.message.bytes in CI, and reaches a subscriber whole.
func TestPutAtEveryLimit(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	key := "big/" + strings.Repeat("k", keyspace.MaxKeyLen-4)
	ct := strings.Repeat("c", store.MaxContentTypeBytes)
	// The longest request ID and a precondition: the gateway adds all four
	// of its headers.
	req := &confgatev1.PutRequest{Key: key, Value: bytes.Repeat([]byte("v"), store.MaxValueBytes), ContentType: ct, WaitApplied: true,
		RequestId: strings.Repeat("r", store.MaxRequestIDBytes), Precondition: &confgatev1.Precondition{Condition: &confgatev1.Precondition_Absent{Absent: true}}}
	// A request may use the entry limits less the room of the headers
	// the gateway adds; the entry then holds exactly MaxHeaders.
	room := gateway.MaxRequestHeaderBytes - len(store.ContentTypeHeader) - len(ct)
	for i := range gateway.MaxRequestHeaders - 1 {
		h := &confgatev1.Header{Key: string(rune('a' + i%26))}
		room--
		req.Headers = append(req.Headers, h)
	}
	req.Headers[0].Value = bytes.Repeat([]byte("h"), room)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := g.Client.Put(ctx, req); err != nil {
		t.Fatalf("put at every limit: %v", err)
	}
	view, _, _ := testkit.Snapshot(t, g, "big/")
	e := view[key]
	if e == nil || len(e.Value) != store.MaxValueBytes || e.ContentType != ct || len(e.Headers) != store.MaxHeaders {
		t.Fatalf("entry at every limit: got %v", e != nil)
	}
	if h := e.Headers[len(e.Headers)-4:]; h[0].Key != gateway.WriterHeader || h[1].Key != gateway.GatewayHeader || h[2].Key != store.SetHeader || h[3].Key != store.IfHeader {
		t.Fatalf("the last headers are %q, %q, %q and %q, want the audit, set and precondition headers", h[0].Key, h[1].Key, h[2].Key, h[3].Key)
	}
	for _, tc := range []struct {
		name   string
		change func(*confgatev1.PutRequest)
		want   string
	}{
		{"one value byte more", func(r *confgatev1.PutRequest) { r.Value = append(r.Value, 'v') }, "value: "},
		{"one header byte more", func(r *confgatev1.PutRequest) { r.Headers[0].Value = append(r.Headers[0].Value, 'h') },
			fmt.Sprintf("more than the limit %d (an entry holds %d, content type included, less %d reserved for the audit headers", gateway.MaxRequestHeaderBytes, store.MaxHeaderBytes, gateway.ReservedHeaderBytes)},
		{"one header more", func(r *confgatev1.PutRequest) { r.Headers = append(r.Headers, &confgatev1.Header{Key: "z"}) },
			fmt.Sprintf("%d headers, more than the limit %d", gateway.MaxRequestHeaders+1, gateway.MaxRequestHeaders)},
	} {
		r := proto.Clone(req).(*confgatev1.PutRequest)
		tc.change(r)
		if _, err := g.Client.Put(ctx, r); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want INVALID_ARGUMENT with %q", tc.name, err, tc.want)
		}
	}
}
