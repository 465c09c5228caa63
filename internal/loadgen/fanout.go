package loadgen

import (
	"context"
	"errors"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// FanoutConfig is one fan-out run: Subscribers spread over Prefixes
// (subscriber i watches prefix i%Prefixes), on Conns connections, while
// one open-loop writer issues Rate writes per second of Size bytes over
// Keys keys (key j under prefix j%Prefixes) for Duration.
type FanoutConfig struct {
	Subscribers int
	// Conns is how many connections carry the subscribers; 0 means one
	// per subscriber.
	Conns    int
	Prefixes int
	Keys     int
	Rate     float64
	Size     int
	Duration time.Duration
	// Warmup writes run before the measured ones and are not counted.
	Warmup time.Duration
	// Drain is how long to wait after the last write for deliveries.
	Drain time.Duration
	// KeyPrefix is put before every prefix ("bench/"), so a run can share
	// a deployment with other config.
	KeyPrefix string
}

// FanoutResult is what one run measured. Latencies are in microseconds.
type FanoutResult struct {
	Target string
	Config FanoutConfig
	// Delivery is write call to receipt, one value per (write, subscriber).
	Delivery *hdrhistogram.Histogram
	// AllHave is write call until the last concerned subscriber had it.
	AllHave *hdrhistogram.Histogram
	// Put is the write round trip alone.
	Put *hdrhistogram.Histogram
	// Writes issued and failed; Expected deliveries, Delivered (unique),
	// Duplicates.
	Writes, WriteErrors             int64
	Expected, Delivered, Duplicates int64
	// Server resource use over the measured window (zero when unknown).
	ServerCPU    time.Duration
	ServerRSSMax int64
	// ServerRSSIdle is the RSS with every subscriber connected, before
	// the first write.
	ServerRSSIdle int64
	// ClientCPU is this process's CPU over the measured window.
	ClientCPU time.Duration
	Elapsed   time.Duration
}

// ErrNotImplemented is returned until the runner exists.
var ErrNotImplemented = errors.New("loadgen: not implemented")

// RunFanout runs one fan-out measurement against t.
func RunFanout(ctx context.Context, t Target, cfg FanoutConfig) (*FanoutResult, error) {
	return nil, ErrNotImplemented
}
