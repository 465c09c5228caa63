package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/confgate/confgate/internal/loadgen"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdTarget is a single-member embedded etcd in its own process. A
// subscriber is a prefix Watch; a write is a Put (acknowledged after the
// raft commit, fsynced).
type etcdTarget struct {
	dir      string
	srv      *child
	endpoint string
	w        *clientv3.Client
}

func startEtcd(ctx context.Context) (loadgen.Target, error) {
	exe, err := selfExe()
	if err != nil {
		return nil, err
	}
	dir, err := tempDir("peers-etcd-")
	if err != nil {
		return nil, err
	}
	srv, ports, err := startWithPorts(2, func(p []int) (*child, error) {
		data := filepath.Join(dir, "data")
		os.RemoveAll(data)
		return startChild(ctx, "etcd", filepath.Join(dir, "server.log"), 90*time.Second, nil,
			exe, "serve-etcd", "--dir", data, "--client-port", itoa(p[0]), "--peer-port", itoa(p[1]))
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	t := &etcdTarget{dir: dir, srv: srv, endpoint: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	if t.w, err = t.client(ctx); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *etcdTarget) client(ctx context.Context) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{t.endpoint},
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
		Context:     context.WithoutCancel(ctx),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return cli, nil
}

func (t *etcdTarget) Name() string { return "etcd" }

func (t *etcdTarget) Connect(ctx context.Context) (loadgen.Conn, error) {
	cli, err := t.client(ctx)
	if err != nil {
		return nil, err
	}
	return &etcdConn{cli: cli}, nil
}

func (t *etcdTarget) Put(ctx context.Context, key string, value []byte) error {
	_, err := t.w.Put(ctx, key, string(value))
	return err
}

func (t *etcdTarget) Server() loadgen.Server { return loadgen.Server{PIDs: []int{t.srv.PID()}} }

func (t *etcdTarget) Close() error {
	if t.w != nil {
		t.w.Close()
	}
	if t.srv != nil {
		t.srv.Stop()
	}
	return os.RemoveAll(t.dir)
}

// etcdConn is one clientv3.Client: one gRPC connection, on which every
// Watch of this Conn shares one watch stream.
type etcdConn struct{ cli *clientv3.Client }

func (c *etcdConn) Subscribe(ctx context.Context, prefix string, deliver func(string, []byte)) error {
	wctx, cancel := context.WithCancel(ctx)
	wch := c.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	// Live once the server confirmed the watch.
	select {
	case resp, ok := <-wch:
		if !ok {
			cancel()
			return fmt.Errorf("etcd watch %q closed before it was created: %w", prefix, ctx.Err())
		}
		if err := resp.Err(); err != nil || !resp.Created {
			cancel()
			return fmt.Errorf("etcd watch %q: not created: %v", prefix, err)
		}
	case <-ctx.Done():
		cancel()
		return ctx.Err()
	}
	go func() {
		defer cancel()
		for resp := range wch {
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypePut {
					deliver(string(ev.Kv.Key), ev.Kv.Value)
				}
			}
		}
	}()
	return nil
}

func (c *etcdConn) Close() error { return c.cli.Close() }
