package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const refused = "confgate_gateway_refused_total"

func dial(t *testing.T, addr string) (*grpc.ClientConn, confgatev1.ConfigServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, confgatev1.NewConfigServiceClient(conn)
}

// subscribeOn opens a Subscribe stream with c and waits for its snapshot.
func subscribeOn(t *testing.T, c confgatev1.ConfigServiceClient) (confgatev1.ConfigService_SubscribeClient, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := c.Subscribe(ctx, &confgatev1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	untilSnapshot(t, st)
	return st, cancel
}

func untilSnapshot(t *testing.T, st confgatev1.ConfigService_SubscribeClient) {
	t.Helper()
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("waiting for the snapshot: %v", err)
		}
		if m.GetSnapshotEnd() != nil {
			return
		}
	}
}

// untilKey reads st until a delta carries key.
func untilKey(t *testing.T, st confgatev1.ConfigService_SubscribeClient, key string) {
	t.Helper()
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("waiting for %s: %v", key, err)
		}
		for _, ch := range m.GetDelta().GetChanges() {
			if ch.GetPut().GetKey() == key {
				return
			}
		}
	}
}

// Past MaxStreams new streams get RESOURCE_EXHAUSTED saying which limit;
// the open ones keep receiving, a health Watch still gets in (the health
// reserve), and once a stream ends a new one is admitted.
func TestMaxStreamsRefusesNewStreamsOnly(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gateway.Config{MaxStreams: 3}})
	testkit.Put(t, g, "app/a", "1")

	var open []confgatev1.ConfigService_SubscribeClient
	var cancels []context.CancelFunc
	for i := range 3 {
		c := g.Client
		if i > 0 { // spread over connections: the limit is per gateway
			_, c = dial(t, g.Addr)
		}
		st, cancel := subscribeOn(t, c)
		open, cancels = append(open, st), append(cancels, cancel)
	}

	for _, c := range []confgatev1.ConfigServiceClient{g.Client, func() confgatev1.ConfigServiceClient { _, c := dial(t, g.Addr); return c }()} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := c.Subscribe(ctx, &confgatev1.SubscribeRequest{})
		if err == nil {
			_, err = st.Recv()
		}
		cancel()
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-streams") || !strings.Contains(err.Error(), "3") {
			t.Fatalf("stream past the limit: %v, want RESOURCE_EXHAUSTED naming --max-streams and its value", err)
		}
	}
	if got := testkit.Metric(t, g, refused, "streams"); got != 2 {
		t.Fatalf("refused{streams} = %v, want 2", got)
	}

	// A load balancer's health Watch still works on the full gateway (it
	// counts, but may use a small reserve above the limit).
	ctx, cancelWatch := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelWatch()
	hw, err := healthpb.NewHealthClient(g.Conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := hw.Recv(); err != nil || r.GetStatus() == healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
		t.Fatalf("health Watch on a full gateway: %v %v", r, err)
	}

	testkit.Put(t, g, "app/after", "2")
	for _, st := range open {
		untilKey(t, st, "app/after")
	}

	cancelWatch()
	cancels[0]()
	testkit.Eventually(t, 10*time.Second, "a new stream admitted after one ended", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := g.Client.Subscribe(ctx, &confgatev1.SubscribeRequest{})
		if err != nil {
			return false
		}
		for {
			m, err := st.Recv()
			if err != nil {
				return false
			}
			if m.GetSnapshotEnd() != nil {
				return true
			}
		}
	})
}

// A connection is held to MaxStreamsPerConn: the gateway advertises it in
// SETTINGS and refuses streams past it (REFUSED_STREAM, which clients
// retry); grpc-go clients queue the extra stream until one ends.
func TestMaxStreamsPerConn(t *testing.T) {
	const perConn = 4
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gateway.Config{MaxStreamsPerConn: perConn}})
	testkit.Put(t, g, "app/a", "1")

	t.Run("raw", func(t *testing.T) {
		h := dialH2(t, g.Addr)
		if got := h.settings[http2.SettingMaxConcurrentStreams]; got != perConn {
			t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want %d", got, perConn)
		}
		for i := range perConn + 2 {
			h.headers(t, uint32(2*i+1), "/confgate.v1.ConfigService/Subscribe")
		}
		// The streams within the limit wait for their request; the two
		// past it are refused.
		refusedIDs := map[uint32]bool{}
		for len(refusedIDs) < 2 {
			f, err := h.fr.ReadFrame()
			if err != nil {
				t.Fatalf("read: %v (refused so far: %v)", err, refusedIDs)
			}
			if rst, ok := f.(*http2.RSTStreamFrame); ok {
				if rst.ErrCode != http2.ErrCodeRefusedStream {
					t.Fatalf("stream %d reset with %v", rst.StreamID, rst.ErrCode)
				}
				refusedIDs[rst.StreamID] = true
			}
		}
		if !refusedIDs[2*perConn+1] || !refusedIDs[2*perConn+3] {
			t.Fatalf("refused streams %v, want the last two", refusedIDs)
		}
	})

	t.Run("grpc client", func(t *testing.T) {
		_, c := dial(t, g.Addr)
		var cancels []context.CancelFunc
		for range perConn {
			_, cancel := subscribeOn(t, c)
			cancels = append(cancels, cancel)
		}
		extra := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			st, err := c.Subscribe(ctx, &confgatev1.SubscribeRequest{})
			if err == nil {
				for {
					var m *confgatev1.SubscribeResponse
					if m, err = st.Recv(); err != nil || m.GetSnapshotEnd() != nil {
						break
					}
				}
			}
			extra <- err
		}()
		select {
		case err := <-extra:
			t.Fatalf("stream %d on one connection got through (err %v)", perConn+1, err)
		case <-time.After(200 * time.Millisecond):
		}
		cancels[0]()
		if err := <-extra; err != nil {
			t.Fatalf("queued stream after one ended: %v", err)
		}
	})
}

// h2 is a raw HTTP/2 client connection, for what grpc clients never do.
type h2 struct {
	conn     net.Conn
	fr       *http2.Framer
	settings map[http2.SettingID]uint32
	hbuf     bytes.Buffer
	henc     *hpack.Encoder
	addr     string
}

// dialH2 connects, exchanges the preface and reads the server's SETTINGS.
func dialH2(t *testing.T, addr string) *h2 {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	h := &h2{conn: c, fr: http2.NewFramer(c, c), settings: map[http2.SettingID]uint32{}, addr: addr}
	h.henc = hpack.NewEncoder(&h.hbuf)
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("server SETTINGS: %v", err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			_ = s.ForeachSetting(func(s http2.Setting) error { h.settings[s.ID] = s.Val; return nil })
			if err := h.fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			return h
		}
	}
}

// headers opens stream id for a gRPC call of method, without a request.
func (h *h2) headers(t *testing.T, id uint32, method string) {
	t.Helper()
	if err := h.writeHeaders(id, method); err != nil {
		t.Fatal(err)
	}
}

func (h *h2) writeHeaders(id uint32, method string) error {
	h.hbuf.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", h.addr},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = h.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hbuf.Bytes(), EndHeaders: true})
}

// A client that opens and cancels streams faster than MaxResetsPerSecond
// (an HTTP/2 rapid-reset flood) gets its connection closed and counted,
// whatever method it names; a client on another connection keeps its
// stream and opens new ones.
func TestRapidResetClosesConnection(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gateway.Config{MaxResetsPerSecond: 10}}) // burst 100
	testkit.Put(t, g, "app/a", "1")
	bystander, _ := subscribeOn(t, g.Client)

	// A well-behaved client cancelling a few streams (less than the burst)
	// keeps its connection.
	conn, c := dial(t, g.Addr)
	for range 20 {
		_, cancel := subscribeOn(t, c)
		cancel()
	}
	if got := testkit.Metric(t, g, refused, "resets"); got != 0 {
		t.Fatalf("refused{resets} = %v after 20 cancels, want 0", got)
	}
	if _, err := c.Get(context.Background(), &confgatev1.GetRequest{Key: "app/a"}); err != nil {
		t.Fatalf("client that cancelled 20 streams: %v", err)
	}
	// Nor are streams ended by their connection closing, even more of
	// them than the burst.
	for range 150 {
		subscribeOn(t, c)
	}
	conn.Close()
	testkit.Eventually(t, 10*time.Second, "the closed connection's streams to end", func() bool {
		return testkit.Metric(t, g, "confgate_gateway_connections", "") == 1
	})
	if got := testkit.Metric(t, g, refused, "resets"); got != 0 {
		t.Fatalf("refused{resets} = %v after a connection with 150 streams closed, want 0", got)
	}

	// The flood runs against a gateway allowing 1 reset a second (burst
	// 10): the connection must close however slowly a loaded machine
	// processes the pairs, as long as it is faster than that.
	g = testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gateway.Config{MaxResetsPerSecond: 1}})
	testkit.Put(t, g, "app/a", "1")
	bystander, _ = subscribeOn(t, g.Client)
	const maxPairs = 200000
	for i, method := range []string{
		"/confgate.v1.ConfigService/Subscribe",
		"/confgate.v1.ConfigService/GetSnapshot",
		"/grpc.health.v1.Health/Watch",
		"/confgate.v1.ConfigService/NoSuchMethod", // no handler: no stats.End
		"/no.such.Service/Method",
	} {
		t.Run(method, func(t *testing.T) {
			h := dialH2(t, g.Addr)
			// closed is closed (not sent to) when reading fails, so both
			// the flood loop and the check below see it.
			closed := make(chan struct{})
			var readErr error
			go func() {
				defer close(closed)
				for {
					if _, err := h.fr.ReadFrame(); err != nil {
						readErr = err
						return
					}
				}
			}()
			sent := 0
		flood:
			for id := uint32(1); sent < maxPairs; id += 2 {
				select {
				case <-closed:
					break flood
				default:
				}
				if h.writeHeaders(id, method) != nil || h.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
					break
				}
				sent++
			}
			select {
			case <-closed:
				err := readErr
				if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
					t.Fatalf("connection still open after %d HEADERS+RST_STREAM pairs", sent)
				}
				t.Logf("%s: connection closed after %d HEADERS+RST_STREAM pairs (%v)", method, sent, err)
			case <-time.After(30 * time.Second):
				t.Fatalf("connection still open after %d HEADERS+RST_STREAM pairs", sent)
			}
			if sent <= 10 {
				t.Fatalf("closed after %d pairs, within the burst of 10", sent)
			}
			testkit.Eventually(t, 10*time.Second, "refused{resets} counted", func() bool {
				return testkit.Metric(t, g, refused, "resets") == float64(i+1)
			})
		})
	}

	testkit.Put(t, g, "app/after", "2")
	untilKey(t, bystander, "app/after")
	subscribeOn(t, g.Client)
	if got := testkit.Metric(t, g, refused, "resets"); got != 5 {
		t.Fatalf("refused{resets} = %v, want 5 (one per flooding connection)", got)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Past MaxConnections new connections are accepted and closed at once and
// counted; the open ones and the admin listener keep working, and once
// some close new ones get in again.
func TestMaxConnections(t *testing.T) {
	const maxConns = 3
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gateway.Config{MaxConnections: maxConns}})
	testkit.Put(t, g, "app/a", "1") // g.Conn is the first connection

	get := func(c confgatev1.ConfigServiceClient) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.Get(ctx, &confgatev1.GetRequest{Key: "app/a"})
		return err
	}
	var conns []*grpc.ClientConn
	clients := []confgatev1.ConfigServiceClient{g.Client}
	for range maxConns - 1 {
		conn, c := dial(t, g.Addr)
		if err := get(c); err != nil {
			t.Fatal(err)
		}
		conns, clients = append(conns, conn), append(clients, c)
	}
	if got := testkit.Metric(t, g, "confgate_gateway_connections", ""); got != maxConns {
		t.Fatalf("connections gauge = %v, want %d", got, maxConns)
	}

	// A raw connection past the limit is closed by the gateway (EOF or
	// reset), not left waiting.
	for range 3 {
		c, err := net.Dial("tcp", g.Addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err = c.Read(make([]byte, 64))
		c.Close()
		if err == nil || isTimeout(err) {
			t.Fatalf("connection past the limit: read %v, want it closed", err)
		}
	}
	// A grpc client past the limit fails fast with UNAVAILABLE.
	_, extra := dial(t, g.Addr)
	if err := get(extra); status.Code(err) != codes.Unavailable {
		t.Fatalf("grpc client past the limit: %v, want UNAVAILABLE", err)
	}
	if got := testkit.Metric(t, g, refused, "connections"); got < 4 {
		t.Fatalf("refused{connections} = %v, want at least 4", got)
	}
	// The admin listener is unaffected.
	resp, err := http.Get("http://" + g.Admin + "/readyz")
	if err != nil {
		t.Fatalf("/readyz while the gRPC listener is full: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %s", resp.Status)
	}
	for _, c := range clients {
		if err := get(c); err != nil {
			t.Fatalf("open connection while full: %v", err)
		}
	}
	if got := testkit.Metric(t, g, "confgate_gateway_connections", ""); got != maxConns {
		t.Fatalf("connections gauge = %v after refusals, want %d", got, maxConns)
	}

	conns[0].Close()
	testkit.Eventually(t, 10*time.Second, "the gauge to drop", func() bool {
		return testkit.Metric(t, g, "confgate_gateway_connections", "") == maxConns-1
	})
	_, again := dial(t, g.Addr)
	if err := get(again); err != nil {
		t.Fatalf("new connection after one closed: %v", err)
	}
}
