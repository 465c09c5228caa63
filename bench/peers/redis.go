package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/confgate/confgate/internal/loadgen"
	"github.com/redis/go-redis/v9"
)

// redisTarget is a "Redis pub/sub layer": redis-server (the system's
// binary) in its own process, without persistence (pub/sub keeps nothing
// anyway). A write is SET key value and PUBLISH on the channel named by
// the key's prefix (up to its last '/'), in one MULTI, so a subscriber can
// also read state; a subscriber is a SUBSCRIBE to its prefix's channel on
// a connection of its own (go-redis opens a dedicated one per PubSub).
type redisTarget struct {
	dir  string
	srv  *child
	addr string
	w    *redis.Client
}

// redisMaxClients is raised from Redis's default 10,000: the sharded
// scenario holds 10,000 subscriber connections plus the writer's.
const redisMaxClients = 100000

// redisChannel is the channel a key's writes are published on: the key up
// to and including its last '/'.
func redisChannel(key string) string {
	return key[:strings.LastIndexByte(key, '/')+1]
}

// redisPayload carries the key with the value, since the channel names
// only the prefix: key '\n' value.
func redisPayload(key string, value []byte) []byte {
	b := make([]byte, 0, len(key)+1+len(value))
	b = append(b, key...)
	b = append(b, '\n')
	return append(b, value...)
}

func startRedis(ctx context.Context) (loadgen.Target, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("%w: redis-server not found on PATH (apt-get install redis-server)", errUnavailable)
	}
	dir, err := tempDir("peers-redis-")
	if err != nil {
		return nil, err
	}
	var addr string
	srv, _, err := startWithPorts(1, func(p []int) (*child, error) {
		addr = fmt.Sprintf("127.0.0.1:%d", p[0])
		ping := func(ctx context.Context) error {
			c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
			defer c.Close()
			return c.Ping(ctx).Err()
		}
		return startChild(ctx, "redis-server", filepath.Join(dir, "server.log"), 30*time.Second, ping,
			bin, "--port", itoa(p[0]), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--maxclients", itoa(redisMaxClients), "--daemonize", "no")
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	t := &redisTarget{dir: dir, srv: srv, addr: addr}
	t.w = redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64})
	return t, nil
}

func (t *redisTarget) Name() string { return "redis" }

func (t *redisTarget) Connect(ctx context.Context) (loadgen.Conn, error) {
	return &redisConn{cli: redis.NewClient(&redis.Options{Addr: t.addr})}, nil
}

func (t *redisTarget) Put(ctx context.Context, key string, value []byte) error {
	_, err := t.w.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, value, 0)
		p.Publish(ctx, redisChannel(key), redisPayload(key, value))
		return nil
	})
	return err
}

func (t *redisTarget) Server() loadgen.Server { return loadgen.Server{PIDs: []int{t.srv.PID()}} }

func (t *redisTarget) Close() error {
	if t.w != nil {
		t.w.Close()
	}
	if t.srv != nil {
		t.srv.Stop()
	}
	return os.RemoveAll(t.dir)
}

// redisConn is one go-redis client; each Subscribe opens its own PubSub
// connection from it.
type redisConn struct{ cli *redis.Client }

func (c *redisConn) Subscribe(ctx context.Context, prefix string, deliver func(string, []byte)) error {
	var ps *redis.PubSub
	exact := strings.HasSuffix(prefix, "/") || prefix == ""
	if exact {
		ps = c.cli.Subscribe(ctx, prefix)
	} else {
		// A prefix that does not end at a '/' spans several channels.
		ps = c.cli.PSubscribe(ctx, prefix+"*")
	}
	// Live once the server confirmed the subscription.
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return fmt.Errorf("redis subscribe %q: %w", prefix, err)
	}
	go func() {
		<-ctx.Done()
		ps.Close()
	}()
	go func() {
		for {
			m, err := ps.ReceiveMessage(context.WithoutCancel(ctx))
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				// go-redis reconnects the PubSub by itself
				time.Sleep(10 * time.Millisecond)
				continue
			}
			i := strings.IndexByte(m.Payload, '\n')
			if i < 0 {
				continue
			}
			k := m.Payload[:i]
			if !exact && !strings.HasPrefix(k, prefix) {
				continue
			}
			deliver(k, []byte(m.Payload[i+1:]))
		}
	}()
	return nil
}

func (c *redisConn) Close() error { return c.cli.Close() }
