package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/confgate/confgate/internal/cursor"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// HerdConfig is one snapshot herd: Clients, each on its own connection,
// call GetSnapshot on Prefix at once (a barrier, then all start).
type HerdConfig struct {
	Addr string
	// Prefix is the selector; default "bench/herd/".
	Prefix string
	// Fill writes Bytes of values (Bytes/Size keys Prefix+"k%06d" of Size
	// bytes) through the gateway first, FillConcurrency Puts at a time
	// (default 64). Defaults: 10,000 KiB, 1 KiB.
	Fill            bool
	Bytes           int64
	Size            int
	FillConcurrency int
	Clients         int
	// Server is the gateway, sampled every SampleEvery (default 100ms)
	// during the herd.
	Server      Server
	SampleEvery time.Duration
	// MaxWait bounds connecting, and the herd; default 2m.
	MaxWait     time.Duration
	DialOptions []grpc.DialOption
	Logf        func(format string, args ...any)
}

// HerdResult is what one herd measured. Times from the barrier (µs).
type HerdResult struct {
	Config HerdConfig `json:"-"`
	// FillWrites is how many Puts the fill made (0 without fill).
	FillWrites  int
	FillElapsed time.Duration
	// Entries and EntryBytes (keys plus values) of the prefix, from one
	// snapshot read before the herd.
	Entries    int64
	EntryBytes int64
	// Completion is barrier to the end of each client's snapshot.
	Completion *hdrhistogram.Histogram
	AllDone    time.Duration
	// Done counts clients whose snapshot ended; Complete those that
	// received exactly Entries entries of EntryBytes.
	Done, Complete int
	// BytesReceived sums keys and values over all clients; WireBytes the
	// protobuf size of every message.
	BytesReceived, WireBytes int64
	Errors                   int64
	FirstError               string
	ServerCPU                time.Duration
	ServerRSSMax             int64
	ServerRSSPre             int64
	ServerSampled            bool
	// ClientCPU is this process's CPU during the herd: decoding 1,000
	// snapshots can cost the load tool more than the gateway.
	ClientCPU time.Duration
}

// HerdSummary is a HerdResult, flat, for reports.
type HerdSummary struct {
	Clients       int     `json:"clients"`
	Entries       int64   `json:"entries"`
	EntryBytes    int64   `json:"entry_bytes"`
	Done          int     `json:"done"`
	Complete      int     `json:"complete"`
	P50MS         float64 `json:"p50_ms"`
	P99MS         float64 `json:"p99_ms"`
	MaxMS         float64 `json:"max_ms"`
	AllDoneMS     float64 `json:"all_done_ms"`
	BytesReceived int64   `json:"bytes_received"`
	WireBytes     int64   `json:"wire_bytes"`
	MBps          float64 `json:"mb_per_s"` // BytesReceived (1e6) / AllDone
	Errors        int64   `json:"errors"`
	FirstError    string  `json:"first_error,omitempty"`
	ServerCPUMS   float64 `json:"server_cpu_ms,omitempty"`
	ServerRSSMax  int64   `json:"server_rss_max,omitempty"`
	ServerRSSPre  int64   `json:"server_rss_before,omitempty"`
	ClientCPUMS   float64 `json:"client_cpu_ms"`
}

// Summary flattens the result.
func (r *HerdResult) Summary() HerdSummary {
	s := HerdSummary{
		Clients: r.Config.Clients, Entries: r.Entries, EntryBytes: r.EntryBytes, Done: r.Done, Complete: r.Complete,
		P50MS: ms(r.Completion.ValueAtQuantile(50)), P99MS: ms(r.Completion.ValueAtQuantile(99)), MaxMS: ms(r.Completion.Max()),
		AllDoneMS: durMS(r.AllDone), BytesReceived: r.BytesReceived, WireBytes: r.WireBytes,
		MBps:   ratio(float64(r.BytesReceived)/1e6, r.AllDone.Seconds()),
		Errors: r.Errors, FirstError: r.FirstError, ClientCPUMS: durMS(r.ClientCPU),
	}
	if r.ServerSampled {
		s.ServerCPUMS, s.ServerRSSMax, s.ServerRSSPre = durMS(r.ServerCPU), r.ServerRSSMax, r.ServerRSSPre
	}
	return s
}

func (c *HerdConfig) defaults() error {
	if c.Prefix == "" {
		c.Prefix = "bench/herd/"
	}
	if c.Bytes <= 0 {
		c.Bytes = 10_000 << 10
	}
	if c.Size <= 0 {
		c.Size = 1 << 10
	}
	if c.FillConcurrency <= 0 {
		c.FillConcurrency = 64
	}
	if c.Clients <= 0 {
		c.Clients = 1000
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = 100 * time.Millisecond
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 2 * time.Minute
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.Addr == "" {
		return errors.New("herd: no gateway address")
	}
	return nil
}

// herdClient is one client's outcome.
type herdClient struct {
	done           bool
	elapsed        time.Duration
	entries, bytes int64
	wire           int64
	err            error
}

// RunHerd fills the prefix when asked, then runs the herd.
func RunHerd(ctx context.Context, cfg HerdConfig) (*HerdResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	res := &HerdResult{Config: cfg, Completion: newHist()}
	ctx, cancel := context.WithTimeout(ctx, 3*cfg.MaxWait)
	defer cancel()
	cc, err := connectReady(ctx, cfg.Addr, cfg.DialOptions)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	client := confgatev1.NewConfigServiceClient(cc)
	var minCursor []byte
	if cfg.Fill {
		start := time.Now()
		n := int(cfg.Bytes / int64(cfg.Size))
		c, err := herdFill(ctx, client, cfg, n)
		if err != nil {
			return nil, err
		}
		res.FillWrites, res.FillElapsed, minCursor = n, time.Since(start), c
		cfg.Logf("herd: wrote %d keys of %d bytes under %s in %s", n, cfg.Size, cfg.Prefix, res.FillElapsed)
	}
	// The reference: what every client must receive.
	sel := &confgatev1.Selector{Prefixes: []string{cfg.Prefix}}
	ref := readSnapshot(ctx, client, &confgatev1.GetSnapshotRequest{Selector: sel, MinCursor: minCursor})
	if ref.err != nil {
		return nil, fmt.Errorf("herd: reference snapshot: %w", ref.err)
	}
	res.Entries, res.EntryBytes = ref.entries, ref.bytes
	if ref.entries == 0 {
		return nil, fmt.Errorf("herd: no entries under %q (fill it with Fill)", cfg.Prefix)
	}

	// One connection per client, all up before the barrier.
	conns := make([]*grpc.ClientConn, cfg.Clients)
	defer closeAll(conns)
	cctx, ccancel := context.WithTimeout(ctx, cfg.MaxWait)
	defer ccancel()
	var wg sync.WaitGroup
	var connErrs atomic.Int64
	var firstConnErr atomic.Pointer[error]
	sem := make(chan struct{}, 256)
	for i := range conns {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := connectReady(cctx, cfg.Addr, cfg.DialOptions)
			if err != nil {
				connErrs.Add(1)
				firstConnErr.CompareAndSwap(nil, &err)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	if n := connErrs.Load(); n > 0 {
		return nil, fmt.Errorf("herd: %d of %d clients could not connect: %w", n, cfg.Clients, *firstConnErr.Load())
	}
	if u, ok, err := cfg.Server.Usage(ctx); ok && err == nil {
		res.ServerRSSPre = u.RSS
	}

	// The herd.
	clients := make([]herdClient, cfg.Clients)
	barrier := make(chan struct{})
	hctx, hcancel := context.WithTimeout(ctx, cfg.MaxWait)
	defer hcancel()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := confgatev1.NewConfigServiceClient(conns[i])
			<-barrier
			start := time.Now()
			clients[i] = readSnapshot(hctx, cl, &confgatev1.GetSnapshotRequest{Selector: sel})
			clients[i].elapsed = time.Since(start)
		}()
	}
	self := startSampler(ctx, Server{PIDs: []int{os.Getpid()}}, time.Hour)
	smp := startSampler(ctx, cfg.Server, cfg.SampleEvery)
	// Let every goroutine reach the barrier.
	time.Sleep(50 * time.Millisecond)
	close(barrier)
	wg.Wait()
	cpu, peak, sampled, serr := smp.stop(ctx)
	res.ServerCPU, res.ServerRSSMax, res.ServerSampled = cpu, peak, sampled
	res.ClientCPU, _, _, _ = self.stop(ctx)
	for _, c := range clients {
		res.BytesReceived += c.bytes
		res.WireBytes += c.wire
		if c.err != nil {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = c.err.Error()
			}
			continue
		}
		res.Done++
		recordDur(res.Completion, c.elapsed)
		res.AllDone = max(res.AllDone, c.elapsed)
		if c.entries == res.Entries && c.bytes == res.EntryBytes {
			res.Complete++
		}
	}
	if serr != nil && res.FirstError == "" {
		res.FirstError = "server usage: " + serr.Error()
	}
	return res, nil
}

// readSnapshot reads one GetSnapshot to its end, counting entries, their
// key and value bytes, and the messages' protobuf size.
func readSnapshot(ctx context.Context, client confgatev1.ConfigServiceClient, req *confgatev1.GetSnapshotRequest) herdClient {
	var out herdClient
	st, err := client.GetSnapshot(ctx, req)
	if err != nil {
		out.err = err
		return out
	}
	for {
		m, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			out.err = err
			return out
		}
		out.wire += int64(proto.Size(m))
		for _, e := range m.GetChunk().GetEntries() {
			out.entries++
			out.bytes += int64(len(e.GetKey()) + len(e.GetValue()))
		}
		if end := m.GetEnd(); end != nil {
			out.done = true
			if end.GetEntryCount() != uint64(out.entries) {
				out.err = fmt.Errorf("snapshot end says %d entries, %d received", end.GetEntryCount(), out.entries)
			}
		}
	}
	if !out.done && out.err == nil {
		out.err = errors.New("snapshot ended without its end message")
	}
	return out
}

// herdFill puts n keys concurrently and returns a cursor covering all.
func herdFill(ctx context.Context, client confgatev1.ConfigServiceClient, cfg HerdConfig, n int) ([]byte, error) {
	value := randomValue(rand.New(rand.NewPCG(5, 6)), cfg.Size)
	var mu sync.Mutex
	var head cursor.Cursor
	var firstErr error
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(cfg.FillConcurrency, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				mu.Lock()
				failed := firstErr != nil
				mu.Unlock()
				if i >= int64(n) || failed {
					return
				}
				pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				resp, err := client.Put(pctx, &confgatev1.PutRequest{Key: fmt.Sprintf("%sk%06d", cfg.Prefix, i), Value: value})
				cancel()
				var c cursor.Cursor
				if err == nil {
					c, err = cursor.Decode(resp.GetCursor())
				}
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				head = cursor.Max(head, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("herd fill: %w", firstErr)
	}
	return head.Encode(), nil
}
