package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
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
	// ConnectParallelism bounds the connections and subscriptions being
	// opened at once; 0 means DefaultConnectParallelism.
	ConnectParallelism int
	// Baseline, when set, is written alongside every measured write, at
	// the same time, with a value of the same size and its own round trip
	// recorded (FanoutResult.BaselinePut): the write path's floor on the
	// same machine under the same load, e.g. a plain franz-go producer
	// (KafkaWriter) to the Kafka the gateway writes to. Its receipts are
	// nobody's concern; it must not write where the subscribers watch.
	Baseline Writer
	// MaxInFlight bounds the writes waiting for their acknowledgement;
	// a write due while that many are in flight is not issued and counts
	// as a write error. 0 means DefaultMaxInFlight.
	MaxInFlight int
}

// Defaults of FanoutConfig's bounds.
const (
	DefaultConnectParallelism = 128
	DefaultMaxInFlight        = 10000
)

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
	// BaselinePut is the Baseline writer's round trip (nil without one);
	// BaselineErrors its failed writes.
	BaselinePut    *hdrhistogram.Histogram
	BaselineErrors int64
	// ServerPutP50 and ServerPutP99 are the gateway's own time to answer
	// a Put over the measured window, from its request histogram, when
	// Server.MetricsURL serves one (NaN otherwise): the write path without
	// the network and without this process's scheduling.
	ServerPutP50, ServerPutP99 float64
	// Writes issued and failed; Expected deliveries, Delivered (unique),
	// Duplicates.
	Writes, WriteErrors             int64
	Expected, Delivered, Duplicates int64
	// Server resource use over the measured window (zero when unknown).
	ServerCPU    time.Duration
	ServerRSSMax int64
	// ServerRSSBase is the RSS before any subscriber connected.
	ServerRSSBase int64
	// ServerRSSIdle is the RSS with every subscriber connected, before
	// the first write.
	ServerRSSIdle int64
	// ServerKnown is true when the target named a server to sample.
	ServerKnown bool
	// ClientCPU is this process's CPU over the measured window.
	ClientCPU time.Duration
	// ConnectTime is the time to open every connection and subscriber
	// (until the last one was live).
	ConnectTime time.Duration
	// Elapsed is the measured window: the first measured write's call to
	// the end of the drain.
	Elapsed time.Duration
}

// Histogram bounds: 1 us to 10 min, 3 significant figures.
const (
	fanHistMin = 1
	fanHistMax = int64(10 * time.Minute / time.Microsecond)
	fanHistSig = 3
	fanShards  = 64
	fanPoll    = 10 * time.Millisecond
)

func fanHist() *hdrhistogram.Histogram { return hdrhistogram.New(fanHistMin, fanHistMax, fanHistSig) }

// fanRecord records d in microseconds, clamped to the histogram's range.
func fanRecord(h *hdrhistogram.Histogram, d time.Duration) {
	v := min(max(int64(d/time.Microsecond), fanHistMin), fanHistMax)
	_ = h.RecordValue(v)
}

// fanWrite is the accounting of one write.
type fanWrite struct {
	issued    atomic.Int64 // write call, ns since the run's clock start; 0 = not issued
	concerned int32        // subscribers watching its prefix
	state     atomic.Int32 // fanPending, fanOK, fanFailed
	received  atomic.Int32 // unique receipts
	last      atomic.Int64 // latest receipt, ns since the clock start
}

const (
	fanPending int32 = iota
	fanOK
	fanFailed
)

// fanSub is one subscriber's receipts; guarded by its shard's lock.
type fanSub struct {
	prefix int
	seen   []uint64 // bit j/Prefixes: write j was received
}

// fanShard holds a share of the subscribers and their delivery histogram:
// one lock per receipt, spread over fanShards.
type fanShard struct {
	mu      sync.Mutex
	hist    *hdrhistogram.Histogram
	dups    int64
	stopped bool
	_       [64]byte // keeps shards' locks on separate cache lines
}

// fanRun is the state of one RunFanout.
type fanRun struct {
	cfg     FanoutConfig
	tag     uint32
	clock   time.Time // monotonic origin of every time below
	clockNS int64     // clock.UnixNano()
	warmup  int       // warmup writes (sequence numbers 0..warmup-1)
	total   int       // warmup + measured writes
	writes  []fanWrite
	subs    []fanSub
	shards  [fanShards]fanShard
}

func (r *fanRun) since() int64 { return int64(time.Since(r.clock)) }

// deliver records subscriber i's receipt of value.
func (r *fanRun) deliver(i int, value []byte) {
	now := r.since()
	id, at, ok := DecodePayload(value)
	if !ok {
		return
	}
	tag, seq := splitID(id)
	if tag != r.tag || seq < r.warmup || seq >= r.total {
		return
	}
	s := &r.subs[i]
	P := r.cfg.Prefixes
	if seq%P != s.prefix {
		return
	}
	w := &r.writes[seq]
	lat := time.Duration(now - (at.UnixNano() - r.clockNS))
	sh := &r.shards[i%fanShards]
	sh.mu.Lock()
	if sh.stopped {
		sh.mu.Unlock()
		return
	}
	bit := seq / P
	word, mask := bit/64, uint64(1)<<(bit%64)
	if s.seen[word]&mask != 0 {
		sh.dups++
		sh.mu.Unlock()
		return
	}
	s.seen[word] |= mask
	fanRecord(sh.hist, lat)
	// Under the shard lock, so that collect sees every receipt it merged
	// counted and no other.
	w.received.Add(1)
	for {
		l := w.last.Load()
		if now <= l || w.last.CompareAndSwap(l, now) {
			break
		}
	}
	sh.mu.Unlock()
}

// normalize fills defaults and checks cfg.
func (cfg FanoutConfig) normalize() (FanoutConfig, error) {
	if cfg.Subscribers < 1 {
		return cfg, errors.New("loadgen: Subscribers must be at least 1")
	}
	if cfg.Prefixes < 1 {
		cfg.Prefixes = 1
	}
	if cfg.Keys < 1 {
		cfg.Keys = 1
	}
	if cfg.Conns <= 0 || cfg.Conns > cfg.Subscribers {
		cfg.Conns = cfg.Subscribers
	}
	if !(cfg.Rate > 0) || math.IsInf(cfg.Rate, 0) {
		return cfg, errors.New("loadgen: Rate must be a positive number of writes per second")
	}
	if cfg.Duration <= 0 {
		return cfg, errors.New("loadgen: Duration must be positive")
	}
	if cfg.Warmup < 0 || cfg.Drain < 0 {
		return cfg, errors.New("loadgen: Warmup and Drain must not be negative")
	}
	cfg.Size = max(cfg.Size, PayloadHeader)
	if cfg.ConnectParallelism <= 0 {
		cfg.ConnectParallelism = DefaultConnectParallelism
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if n := math.Round(cfg.Rate * (cfg.Warmup + cfg.Duration).Seconds()); n > math.MaxInt32 {
		return cfg, fmt.Errorf("loadgen: %.0f writes are too many for one run", n)
	}
	return cfg, nil
}

// RunFanout runs one fan-out measurement against t: it opens the
// subscribers, writes at cfg.Rate in an open loop (every write is issued
// at its scheduled time, in a goroutine of its own, whatever earlier
// writes are doing), waits for the deliveries and reports. Warmup writes
// and values that are not this run's are ignored. When ctx ends the run
// stops, every subscriber and connection is closed, and ctx's error is
// returned.
func RunFanout(ctx context.Context, t Target, cfg FanoutConfig) (*FanoutResult, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	r := &fanRun{
		cfg:    cfg,
		tag:    rand.Uint32() | 1,
		warmup: int(math.Round(cfg.Rate * cfg.Warmup.Seconds())),
		clock:  time.Now(),
	}
	r.clockNS = r.clock.UnixNano()
	measured := int(math.Round(cfg.Rate * cfg.Duration.Seconds()))
	if measured < 1 {
		measured = 1
	}
	r.total = r.warmup + measured
	r.writes = make([]fanWrite, r.total)
	perPrefix := make([]int32, cfg.Prefixes)
	r.subs = make([]fanSub, cfg.Subscribers)
	words := (r.total/cfg.Prefixes + 1 + 63) / 64
	for i := range r.subs {
		p := i % cfg.Prefixes
		r.subs[i] = fanSub{prefix: p, seen: make([]uint64, words)}
		perPrefix[p]++
	}
	for j := range r.writes {
		r.writes[j].concerned = perPrefix[j%cfg.Prefixes]
	}
	for i := range r.shards {
		r.shards[i].hist = fanHist()
	}
	res := &FanoutResult{Target: t.Name(), Config: cfg, Put: fanHist()}
	if cfg.Baseline != nil {
		res.BaselinePut = fanHist()
	}
	srv := t.Server()

	// Server usage before anyone connected.
	base, known, err := srv.Usage(ctx)
	if err != nil {
		return nil, fmt.Errorf("loadgen: server usage: %w", err)
	}
	res.ServerKnown = known
	res.ServerRSSBase = base.RSS

	// Subscribers live until subCtx ends; connections are closed on return.
	subCtx, cancelSubs := context.WithCancel(ctx)
	defer cancelSubs()
	start := time.Now()
	conns, err := fanOpenConns(subCtx, cancelSubs, t, cfg)
	defer func() {
		cancelSubs()
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	if err := r.subscribe(subCtx, cancelSubs, conns); err != nil {
		return nil, err
	}
	res.ConnectTime = time.Since(start)
	idle, _, err := srv.Usage(ctx)
	if err != nil {
		return nil, fmt.Errorf("loadgen: server usage: %w", err)
	}
	res.ServerRSSIdle = idle.RSS
	res.ServerRSSMax = idle.RSS

	// The peak RSS over the writes and the drain.
	smp := startSampler(ctx, srv, 250*time.Millisecond)
	defer smp.cancel()

	// The writer, then the drain.
	putCtx, cancelPuts := context.WithCancel(ctx)
	defer cancelPuts()
	var puts sync.WaitGroup
	var before, clientBefore Usage
	var beforeErr, clientBeforeErr error
	var measureStart time.Time
	wr := fanWriter{r: r, t: t, res: res, putCtx: putCtx, puts: &puts}
	var putsBefore bucketCounts
	putsOK := false
	err = wr.loop(ctx, func() {
		if srv.MetricsURL != "" {
			putsBefore, putsOK, _ = serverPuts(ctx, srv.MetricsURL)
		}
		before, _, beforeErr = srv.Usage(ctx)
		clientBefore, clientBeforeErr = ProcUsage(os.Getpid())
		measureStart = time.Now()
	})
	if err != nil {
		cancelPuts()
		puts.Wait()
		return nil, err
	}
	deadline := time.Now().Add(cfg.Drain)
	allDone := make(chan struct{})
	go func() { puts.Wait(); close(allDone) }()
	for {
		putsDone := false
		select {
		case <-allDone:
			putsDone = true
		default:
		}
		if putsDone && r.allArrived() {
			break
		}
		if !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			cancelPuts()
			<-allDone
			return nil, ctx.Err()
		case <-time.After(fanPoll):
		}
	}
	end := time.Now()
	res.ServerPutP50, res.ServerPutP99 = math.NaN(), math.NaN()
	if putsOK {
		if putsAfter, ok, err := serverPuts(ctx, srv.MetricsURL); err == nil && ok {
			res.ServerPutP50 = histQuantile(putsBefore, putsAfter, 0.50)
			res.ServerPutP99 = histQuantile(putsBefore, putsAfter, 0.99)
		}
	}
	after, _, afterErr := srv.Usage(ctx)
	clientAfter, clientAfterErr := ProcUsage(os.Getpid())
	cancelPuts()
	<-allDone
	_, peak, _, _ := smp.stop(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Elapsed = end.Sub(measureStart)
	if known && beforeErr == nil && afterErr == nil && after.CPU >= before.CPU {
		res.ServerCPU = after.CPU - before.CPU
	}
	if clientBeforeErr == nil && clientAfterErr == nil && clientAfter.CPU >= clientBefore.CPU {
		res.ClientCPU = clientAfter.CPU - clientBefore.CPU
	}
	res.ServerRSSMax = max(idle.RSS, peak, after.RSS)
	r.collect(res)
	return res, nil
}

// fanOpenConns opens cfg.Conns connections, cfg.ConnectParallelism at a
// time. ctx is the connections' lifetime; fail is called on the first
// error, and should end ctx.
func fanOpenConns(ctx context.Context, fail func(), t Target, cfg FanoutConfig) ([]Conn, error) {
	conns := make([]Conn, cfg.Conns)
	err := fanParallel(ctx, fail, cfg.Conns, cfg.ConnectParallelism, func(i int) error {
		c, err := t.Connect(ctx)
		if err != nil {
			return fmt.Errorf("loadgen: connection %d: %w", i, err)
		}
		conns[i] = c
		return nil
	})
	return conns, err
}

// subscribe opens every subscriber, round-robin over conns. ctx is the
// subscriptions' lifetime; fail is called on the first error, and should
// end ctx.
func (r *fanRun) subscribe(ctx context.Context, fail func(), conns []Conn) error {
	return fanParallel(ctx, fail, len(r.subs), r.cfg.ConnectParallelism, func(i int) error {
		prefix := SubscriberPrefix(r.cfg.KeyPrefix, i, r.cfg.Prefixes)
		err := conns[i%len(conns)].Subscribe(ctx, prefix, func(_ string, value []byte) { r.deliver(i, value) })
		if err != nil {
			return fmt.Errorf("loadgen: subscriber %d (%s): %w", i, prefix, err)
		}
		return nil
	})
}

// fanParallel runs f(0..n-1) with at most width at once. The first error
// calls fail (which ends ctx, so the calls running give up) and is
// returned; ctx's own error when ctx ended first.
func fanParallel(ctx context.Context, fail func(), n, width int, f func(int) error) error {
	var (
		wg     sync.WaitGroup
		once   sync.Once
		first  error
		failed atomic.Bool
	)
	sem := make(chan struct{}, width)
	for i := 0; i < n && !failed.Load(); i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				once.Do(func() { first = err; failed.Store(true); fail() })
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// fanWriter is the open-loop writer.
type fanWriter struct {
	r      *fanRun
	t      Target
	res    *FanoutResult
	putCtx context.Context
	puts   *sync.WaitGroup

	mu       sync.Mutex // guards res.Put
	inFlight atomic.Int64
}

// loop issues every write at its time; measuring is called just before the
// first measured write. It returns once the last write was issued (not
// answered), or ctx's error.
func (w *fanWriter) loop(ctx context.Context, measuring func()) error {
	r := w.r
	interval := float64(time.Second) / r.cfg.Rate
	origin := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for j := 0; j < r.total; j++ {
		if j == r.warmup {
			measuring()
		}
		due := time.Duration(float64(j) * interval)
		if wait := due - time.Since(origin); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		wr := &r.writes[j]
		if w.inFlight.Load() >= int64(r.cfg.MaxInFlight) {
			wr.state.Store(fanFailed) // counted by collect
			continue
		}
		w.inFlight.Add(1)
		w.puts.Add(1)
		go w.put(j)
		if r.cfg.Baseline != nil && j >= r.warmup {
			w.puts.Add(1)
			go w.baseline(j)
		}
	}
	w.res.Writes = int64(r.total - r.warmup)
	return nil
}

// put issues write j and records its round trip.
func (w *fanWriter) put(j int) {
	defer w.puts.Done()
	defer w.inFlight.Add(-1)
	r := w.r
	wr := &r.writes[j]
	key := WriteKey(r.cfg.KeyPrefix, j, r.cfg.Prefixes, r.cfg.Keys)
	now := time.Now()
	issued := int64(now.Sub(r.clock))
	val := NewPayload(r.cfg.Size, writeID(r.tag, j), r.clock.Add(time.Duration(issued)))
	wr.issued.Store(issued)
	err := w.t.Put(w.putCtx, key, val)
	rtt := time.Since(now)
	if err != nil {
		wr.state.Store(fanFailed)
		return
	}
	wr.state.Store(fanOK)
	if j >= r.warmup {
		w.mu.Lock()
		fanRecord(w.res.Put, rtt)
		w.mu.Unlock()
	}
}

// baseline issues the baseline write of write j and records its round trip.
func (w *fanWriter) baseline(j int) {
	defer w.puts.Done()
	r := w.r
	key := WriteKey(r.cfg.KeyPrefix, j, r.cfg.Prefixes, r.cfg.Keys)
	val := NewPayload(r.cfg.Size, writeID(r.tag, j), time.Now())
	now := time.Now()
	err := r.cfg.Baseline(w.putCtx, key, val)
	rtt := time.Since(now)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.res.BaselineErrors++
		return
	}
	fanRecord(w.res.BaselinePut, rtt)
}

// allArrived reports whether every measured write that succeeded reached
// every concerned subscriber (writes still pending count as not arrived).
func (r *fanRun) allArrived() bool {
	for j := r.warmup; j < r.total; j++ {
		w := &r.writes[j]
		switch w.state.Load() {
		case fanPending:
			return false
		case fanOK:
			if w.received.Load() < w.concerned {
				return false
			}
		}
	}
	return true
}

// collect stops recording and fills res's counts and histograms.
func (r *fanRun) collect(res *FanoutResult) {
	res.Delivery = fanHist()
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		sh.stopped = true
		res.Delivery.Merge(sh.hist)
		res.Duplicates += sh.dups
		sh.mu.Unlock()
	}
	res.AllHave = fanHist()
	var failed int64
	for j := r.warmup; j < r.total; j++ {
		w := &r.writes[j]
		if w.state.Load() != fanOK {
			failed++
			continue
		}
		got := int64(w.received.Load())
		res.Expected += int64(w.concerned)
		res.Delivered += got
		if w.concerned > 0 && got == int64(w.concerned) {
			fanRecord(res.AllHave, time.Duration(w.last.Load()-w.issued.Load()))
		}
	}
	res.WriteErrors = failed
}
