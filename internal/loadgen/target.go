package loadgen

import "context"

// Target is one system under test. A run opens connections, subscribes on
// them, and writes through one writer; every method may be called from
// many goroutines.
type Target interface {
	// Name labels the target in reports ("confgate", "etcd", ...).
	Name() string
	// Connect opens one client connection (one TCP connection where the
	// system allows it) on which subscribers are opened.
	Connect(ctx context.Context) (Conn, error)
	// Put writes value under key and returns once the system acknowledged
	// it (its own durability: acks=all for confgate, raft commit for etcd,
	// JetStream ack for NATS, PUBLISH's reply for Redis).
	Put(ctx context.Context, key string, value []byte) error
	// Server is the process to sample CPU and RSS from, if known.
	Server() Server
	Close() error
}

// Conn is one client connection.
type Conn interface {
	// Subscribe receives every later write to a key under prefix and
	// calls deliver for each, from one goroutine per subscriber. It
	// returns once the subscription is live (a write issued after it
	// returns is delivered), and ends when ctx ends.
	Subscribe(ctx context.Context, prefix string, deliver func(key string, value []byte)) error
	Close() error
}

// Server says where to read a server's resource use.
type Server struct {
	// PIDs are local processes whose CPU and RSS are summed (/proc).
	PIDs []int
	// MetricsURL is a Prometheus endpoint exposing process_cpu_seconds_total
	// and process_resident_memory_bytes, for a remote server.
	MetricsURL string
}

// Writer writes one value and returns once it is acknowledged.
type Writer func(ctx context.Context, key string, value []byte) error
