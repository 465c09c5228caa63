package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/confgate/confgate/client"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// Modes of the confgate target.
const (
	// ModeStub subscribes with the generated gRPC stub: the stream is live
	// once its SnapshotEnd arrived, and every put change of a Delta is a
	// delivery. Many subscribers can share one connection.
	ModeStub = "stub"
	// ModeClient subscribes with the Go client library (client/): live
	// after its first snapshot was applied, a delivery per EventPut of
	// its change callback. The library dials its own connection for every
	// subscriber, so FanoutConfig.Conns has no effect beyond how the
	// subscribers are spread over the addresses.
	ModeClient = "client"
)

// ConfgateOptions configure the confgate target.
//
// Connections use gRPC's default client windows and buffers (a 32 KiB read
// and a 32 KiB write buffer per connection, 64 KiB initial windows): they
// cost this process memory per connection, not the gateway, and have not
// been measured to change the figures, so they are left alone; tune them
// through DialOptions (grpc.WithReadBufferSize, WithWriteBufferSize,
// WithSharedWriteBuffer) when the client's own RSS limits a run.
type ConfgateOptions struct {
	// Addrs are gateway addresses (host:port); connections, and with them
	// subscribers, go round-robin over them. At least one.
	Addrs []string
	// DialOptions are added to every grpc.NewClient: transport
	// credentials and the per-RPC token. Default: plaintext.
	DialOptions []grpc.DialOption
	// Mode is ModeStub (the default) or ModeClient.
	Mode string
	// Server is where to read the gateways' CPU and RSS.
	Server Server
	// PutConns is how many connections carry the writes, round-robin
	// (default 4), apart from the subscribers'.
	PutConns int
}

// cgMaxRecv is the largest message accepted, as the CLI verbs: gateways
// keep messages under 4 MiB.
const cgMaxRecv = 16 << 20

// confgateTarget is the confgate Target.
type confgateTarget struct {
	o     ConfgateOptions
	dial  []grpc.DialOption
	next  atomic.Uint64 // round-robin over Addrs for Connect
	puts  []*grpc.ClientConn
	stubs []confgatev1.ConfigServiceClient
	putN  atomic.Uint64
}

// NewConfgate returns a Target for the confgate gateways at o.Addrs. It
// opens the write connections at once, and fails when they cannot be set
// up.
func NewConfgate(ctx context.Context, o ConfgateOptions) (Target, error) {
	if len(o.Addrs) == 0 {
		return nil, errors.New("loadgen: confgate: no gateway address")
	}
	switch o.Mode {
	case "":
		o.Mode = ModeStub
	case ModeStub, ModeClient:
	default:
		return nil, fmt.Errorf("loadgen: confgate: mode %q: want %s or %s", o.Mode, ModeStub, ModeClient)
	}
	if o.PutConns <= 0 {
		o.PutConns = 4
	}
	t := &confgateTarget{o: o}
	t.dial = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cgMaxRecv)),
	}, o.DialOptions...)
	for i := range o.PutConns {
		cc, err := cgConnect(ctx, o.Addrs[i%len(o.Addrs)], t.dial)
		if err != nil {
			t.Close()
			return nil, err
		}
		t.puts = append(t.puts, cc)
		t.stubs = append(t.stubs, confgatev1.NewConfigServiceClient(cc))
	}
	return t, nil
}

// cgConnect makes a connection to addr and waits until it is up.
func cgConnect(ctx context.Context, addr string, opts []grpc.DialOption) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	cc.Connect()
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return cc, nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			// Fail fast (a wrong address, a refused TLS handshake): a
			// benchmark's connections should all work at once.
			cc.Close()
			return nil, fmt.Errorf("connect %s: no connection (%s)", addr, s)
		}
		if !cc.WaitForStateChange(ctx, s) {
			cc.Close()
			return nil, fmt.Errorf("connect %s: %w (last state %s)", addr, ctx.Err(), s)
		}
	}
}

func (t *confgateTarget) Name() string {
	if t.o.Mode == ModeClient {
		return "confgate (client)"
	}
	return "confgate"
}

func (t *confgateTarget) Server() Server { return t.o.Server }

// Put writes through the Put RPC (acknowledged once Kafka has the record
// with acks=all).
func (t *confgateTarget) Put(ctx context.Context, key string, value []byte) error {
	c := t.stubs[t.putN.Add(1)%uint64(len(t.stubs))]
	_, err := c.Put(ctx, &confgatev1.PutRequest{Key: key, Value: value})
	return err
}

func (t *confgateTarget) Close() error {
	for _, cc := range t.puts {
		cc.Close()
	}
	return nil
}

// Connect opens one gRPC connection (its own grpc.ClientConn, so its own
// TCP connection) in stub mode; in client mode it only picks the address
// the subscribers on it use.
func (t *confgateTarget) Connect(ctx context.Context) (Conn, error) {
	addr := t.o.Addrs[(t.next.Add(1)-1)%uint64(len(t.o.Addrs))]
	c := &cgConn{t: t, addr: addr}
	if t.o.Mode == ModeStub {
		cc, err := cgConnect(ctx, addr, t.dial)
		if err != nil {
			return nil, err
		}
		c.cc, c.stub = cc, confgatev1.NewConfigServiceClient(cc)
	}
	return c, nil
}

// cgConn is one connection and the subscribers on it.
type cgConn struct {
	t    *confgateTarget
	addr string
	cc   *grpc.ClientConn // stub mode
	stub confgatev1.ConfigServiceClient

	mu     sync.Mutex
	closed bool
	cancel []context.CancelFunc
	wg     sync.WaitGroup // the subscribers' goroutines
}

// track registers a subscriber's goroutine; false when the conn is closed.
func (c *cgConn) track(cancel context.CancelFunc) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.cancel = append(c.cancel, cancel)
	c.wg.Add(1)
	return true
}

// Close ends the subscribers on c, waits for their goroutines and closes
// the connection.
func (c *cgConn) Close() error {
	c.mu.Lock()
	c.closed = true
	cancels := c.cancel
	c.cancel = nil
	c.mu.Unlock()
	for _, f := range cancels {
		f()
	}
	c.wg.Wait()
	if c.cc != nil {
		return c.cc.Close()
	}
	return nil
}

func (c *cgConn) Subscribe(ctx context.Context, prefix string, deliver func(key string, value []byte)) error {
	ctx, cancel := context.WithCancel(ctx)
	if !c.track(cancel) {
		cancel()
		return errors.New("loadgen: confgate: connection closed")
	}
	var err error
	if c.t.o.Mode == ModeClient {
		err = c.subscribeClient(ctx, prefix, deliver)
	} else {
		err = c.subscribeStub(ctx, prefix, deliver)
	}
	if err != nil {
		cancel()
	}
	return err
}

// subscribeStub opens a Subscribe stream and reads it until its snapshot
// ended, then hands it to a goroutine that delivers every put of every
// Delta until the stream or ctx ends.
func (c *cgConn) subscribeStub(ctx context.Context, prefix string, deliver func(string, []byte)) error {
	stream, err := c.stub.Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: []string{prefix}}})
	if err != nil {
		c.wg.Done()
		return err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			c.wg.Done()
			if err == io.EOF {
				err = errors.New("stream ended before its snapshot")
			}
			return err
		}
		if m.GetSnapshotEnd() != nil {
			break
		}
	}
	go func() {
		defer c.wg.Done()
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			for _, ch := range m.GetDelta().GetChanges() {
				if e := ch.GetPut(); e != nil {
					deliver(e.GetKey(), e.GetValue())
				}
			}
		}
	}()
	return nil
}

// subscribeClient subscribes with the client library and waits for its
// first snapshot.
func (c *cgConn) subscribeClient(ctx context.Context, prefix string, deliver func(string, []byte)) error {
	v, err := client.Subscribe(ctx, client.Config{
		Addrs:         []string{c.addr},
		Prefixes:      []string{prefix},
		DialOptions:   c.t.dial,
		KeepAddrOrder: true,
		Logger:        slog.New(slog.DiscardHandler),
		OnChange: func(e client.Event) {
			if e.Kind == client.EventPut && e.Entry != nil {
				deliver(e.Key, e.Entry.Value)
			}
		},
	})
	if err != nil {
		c.wg.Done()
		return err
	}
	if err := v.WaitSynced(ctx); err != nil {
		v.Close()
		c.wg.Done()
		return err
	}
	go func() {
		defer c.wg.Done()
		<-ctx.Done()
		v.Close()
	}()
	return nil
}
