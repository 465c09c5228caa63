package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/confgate/confgate/internal/loadgen"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsBucket is the KV bucket every NATS run writes to and watches.
const natsBucket = "peers"

// natsTarget is a nats-server with JetStream in its own process and one KV
// bucket (history 1, file storage: the durable equivalent of a compacted
// topic). A subscriber is a KeyValue Watch with UpdatesOnly (an ordered
// push consumer on the server, delivering only new writes); a write is a
// kv.Put, acknowledged by JetStream once stored.
type natsTarget struct {
	dir string
	srv *child
	url string
	nc  *nats.Conn
	kv  jetstream.KeyValue
}

// natsKey maps a confgate-style key to a NATS KV key: NATS subjects are
// tokenized by '.', so '/' becomes '.' (and back in fromNATSKey). Keys must
// not contain '.' themselves; loadgen's keys ("bench/p3/k7") do not.
func natsKey(k string) string     { return strings.ReplaceAll(k, "/", ".") }
func fromNATSKey(k string) string { return strings.ReplaceAll(k, ".", "/") }

// natsWatch is the KV watch filter for a key prefix: "<prefix>>" when the
// prefix ends at a token boundary ("bench/p3/" -> "bench.p3.>"); otherwise
// the widest boundary below it, filtered again on the client.
func natsWatch(prefix string) (filter string, exact bool) {
	m := natsKey(prefix)
	if m == "" {
		return ">", true
	}
	if strings.HasSuffix(m, ".") {
		return m + ">", true
	}
	i := strings.LastIndexByte(m, '.')
	if i < 0 {
		return ">", false
	}
	return m[:i+1] + ">", false
}

func startNATS(ctx context.Context) (loadgen.Target, error) {
	exe, err := selfExe()
	if err != nil {
		return nil, err
	}
	dir, err := tempDir("peers-nats-")
	if err != nil {
		return nil, err
	}
	srv, ports, err := startWithPorts(1, func(p []int) (*child, error) {
		store := filepath.Join(dir, "store")
		os.RemoveAll(store)
		return startChild(ctx, "nats-server", filepath.Join(dir, "server.log"), 60*time.Second, nil,
			exe, "serve-nats", "--port", itoa(p[0]), "--store", store)
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	t := &natsTarget{dir: dir, srv: srv, url: fmt.Sprintf("nats://127.0.0.1:%d", ports[0])}
	if err := t.setup(ctx); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *natsTarget) setup(ctx context.Context) error {
	nc, err := nats.Connect(t.url, nats.Name("peers-writer"))
	if err != nil {
		return fmt.Errorf("nats connect: %w", err)
	}
	t.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	t.kv, err = js.CreateKeyValue(cctx, jetstream.KeyValueConfig{
		Bucket:  natsBucket,
		History: 1,
		Storage: jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("nats create bucket: %w", err)
	}
	return nil
}

func (t *natsTarget) Name() string { return "nats" }

func (t *natsTarget) Connect(ctx context.Context) (loadgen.Conn, error) {
	nc, err := nats.Connect(t.url, nats.Name("peers-sub"))
	if err != nil {
		return nil, fmt.Errorf("nats connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	kv, err := js.KeyValue(ctx, natsBucket)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats bucket: %w", err)
	}
	return &natsConn{nc: nc, kv: kv}, nil
}

func (t *natsTarget) Put(ctx context.Context, key string, value []byte) error {
	_, err := t.kv.Put(ctx, natsKey(key), value)
	return err
}

func (t *natsTarget) Server() loadgen.Server { return loadgen.Server{PIDs: []int{t.srv.PID()}} }

func (t *natsTarget) Close() error {
	if t.nc != nil {
		t.nc.Close()
	}
	if t.srv != nil {
		t.srv.Stop()
	}
	return os.RemoveAll(t.dir)
}

// natsConn is one nats.Conn (one TCP connection) with the bucket bound.
type natsConn struct {
	nc *nats.Conn
	kv jetstream.KeyValue
}

func (c *natsConn) Subscribe(ctx context.Context, prefix string, deliver func(string, []byte)) error {
	filter, exact := natsWatch(prefix)
	// With UpdatesOnly the watcher sends no initial nil marker (nats.go
	// sends it only after initial values): it is live once Watch returns,
	// which is after the server created its consumer (DeliverNew).
	w, err := c.kv.Watch(context.WithoutCancel(ctx), filter, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("nats watch %q: %w", filter, err)
	}
	go func() {
		<-ctx.Done()
		w.Stop()
	}()
	go func() {
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			k := fromNATSKey(e.Key())
			if !exact && !strings.HasPrefix(k, prefix) {
				continue
			}
			deliver(k, e.Value())
		}
	}()
	return nil
}

func (c *natsConn) Close() error {
	c.nc.Close()
	return nil
}
