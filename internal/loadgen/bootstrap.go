package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BootstrapConfig is one bootstrap measurement: a topic of Keys entries of
// Size bytes, read to its end by a plain franz-go consumer and by a
// gateway, each in a child process of its own, Runs times each.
type BootstrapConfig struct {
	Brokers []string
	Topic   string
	// Partitions of the topic when it is created (compacted); default 6.
	Partitions int32
	// ReplicationFactor of a created topic; 0 or -1 take the broker's
	// default.
	ReplicationFactor int16
	Keys              int
	Size              int
	// KeyPrefix is put before every key; default "bench/bootstrap/".
	KeyPrefix string
	// Fill writes the keys (KeyPrefix + "k%08d") with a fast franz-go
	// producer, unless the topic's end offsets already sum to Keys or more.
	Fill bool
	// Runs of each child; default 2.
	Runs int
	// KafkaOpts are extra franz-go options for this process's clients
	// (TLS, SASL).
	KafkaOpts []kgo.Opt
	// ConsumerCommand starts the consumer child; RunBootstrap appends
	// "--brokers B1,B2 --topic T". It must print the JSON of a
	// ConsumerRun (RunConsumer's result) on stdout and exit.
	ConsumerCommand []string
	// GatewayCommand starts a gateway (`confgate serve`); RunBootstrap
	// appends "--brokers B --topic T --listen 127.0.0.1:0
	// --admin-listen 127.0.0.1:PORT" and polls /readyz there.
	GatewayCommand []string
	// ReadyTimeout bounds each child; default 10 minutes.
	ReadyTimeout time.Duration
	// Stderr receives the children's stderr; nil discards it.
	Stderr io.Writer
	// Logf, when set, is told about progress.
	Logf func(format string, args ...any)
}

// ConsumerRun is one run of the plain consumer (RunConsumer), as its child
// prints it.
type ConsumerRun struct {
	Elapsed time.Duration `json:"elapsed_ns"`
	// RSS at the end (the map still live) and at the start (the client
	// made, nothing fetched).
	RSS      int64 `json:"rss"`
	RSSStart int64 `json:"rss_start"`
	// HeapDelta is the live heap after a GC at the end less at the start.
	HeapDelta int64 `json:"heap_delta"`
	Records   int64 `json:"records"`
	Keys      int64 `json:"keys"`
	// LiveBytes sums key and value of the latest record of every key
	// (tombstones remove keys).
	LiveBytes int64 `json:"live_bytes"`
}

// GatewayRun is one gateway start.
type GatewayRun struct {
	// Ready is from starting the process until /readyz answered 200.
	Ready time.Duration `json:"ready_ns"`
	// RSS of the process when it was ready.
	RSS int64 `json:"rss"`
}

// BootstrapResult is what RunBootstrap measured.
type BootstrapResult struct {
	Config      BootstrapConfig `json:"-"`
	Partitions  int32
	Filled      bool
	FillElapsed time.Duration
	// LiveBytes and LiveKeys as the first consumer run counted them.
	LiveBytes int64
	LiveKeys  int64
	Consumer  []ConsumerRun
	Gateway   []GatewayRun
}

// BootstrapSummary is one run of each child, flat, for reports: run i
// pairs the i-th consumer run with the i-th gateway run.
type BootstrapSummary struct {
	Run        int     `json:"run"`
	Keys       int     `json:"keys"`
	Size       int     `json:"size"`
	Partitions int32   `json:"partitions"`
	LiveBytes  int64   `json:"live_bytes"`
	ConsumerMS float64 `json:"consumer_ms"`
	// ConsumerRSS is the child's RSS at the end; ConsumerRSSDelta less
	// its RSS at start.
	ConsumerRSS      int64   `json:"consumer_rss"`
	ConsumerRSSDelta int64   `json:"consumer_rss_delta"`
	ConsumerHeap     int64   `json:"consumer_heap_delta"`
	GatewayMS        float64 `json:"gateway_ready_ms"`
	GatewayRSS       int64   `json:"gateway_rss"`
	TimeRatio        float64 `json:"time_ratio"`            // gateway / consumer
	ConsumerRSSRatio float64 `json:"consumer_rss_per_live"` // consumer RSS / live bytes
	GatewayRSSRatio  float64 `json:"gateway_rss_per_live"`  // gateway RSS / live bytes
	ConsumerMBps     float64 `json:"consumer_mb_per_s"`     // live MB (1e6) per second
	GatewayMBps      float64 `json:"gateway_mb_per_s"`
}

// Summary returns one row per run.
func (r *BootstrapResult) Summary() []BootstrapSummary {
	n := max(len(r.Consumer), len(r.Gateway))
	out := make([]BootstrapSummary, n)
	for i := range out {
		s := BootstrapSummary{Run: i + 1, Keys: r.Config.Keys, Size: r.Config.Size, Partitions: r.Partitions, LiveBytes: r.LiveBytes}
		if i < len(r.Consumer) {
			c := r.Consumer[i]
			s.ConsumerMS, s.ConsumerRSS, s.ConsumerRSSDelta, s.ConsumerHeap = durMS(c.Elapsed), c.RSS, c.RSS-c.RSSStart, c.HeapDelta
			s.ConsumerRSSRatio = ratio(float64(c.RSS), float64(r.LiveBytes))
			s.ConsumerMBps = ratio(float64(r.LiveBytes)/1e6, c.Elapsed.Seconds())
		}
		if i < len(r.Gateway) {
			g := r.Gateway[i]
			s.GatewayMS, s.GatewayRSS = durMS(g.Ready), g.RSS
			s.GatewayRSSRatio = ratio(float64(g.RSS), float64(r.LiveBytes))
			s.GatewayMBps = ratio(float64(r.LiveBytes)/1e6, g.Ready.Seconds())
		}
		s.TimeRatio = ratio(s.GatewayMS, s.ConsumerMS)
		out[i] = s
	}
	return out
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func (c *BootstrapConfig) defaults() error {
	if c.Partitions <= 0 {
		c.Partitions = 6
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "bench/bootstrap/"
	}
	if c.Runs <= 0 {
		c.Runs = 2
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 10 * time.Minute
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	switch {
	case len(c.Brokers) == 0:
		return errors.New("bootstrap: no brokers")
	case c.Topic == "":
		return errors.New("bootstrap: no topic")
	case c.Fill && (c.Keys <= 0 || c.Size < 0):
		return errors.New("bootstrap: --fill needs keys > 0 and size >= 0")
	case len(c.ConsumerCommand) == 0 || len(c.GatewayCommand) == 0:
		return errors.New("bootstrap: ConsumerCommand and GatewayCommand are required")
	}
	return nil
}

// RunBootstrap prepares the topic (creating it, filling it), then runs the
// consumer child and the gateway child Runs times each.
func RunBootstrap(ctx context.Context, cfg BootstrapConfig) (*BootstrapResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	res := &BootstrapResult{Config: cfg}
	parts, ends, err := prepareTopic(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res.Partitions = parts
	if cfg.Fill && ends < int64(cfg.Keys) {
		cfg.Logf("filling %s with %d keys of %d bytes", cfg.Topic, cfg.Keys, cfg.Size)
		start := time.Now()
		if err := fillTopic(ctx, cfg); err != nil {
			return nil, err
		}
		res.Filled, res.FillElapsed = true, time.Since(start)
	}
	for i := range cfg.Runs {
		cfg.Logf("consumer run %d", i+1)
		c, err := runConsumerChild(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("consumer run %d: %w", i+1, err)
		}
		res.Consumer = append(res.Consumer, *c)
		if i == 0 {
			res.LiveBytes, res.LiveKeys = c.LiveBytes, c.Keys
		}
	}
	for i := range cfg.Runs {
		cfg.Logf("gateway run %d", i+1)
		g, err := runGatewayChild(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("gateway run %d: %w", i+1, err)
		}
		res.Gateway = append(res.Gateway, *g)
	}
	return res, nil
}

// prepareTopic creates the topic, compacted, when it is missing and
// returns its partition count and the sum of its end offsets.
func prepareTopic(ctx context.Context, cfg BootstrapConfig) (int32, int64, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.MetadataMinAge(100 * time.Millisecond)}, cfg.KafkaOpts...)...)
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopic(ctx, cfg.Partitions, cfg.ReplicationFactor, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, cfg.Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return 0, 0, fmt.Errorf("create topic %q: %w", cfg.Topic, err)
	}
	for attempt := 0; ; attempt++ {
		ends, err := adm.ListEndOffsets(ctx, cfg.Topic)
		if err == nil {
			err = ends.Error()
		}
		var n int32
		var sum int64
		ends.Each(func(o kadm.ListedOffset) {
			n++
			sum += o.Offset
		})
		if err == nil && n > 0 {
			return n, sum, nil
		}
		if attempt >= 100 || ctx.Err() != nil {
			return 0, 0, fmt.Errorf("list end offsets of %q: %v", cfg.Topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fillTopic writes Keys records with franz-go's producer, partitioned as
// every confgate writer partitions (murmur2 of the key), acks=all.
func fillTopic(ctx context.Context, cfg BootstrapConfig) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.MaxBufferedRecords(100_000),
	}, cfg.KafkaOpts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	r := rand.New(rand.NewPCG(1, 2))
	var firstErr atomic.Pointer[error]
	for i := range cfg.Keys {
		rec := &kgo.Record{Key: fmt.Appendf(nil, "%sk%08d", cfg.KeyPrefix, i), Value: randomValue(r, cfg.Size)}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
			}
		})
		if p := firstErr.Load(); p != nil {
			break
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	if p := firstErr.Load(); p != nil {
		return fmt.Errorf("fill: %w", *p)
	}
	return nil
}

// RunConsumer reads every partition of topic from its start to the end
// offsets listed when it starts, with a plain franz-go consumer (no group,
// franz-go's defaults), keeping key -> value (copied out of the fetch) in
// a map: the baseline of what any in-memory index of the topic costs. It
// measures its own process: run it in a child (ConsumerCommand) so the
// RSS is its own.
func RunConsumer(ctx context.Context, brokers []string, topic string, opts ...kgo.Opt) (*ConsumerRun, error) {
	runtime.GC()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	// Control records are kept only so a partition ending in a
	// transaction marker is seen to be done.
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.KeepControlRecords()}, opts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	u0, _ := ProcUsage(os.Getpid())
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	want := map[int32]int64{}
	assign := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(topic, o.Partition); ok && s.Offset >= o.Offset {
			return
		}
		want[o.Partition] = o.Offset
		assign[o.Partition] = kgo.NewOffset().AtStart()
	})
	m := map[string][]byte{}
	var records int64
	if len(want) > 0 {
		cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign})
		for len(want) > 0 {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			for _, fe := range fs.Errors() {
				return nil, fmt.Errorf("fetch %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
			}
			fs.EachRecord(func(r *kgo.Record) {
				end, ok := want[r.Partition]
				if !ok || r.Offset >= end {
					return
				}
				if r.Offset+1 >= end {
					delete(want, r.Partition)
				}
				if r.Attrs.IsControl() {
					return
				}
				records++
				if r.Value == nil {
					delete(m, string(r.Key))
				} else {
					m[string(r.Key)] = bytes.Clone(r.Value)
				}
			})
		}
	}
	elapsed := time.Since(start)
	u1, err := ProcUsage(os.Getpid())
	if err != nil {
		return nil, err
	}
	runtime.GC()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	out := &ConsumerRun{Elapsed: elapsed, RSS: u1.RSS, RSSStart: u0.RSS, HeapDelta: int64(ms1.HeapAlloc) - int64(ms0.HeapAlloc), Records: records, Keys: int64(len(m))}
	for k, v := range m {
		out.LiveBytes += int64(len(k) + len(v))
	}
	runtime.KeepAlive(m)
	return out, nil
}

// runConsumerChild runs ConsumerCommand and reads its JSON.
func runConsumerChild(ctx context.Context, cfg BootstrapConfig) (*ConsumerRun, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	defer cancel()
	args := append(append([]string{}, cfg.ConsumerCommand[1:]...), "--brokers", joinComma(cfg.Brokers), "--topic", cfg.Topic)
	cmd := exec.CommandContext(ctx, cfg.ConsumerCommand[0], args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = cfg.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.ConsumerCommand[0], err)
	}
	var run ConsumerRun
	if err := json.Unmarshal(bytes.TrimSpace(lastLine(out.Bytes())), &run); err != nil {
		return nil, fmt.Errorf("consumer child printed %q: %w", out.String(), err)
	}
	return &run, nil
}

func lastLine(b []byte) []byte {
	b = bytes.TrimRight(b, "\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x)
	}
	return b.String()
}

// runGatewayChild starts GatewayCommand, polls its /readyz, reads its RSS
// at ready and stops it (SIGTERM, then SIGKILL after 10s).
func runGatewayChild(ctx context.Context, cfg BootstrapConfig) (*GatewayRun, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	admin := "127.0.0.1:" + strconv.Itoa(port)
	args := append(append([]string{}, cfg.GatewayCommand[1:]...),
		"--brokers", joinComma(cfg.Brokers), "--topic", cfg.Topic,
		"--listen", "127.0.0.1:0", "--admin-listen", admin)
	cmd := exec.Command(cfg.GatewayCommand[0], args...)
	cmd.Stdout = cfg.Stderr
	cmd.Stderr = cfg.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start gateway: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	defer stop()
	hc := &http.Client{Timeout: time.Second}
	url := "http://" + admin + "/readyz"
	deadline := time.After(cfg.ReadyTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-exited:
			exited <- err
			return nil, fmt.Errorf("gateway exited before it was ready: %v", err)
		case <-deadline:
			return nil, fmt.Errorf("gateway not ready within %s", cfg.ReadyTimeout)
		case <-tick.C:
		}
		resp, err := hc.Get(url)
		if err != nil {
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		ready := time.Since(start)
		u, err := ProcUsage(cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		return &GatewayRun{Ready: ready, RSS: u.RSS}, nil
	}
}
