package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/confgate/confgate/internal/cursor"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc"
)

// StormConfig is one reconnect storm: Subscribers subscribe through
// gateway From, get their snapshot and follow deltas while a writer puts
// Rate writes per second through gateway To; then every subscriber is cut
// at once and resumes on To with the last cursor it received.
//
// A subscriber is current once, after its resume, it has received a
// message (snapshot end, delta or progress) whose cursor covers the head
// at the cut: the position past every write acknowledged before the cut
// (the maximum of the cursors Put answered), and past the subscriber's
// own last cursor. Writes in flight at the cut do not count. The storm
// ends when every subscriber is current, or after MaxWait.
type StormConfig struct {
	// From is gateway A, where subscribers start; To is gateway B, where
	// they resume and the writer writes.
	From, To    string
	Subscribers int
	// Conns is how many connections carry the subscribers, on each
	// gateway; 0 means one per subscriber.
	Conns int
	// Prefixes: subscriber i watches KeyPrefix + prefix i%Prefixes;
	// write j goes under prefix j%Prefixes. Default 10.
	Prefixes  int
	KeyPrefix string
	// Keys per prefix the writer cycles over; default 100.
	KeysPerPrefix int
	// Rate writes per second of Size bytes; default 50 and 1024.
	Rate float64
	Size int
	// Warmup is how long writes run before the cut; default 2s.
	Warmup time.Duration
	// MaxWait bounds subscribing, and the storm after the cut; default 2m.
	MaxWait time.Duration
	// KillPID, when set, is SIGKILLed at the cut (gateway A, run locally)
	// instead of closing every connection from this side.
	KillPID int
	// Server is gateway B, sampled every 100ms from the cut until all are
	// current.
	Server Server
	// MetricsURL is B's Prometheus endpoint; when set, its
	// confgate_gateway_resumes_total{outcome} are read before and after.
	MetricsURL  string
	DialOptions []grpc.DialOption
	Logf        func(format string, args ...any)
}

// StormResult is what one storm measured. Durations from the cut.
type StormResult struct {
	Config StormConfig `json:"-"`
	// Subscribed is how many had their snapshot on A before the cut.
	Subscribed int
	// Current is how many became current after the cut; AllCurrent is the
	// time until the last of them did (valid when Current == Subscribers).
	Current    int
	AllCurrent time.Duration
	// CurrentLat is cut until each subscriber was current (µs).
	CurrentLat *hdrhistogram.Histogram
	// ResumeLat is from each subscriber's reconnect start (its Subscribe
	// call on B) until its first message (µs).
	ResumeLat *hdrhistogram.Histogram
	// Resumed counts subscribers that got a first message on B;
	// WithoutSnapshot those whose first message was a delta or progress
	// (no snapshot chunk or end before it).
	Resumed, WithoutSnapshot int
	// Errors: streams on A that failed before the cut, failed resume
	// attempts on B (each retried after 100ms), streams on B that failed
	// after their first message.
	ErrorsBeforeCut, ResumeErrors, ErrorsAfterResume int64
	FirstError                                       string
	Writes, WriteErrors                              int64
	// Server B's CPU and peak RSS from the cut until all were current,
	// and its RSS just before the cut.
	ServerCPU     time.Duration
	ServerRSSMax  int64
	ServerRSSPre  int64
	ServerSampled bool
	// ClientCPU is this process's CPU over the same window.
	ClientCPU time.Duration
	// Resumes by outcome on B (history, diff, reset) during the storm,
	// from MetricsURL.
	Resumes map[string]int64
}

// StormSummary is a StormResult, flat, for reports.
type StormSummary struct {
	Subscribers       int              `json:"subscribers"`
	Conns             int              `json:"conns"`
	Subscribed        int              `json:"subscribed"`
	Current           int              `json:"current"`
	AllCurrentMS      float64          `json:"all_current_ms"`
	CurrentP50MS      float64          `json:"current_p50_ms"`
	CurrentP99MS      float64          `json:"current_p99_ms"`
	Resumed           int              `json:"resumed"`
	WithoutSnapshot   int              `json:"resumed_without_snapshot"`
	WithoutSnapshotPc float64          `json:"resumed_without_snapshot_pct"`
	ResumeP50MS       float64          `json:"resume_p50_ms"`
	ResumeP99MS       float64          `json:"resume_p99_ms"`
	ResumeMaxMS       float64          `json:"resume_max_ms"`
	ErrorsBeforeCut   int64            `json:"errors_before_cut"`
	ResumeErrors      int64            `json:"resume_errors"`
	ErrorsAfterResume int64            `json:"errors_after_resume"`
	FirstError        string           `json:"first_error,omitempty"`
	Writes            int64            `json:"writes"`
	WriteErrors       int64            `json:"write_errors"`
	ServerCPUMS       float64          `json:"server_cpu_ms,omitempty"`
	ServerRSSMax      int64            `json:"server_rss_max,omitempty"`
	ServerRSSPre      int64            `json:"server_rss_before,omitempty"`
	Resumes           map[string]int64 `json:"gateway_resumes,omitempty"`
	ClientCPUMS       float64          `json:"client_cpu_ms"`
}

// Summary flattens the result.
func (r *StormResult) Summary() StormSummary {
	s := StormSummary{
		Subscribers: r.Config.Subscribers, Conns: r.Config.Conns, Subscribed: r.Subscribed, Current: r.Current,
		AllCurrentMS: durMS(r.AllCurrent),
		CurrentP50MS: ms(r.CurrentLat.ValueAtQuantile(50)), CurrentP99MS: ms(r.CurrentLat.ValueAtQuantile(99)),
		Resumed: r.Resumed, WithoutSnapshot: r.WithoutSnapshot,
		WithoutSnapshotPc: 100 * ratio(float64(r.WithoutSnapshot), float64(r.Resumed)),
		ResumeP50MS:       ms(r.ResumeLat.ValueAtQuantile(50)), ResumeP99MS: ms(r.ResumeLat.ValueAtQuantile(99)), ResumeMaxMS: ms(r.ResumeLat.Max()),
		ErrorsBeforeCut: r.ErrorsBeforeCut, ResumeErrors: r.ResumeErrors, ErrorsAfterResume: r.ErrorsAfterResume, FirstError: r.FirstError,
		Writes: r.Writes, WriteErrors: r.WriteErrors, Resumes: r.Resumes, ClientCPUMS: durMS(r.ClientCPU),
	}
	if r.ServerSampled {
		s.ServerCPUMS, s.ServerRSSMax, s.ServerRSSPre = durMS(r.ServerCPU), r.ServerRSSMax, r.ServerRSSPre
	}
	return s
}

func (c *StormConfig) defaults() error {
	if c.Subscribers <= 0 {
		c.Subscribers = 10_000
	}
	if c.Conns <= 0 || c.Conns > c.Subscribers {
		c.Conns = c.Subscribers
	}
	if c.Prefixes <= 0 {
		c.Prefixes = 10
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "bench/storm/"
	}
	if c.KeysPerPrefix <= 0 {
		c.KeysPerPrefix = 100
	}
	if c.Rate < 0 {
		return errors.New("storm: negative rate")
	}
	if c.Rate == 0 {
		c.Rate = 50 // the documented default: a storm without writes proves little
	}
	if c.Size <= 0 {
		c.Size = 1024
	}
	if c.Warmup <= 0 {
		c.Warmup = 2 * time.Second
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 2 * time.Minute
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.From == "" || c.To == "" {
		return errors.New("storm: need both gateway addresses (From and To)")
	}
	return nil
}

func (c *StormConfig) prefix(i int) string {
	return fmt.Sprintf("%sp%03d/", c.KeyPrefix, i%c.Prefixes)
}

// errTrack counts errors and keeps the first.
type errTrack struct {
	first atomic.Pointer[string]
}

func (e *errTrack) note(where string, err error) {
	s := where + ": " + err.Error()
	e.first.CompareAndSwap(nil, &s)
}

// stormWriter writes at a fixed rate through B and keeps the head: the
// maximum cursor of the writes acknowledged before the cut.
type stormWriter struct {
	cfg    *StormConfig
	client confgatev1.ConfigServiceClient
	mu     sync.Mutex
	head   cursor.Cursor
	cut    bool
	writes atomic.Int64
	errs   atomic.Int64
	et     *errTrack
	wg     sync.WaitGroup
}

func (w *stormWriter) run(ctx context.Context) {
	if w.cfg.Rate == 0 {
		return
	}
	r := rand.New(rand.NewPCG(3, 4))
	value := randomValue(r, w.cfg.Size)
	every := time.Duration(float64(time.Second) / w.cfg.Rate)
	start := time.Now()
	for j := 0; ; j++ {
		// Open loop: write j is due at start + j*every, whatever the
		// earlier ones did.
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(time.Duration(j) * every))):
		}
		key := fmt.Sprintf("%sk%05d", w.cfg.prefix(j), (j/w.cfg.Prefixes)%w.cfg.KeysPerPrefix)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.writes.Add(1)
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			resp, err := w.client.Put(pctx, &confgatev1.PutRequest{Key: key, Value: value})
			if err != nil {
				if ctx.Err() == nil {
					w.errs.Add(1)
					w.et.note("put", err)
				}
				return
			}
			c, err := cursor.Decode(resp.GetCursor())
			if err != nil {
				w.errs.Add(1)
				w.et.note("put cursor", err)
				return
			}
			w.mu.Lock()
			if !w.cut {
				w.head = cursor.Max(w.head, c)
			}
			w.mu.Unlock()
		}()
	}
}

// cutHead marks the cut and returns the head then.
func (w *stormWriter) cutHead() cursor.Cursor {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cut = true
	return w.head.Clone()
}

// stormSub is one subscriber's outcome.
type stormSub struct {
	subscribed bool
	last       []byte // last cursor received, encoded
	resumed    bool
	noSnapshot bool
	resumeLat  time.Duration
	current    bool
	currentAt  time.Time
}

// RunStorm runs one reconnect storm.
func RunStorm(ctx context.Context, cfg StormConfig) (*StormResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	res := &StormResult{Config: cfg, CurrentLat: newHist(), ResumeLat: newHist()}
	et := &errTrack{}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	connsA := make([]*grpc.ClientConn, cfg.Conns)
	connsB := make([]*grpc.ClientConn, cfg.Conns)
	defer func() { closeAll(connsA); closeAll(connsB) }()
	for i := range connsA {
		var err error
		if connsA[i], err = newConn(cfg.From, cfg.DialOptions); err != nil {
			return nil, err
		}
	}
	wcc, err := newConn(cfg.To, cfg.DialOptions)
	if err != nil {
		return nil, err
	}
	defer wcc.Close()
	w := &stormWriter{cfg: &cfg, client: confgatev1.NewConfigServiceClient(wcc), et: et}

	subs := make([]stormSub, cfg.Subscribers)
	var subscribed sync.WaitGroup
	subscribed.Add(cfg.Subscribers)
	cutCh := make(chan struct{})
	var cutAt time.Time
	var head cursor.Cursor // set before cutCh closes
	connsBReady := make(chan struct{})
	ctxA, cancelA := context.WithCancel(ctx)
	defer cancelA()
	var errBefore, errResume, errAfter, current, nSubscribed atomic.Int64
	allCurrent := make(chan struct{})
	var wg sync.WaitGroup
	for i := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &subs[i]
			sel := &confgatev1.Selector{Prefixes: []string{cfg.prefix(i)}}
			// On A: snapshot, then follow until the cut.
			func() {
				once := sync.OnceFunc(subscribed.Done)
				defer once()
				st, err := confgatev1.NewConfigServiceClient(connsA[i%cfg.Conns]).Subscribe(ctxA, &confgatev1.SubscribeRequest{Selector: sel})
				for err == nil {
					var m *confgatev1.SubscribeResponse
					if m, err = st.Recv(); err != nil {
						break
					}
					if c := messageCursor(m); c != nil {
						s.last = c
					}
					if m.GetSnapshotEnd() != nil && !s.subscribed {
						s.subscribed = true
						nSubscribed.Add(1)
						once()
					}
				}
				select {
				case <-cutCh:
				default:
					errBefore.Add(1)
					et.note("subscribe on A", err)
				}
			}()
			select {
			case <-cutCh:
			case <-ctx.Done():
				return
			}
			select {
			case <-connsBReady:
			case <-ctx.Done():
				return
			}
			// The head, and past this subscriber's own last cursor when
			// both name the same topic (B on another topic resets it).
			target := head
			if c, err := cursor.Decode(s.last); err == nil && (c.Topic == head.Topic || len(head.Offsets) == 0) {
				target = cursor.Max(head, c)
			}
			// On B: resume with the last cursor, until everyone is current.
			client := confgatev1.NewConfigServiceClient(connsB[i%cfg.Conns])
			start := time.Now()
			for ctx.Err() == nil {
				st, err := client.Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: sel, ResumeCursor: s.last})
				for err == nil {
					var m *confgatev1.SubscribeResponse
					if m, err = st.Recv(); err != nil {
						break
					}
					if !s.resumed {
						s.resumed = true
						s.resumeLat = time.Since(start)
						s.noSnapshot = m.GetDelta() != nil || m.GetProgress() != nil
					}
					c := messageCursor(m)
					if c == nil {
						continue
					}
					s.last = c
					if s.current {
						continue
					}
					if cc, derr := cursor.Decode(c); derr == nil && cc.Covers(target) {
						s.current, s.currentAt = true, time.Now()
						if current.Add(1) == int64(cfg.Subscribers) {
							close(allCurrent)
						}
					}
				}
				if ctx.Err() != nil {
					return
				}
				if s.resumed {
					errAfter.Add(1)
					et.note("stream on B", err)
				} else {
					errResume.Add(1)
					et.note("resume on B", err)
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}

	// Subscribe everyone on A (bounded by MaxWait), while writes start.
	writeCtx, stopWrites := context.WithCancel(ctx)
	defer stopWrites()
	go w.run(writeCtx)
	subDone := make(chan struct{})
	go func() { subscribed.Wait(); close(subDone) }()
	select {
	case <-subDone:
	case <-time.After(cfg.MaxWait):
	case <-ctx.Done():
	}
	res.Subscribed = int(nSubscribed.Load())
	cfg.Logf("storm: %d of %d subscribed on %s; writes for %s, then the cut", res.Subscribed, cfg.Subscribers, cfg.From, cfg.Warmup)
	if res.Subscribed < cfg.Subscribers {
		cancel()
		wg.Wait()
		return res, fmt.Errorf("storm: only %d of %d subscribers had their snapshot on %s within %s (first error: %s)", res.Subscribed, cfg.Subscribers, cfg.From, cfg.MaxWait, firstErr(et))
	}
	select {
	case <-time.After(cfg.Warmup):
	case <-ctx.Done():
		wg.Wait()
		return nil, ctx.Err()
	}

	// The resume metrics and B's RSS before the cut.
	var before map[string]int64
	if cfg.MetricsURL != "" {
		before, _ = counterByLabel(ctx, cfg.MetricsURL, "confgate_gateway_resumes_total", "outcome")
	}
	if u, ok, err := cfg.Server.Usage(ctx); ok && err == nil {
		res.ServerRSSPre = u.RSS
	}

	// The cut.
	self := startSampler(ctx, Server{PIDs: []int{os.Getpid()}}, time.Hour)
	smp := startSampler(ctx, cfg.Server, 100*time.Millisecond)
	head = w.cutHead()
	cutAt = time.Now()
	close(cutCh)
	if cfg.KillPID > 0 {
		if err := syscall.Kill(cfg.KillPID, syscall.SIGKILL); err != nil {
			cancel()
			wg.Wait()
			return nil, fmt.Errorf("storm: kill gateway A (pid %d): %w", cfg.KillPID, err)
		}
	} else {
		cancelA()
		closeAll(connsA)
	}
	for i := range connsB {
		if connsB[i], err = newConn(cfg.To, cfg.DialOptions); err != nil {
			cancel()
			close(connsBReady)
			wg.Wait()
			return nil, err
		}
	}
	close(connsBReady)
	select {
	case <-allCurrent:
	case <-time.After(cfg.MaxWait):
	case <-ctx.Done():
	}
	cpu, peak, sampled, serr := smp.stop(ctx)
	res.ServerCPU, res.ServerRSSMax, res.ServerSampled = cpu, peak, sampled
	res.ClientCPU, _, _, _ = self.stop(ctx)
	if serr != nil {
		et.note("server usage", serr)
	}
	if cfg.MetricsURL != "" {
		if after, err := counterByLabel(ctx, cfg.MetricsURL, "confgate_gateway_resumes_total", "outcome"); err == nil {
			res.Resumes = map[string]int64{}
			for k, v := range after {
				res.Resumes[k] = v - before[k]
			}
		} else {
			et.note("resume metrics", err)
		}
	}
	stopWrites()
	cancel()
	wg.Wait()
	w.wg.Wait()

	for i := range subs {
		s := &subs[i]
		if s.resumed {
			res.Resumed++
			recordDur(res.ResumeLat, s.resumeLat)
			if s.noSnapshot {
				res.WithoutSnapshot++
			}
		}
		if s.current {
			res.Current++
			d := s.currentAt.Sub(cutAt)
			recordDur(res.CurrentLat, d)
			res.AllCurrent = max(res.AllCurrent, d)
		}
	}
	res.ErrorsBeforeCut, res.ResumeErrors, res.ErrorsAfterResume = errBefore.Load(), errResume.Load(), errAfter.Load()
	res.Writes, res.WriteErrors = w.writes.Load(), w.errs.Load()
	res.FirstError = firstErr(et)
	if res.Current < cfg.Subscribers {
		return res, fmt.Errorf("storm: only %d of %d subscribers were current within %s of the cut (first error: %s)", res.Current, cfg.Subscribers, cfg.MaxWait, res.FirstError)
	}
	return res, nil
}

func firstErr(et *errTrack) string {
	if p := et.first.Load(); p != nil {
		return *p
	}
	return ""
}

// messageCursor is the cursor a subscribe message carries (nil for a
// snapshot chunk).
func messageCursor(m *confgatev1.SubscribeResponse) []byte {
	switch {
	case m.GetDelta() != nil:
		return m.GetDelta().GetCursor()
	case m.GetProgress() != nil:
		return m.GetProgress().GetCursor()
	case m.GetSnapshotEnd() != nil:
		return m.GetSnapshotEnd().GetCursor()
	}
	return nil
}
