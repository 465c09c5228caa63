package fleet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// sweepFactor times Grace is how long a record may go without being
// updated before any gateway tombstones it, whoever wrote it.
const sweepFactor = 10

// flushTimeout bounds the flush of pending records when Run ends.
const flushTimeout = 2 * time.Second

// TopicName is the fleet topic of a config topic: "<configTopic>.fleet".
func TopicName(configTopic string) string { return configTopic + ".fleet" }

// Config configures a Fleet.
type Config struct {
	// Brokers and ClientOpts (TLS, SASL, ...) are the store's; Fleet adds
	// the seed brokers and its consuming options.
	Brokers    []string
	ClientOpts []kgo.Opt
	// Topic is the fleet topic's name (TopicName of the config topic).
	Topic string
	// Partitions and ReplicationFactor apply when the topic is created
	// (compacted) because it is missing. Partitions defaults to 6 (pass the
	// config topic's count to match it), ReplicationFactor to the
	// brokers' default (-1).
	Partitions        int32
	ReplicationFactor int16
	// Gateway is this gateway's name, written in every record; each
	// gateway needs its own.
	Gateway string
	// MinInterval bounds the writes per client: at most one record per
	// interval (default 5s). The latest state is always published
	// eventually.
	MinInterval time.Duration
	// Heartbeat is how often a client's record is written again when
	// only its LastReport moved (unchanged reports); default and minimum
	// MinInterval. A reporting client's LastReport in the view is then at
	// most its report period plus 1.25×Heartbeat old (11.25s with 5s
	// reports and the defaults), within a "not reporting" bound of three
	// report periods; raising Heartbeat cuts the steady write rate but
	// needs that bound raised with it. Connected clients that do not
	// report are written again every Grace, which keeps Updated fresh.
	Heartbeat time.Duration
	// Grace is how long a client disconnected from this gateway stays in
	// the fleet before this gateway tombstones it (default 1m). Any
	// gateway tombstones a record not updated for 10×Grace.
	Grace time.Duration
	// MaxClients bounds the view, and the clients this gateway tracks
	// (default 100,000); records beyond it are skipped and counted.
	MaxClients int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers nowhere.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() (Config, error) {
	if len(c.Brokers) == 0 {
		return c, errors.New("fleet: no brokers")
	}
	if c.Topic == "" {
		return c, errors.New("fleet: no topic")
	}
	if c.Gateway == "" {
		return c, errors.New("fleet: no gateway name")
	}
	if c.Partitions == 0 {
		c.Partitions = 6
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.MinInterval == 0 {
		c.MinInterval = 5 * time.Second
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = c.MinInterval
	}
	if c.Grace == 0 {
		c.Grace = time.Minute
	}
	if c.MaxClients == 0 {
		c.MaxClients = 100_000
	}
	if c.Partitions < 0 || c.MinInterval < 0 || c.Heartbeat < 0 || c.Grace < 0 || c.MaxClients < 0 {
		return c, errors.New("fleet: negative Partitions, MinInterval, Heartbeat, Grace or MaxClients")
	}
	if c.Heartbeat < c.MinInterval {
		return c, fmt.Errorf("fleet: Heartbeat %v under MinInterval %v", c.Heartbeat, c.MinInterval)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Fleet publishes this gateway's clients to the fleet topic and keeps the
// view of the whole fleet read back from it. Its methods are safe for
// concurrent use; Connected, Report and Disconnected never block on Kafka.
type Fleet struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	running atomic.Bool
	wake    chan struct{}

	mu    sync.Mutex
	view  map[string]Record // as read back from the topic
	local map[string]*local // the clients this gateway writes for
	ready map[string]struct{}
}

// local is what this gateway knows of one client.
type local struct {
	rec       Record // what it publishes next
	stream    bool   // a stream of the client is open here
	proxy     bool   // no stream here: reports only
	pending   bool   // rec is to be published
	lastPub   time.Time
	published Record    // the last record handed to the producer
	since     time.Time // disconnected at (stream entries), last report (proxies)
	gen       uint64    // of the last publication, to retry it on failure
}

// New validates cfg and returns a Fleet; Run starts it.
func New(cfg Config) (*Fleet, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(c.Registerer)
	if err != nil {
		return nil, err
	}
	return &Fleet{
		cfg:   c,
		log:   c.Logger.With("component", "fleet", "topic", c.Topic, "gateway", c.Gateway),
		m:     m,
		wake:  make(chan struct{}, 1),
		view:  map[string]Record{},
		local: map[string]*local{},
		ready: map[string]struct{}{},
	}, nil
}

// Run creates the topic when missing (retrying while Kafka is
// unreachable), consumes it from the start into the view and publishes
// this gateway's records, until ctx ends; then it flushes the pending
// records for up to 2s (call Disconnected for the open streams first) and
// returns ctx.Err(). Calling it twice is an error.
func (f *Fleet) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("fleet: Run called twice")
	}
	opts := append(slices.Clone(f.cfg.ClientOpts), kgo.SeedBrokers(f.cfg.Brokers...))
	prod, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("fleet: producer: %w", err)
	}
	defer prod.Close()
	if err := f.ensureTopic(ctx, kadm.NewClient(prod)); err != nil {
		return err
	}
	cons, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(f.cfg.Topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return fmt.Errorf("fleet: consumer: %w", err)
	}
	defer cons.Close()
	var wg sync.WaitGroup
	wg.Go(func() { f.consume(ctx, cons) })
	f.publishLoop(ctx, prod)
	wg.Wait()
	return ctx.Err()
}

// ensureTopic creates the topic compacted when missing, and warns when an
// existing one is not compacted. Only ctx ending makes it fail.
func (f *Fleet) ensureTopic(ctx context.Context, adm *kadm.Client) error {
	for attempt := 0; ; attempt++ {
		err := f.ensureTopicOnce(ctx, adm)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt%10 == 0 {
			f.log.Warn("fleet topic not ready, retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(5*time.Second, 100*time.Millisecond*time.Duration(attempt+1))):
		}
	}
}

func (f *Fleet) ensureTopicOnce(ctx context.Context, adm *kadm.Client) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	topic := f.cfg.Topic
	details, err := adm.ListTopics(rctx, topic)
	if err != nil {
		return fmt.Errorf("list topic %q: %w", topic, err)
	}
	td, ok := details[topic]
	if ok && td.Err == nil {
		f.checkCompacted(rctx, adm)
		return nil
	}
	if ok && !errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("describe topic %q: %w", topic, td.Err)
	}
	resp, err := adm.CreateTopic(rctx, f.cfg.Partitions, f.cfg.ReplicationFactor,
		map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %q: %w", topic, err)
	}
	if err == nil {
		f.log.Info("created compacted fleet topic", "partitions", f.cfg.Partitions)
	}
	return nil
}

func (f *Fleet) checkCompacted(ctx context.Context, adm *kadm.Client) {
	rcs, err := adm.DescribeTopicConfigs(ctx, f.cfg.Topic)
	if err != nil {
		return
	}
	rc, err := rcs.On(f.cfg.Topic, nil)
	if err != nil || rc.Err != nil {
		return
	}
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && c.Value != nil && !strings.Contains(*c.Value, "compact") {
			f.log.Warn("fleet topic is not compacted: it grows with every report and restarts re-read all of it; set cleanup.policy=compact", "cleanup.policy", *c.Value)
		}
	}
}

// consume reads the topic into the view until ctx ends.
func (f *Fleet) consume(ctx context.Context, cl *kgo.Client) {
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fs.EachError(func(topic string, p int32, err error) {
			f.log.Warn("fleet fetch", "partition", p, "err", err)
		})
		f.mu.Lock()
		fs.EachRecord(f.applyLocked)
		f.m.clients.Set(float64(len(f.view)))
		f.mu.Unlock()
	}
}

// applyLocked applies one record of the topic to the view.
func (f *Fleet) applyLocked(r *kgo.Record) {
	id := string(r.Key)
	if r.Value == nil {
		if id == "" {
			f.m.skipped.WithLabelValues(reasonNoKey).Inc()
			return
		}
		delete(f.view, id)
		f.correctLocked(id, nil)
		return
	}
	rec, err := decodeRecord(r.Key, r.Value)
	if err != nil {
		reason := reasonInvalid
		var de *decodeError
		if errors.As(err, &de) {
			reason = de.reason
		}
		f.m.skipped.WithLabelValues(reason).Inc()
		f.log.Debug("skipped fleet record", "partition", r.Partition, "offset", r.Offset, "err", err)
		return
	}
	if _, ok := f.view[id]; !ok && len(f.view) >= f.cfg.MaxClients {
		f.m.skipped.WithLabelValues(reasonViewFull).Inc()
		return
	}
	f.view[id] = rec
	f.correctLocked(id, &rec)
}

// correctLocked publishes again a client connected here that the view, read
// from another gateway or a sweep, says is disconnected or gone (a client
// that moved here before its old gateway saw its stream close).
func (f *Fleet) correctLocked(id string, rec *Record) {
	e := f.local[id]
	if e == nil || !e.stream {
		return
	}
	if rec == nil || (rec.Gateway != f.cfg.Gateway && !rec.Connected) {
		e.pending = true
		f.markReadyLocked(id)
	}
}

func (f *Fleet) markReadyLocked(id string) {
	f.ready[id] = struct{}{}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Connected says a stream of clientID opened on this gateway (connected
// since now). info gives the client's Service, Labels and Selector, and
// may carry a report (its LastReport set).
func (f *Fleet) Connected(clientID string, info Record) {
	if validClientID(clientID) != nil {
		f.m.skipped.WithLabelValues(reasonUnwritable).Inc()
		return
	}
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.newLocalLocked(clientID)
	if e == nil {
		return
	}
	e.stream, e.proxy = true, false
	r := &e.rec
	r.Gateway, r.Connected, r.ConnectedSince = f.cfg.Gateway, true, now
	if info.Service != "" {
		r.Service = info.Service
	}
	if info.Labels != nil {
		r.Labels = maps.Clone(info.Labels)
	}
	if info.Selector != nil {
		r.Selector = slices.Clone(info.Selector)
	}
	if !info.LastReport.IsZero() && !info.LastReport.Before(r.LastReport) {
		takeReport(r, info)
	}
	e.pending = true
	f.markReadyLocked(clientID)
}

// newLocalLocked returns the client's entry, created (with what the view
// knows of its reports) when missing; nil beyond MaxClients.
func (f *Fleet) newLocalLocked(id string) *local {
	if e := f.local[id]; e != nil {
		return e
	}
	if len(f.local) >= f.cfg.MaxClients {
		f.m.skipped.WithLabelValues(reasonLocalFull).Inc()
		return nil
	}
	e := &local{rec: Record{ClientID: id}}
	if v, ok := f.view[id]; ok {
		e.rec.Service, e.rec.Labels = v.Service, maps.Clone(v.Labels)
		takeReport(&e.rec, v)
	}
	f.local[id] = e
	return e
}

// Report records a report that arrived on this gateway: r.ClientID, and
// its Selector, AppliedCursor, Digest, Rejections and LastReport (zero:
// now); Service and Labels when set. A report that changes the selector,
// cursor, digest or rejections is published once MinInterval passed since
// the client's previous record (the latest wins); an unchanged one only
// refreshes LastReport, published with the next record or heartbeat. A
// client with no stream here (the report reached another gateway than its
// stream) is written as the view's record with this report.
func (f *Fleet) Report(r Record) {
	if validClientID(r.ClientID) != nil {
		f.m.skipped.WithLabelValues(reasonUnwritable).Inc()
		return
	}
	now := time.Now()
	if r.LastReport.IsZero() {
		r.LastReport = now
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.local[r.ClientID]
	if e == nil {
		if e = f.newLocalLocked(r.ClientID); e == nil {
			return
		}
		e.proxy = true
	}
	if e.proxy {
		e.since = now
	}
	if r.Service != "" {
		e.rec.Service = r.Service
	}
	if r.Labels != nil {
		e.rec.Labels = maps.Clone(r.Labels)
	}
	takeReport(&e.rec, r)
	if !sameReport(e.rec, e.published) || e.published.LastReport.IsZero() {
		e.pending = true
		f.markReadyLocked(r.ClientID)
	}
}

// Disconnected says the last stream of clientID on this gateway closed: it
// is published disconnected now (within MinInterval of its previous
// record), and after Grace, if the view's latest record for it is still
// this gateway's and still disconnected, tombstoned.
func (f *Fleet) Disconnected(clientID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.local[clientID]
	if e == nil || !e.stream {
		return
	}
	e.stream, e.since = false, time.Now()
	e.rec.Connected = false
	e.pending = true
	f.markReadyLocked(clientID)
}

// Snapshot returns the whole fleet as read back from the topic, sorted by
// client ID; the records are copies.
func (f *Fleet) Snapshot() []Record {
	f.mu.Lock()
	out := make([]Record, 0, len(f.view))
	for _, r := range f.view {
		out = append(out, r.Clone())
	}
	f.mu.Unlock()
	slices.SortFunc(out, func(a, b Record) int { return cmp.Compare(a.ClientID, b.ClientID) })
	return out
}

// pub is one write to the topic; a nil value is a tombstone.
type pub struct {
	id    string
	value []byte
	gen   uint64
}

// publishLoop writes due records: at once when Connected, Report,
// Disconnected or a correction made one due, and on each tick the ones
// whose interval, heartbeat or grace ran out; every Grace it sweeps the
// view for records not updated for 10×Grace.
func (f *Fleet) publishLoop(ctx context.Context, prod *kgo.Client) {
	tick := min(max(min(f.cfg.MinInterval, f.cfg.Heartbeat, f.cfg.Grace)/4, time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	lastSweep := time.Now()
	for {
		var pubs []pub
		select {
		case <-ctx.Done():
			f.flush(ctx, prod)
			return
		case <-f.wake:
			pubs = f.collect(time.Now(), false, false)
		case now := <-t.C:
			pubs = f.collect(now, true, false)
			if now.Sub(lastSweep) >= f.cfg.Grace {
				pubs = append(pubs, f.sweep(now)...)
				lastSweep = now
			}
		}
		f.produce(ctx, prod, pubs)
	}
}

// flush writes the pending records, ignoring MinInterval, when Run ends.
func (f *Fleet) flush(ctx context.Context, prod *kgo.Client) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer cancel()
	pubs := f.collect(time.Now(), true, true)
	if len(pubs) == 0 {
		return
	}
	f.produce(fctx, prod, pubs)
	if err := prod.Flush(fctx); err != nil {
		f.log.Warn("fleet records not flushed at stop", "err", err)
	}
}

// collect returns the writes due now, of the ready clients or of all.
func (f *Fleet) collect(now time.Time, all, final bool) []pub {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	if all {
		ids = slices.Collect(maps.Keys(f.local))
	} else {
		ids = slices.Collect(maps.Keys(f.ready))
	}
	clear(f.ready)
	var out []pub
	for _, id := range ids {
		e := f.local[id]
		if e == nil {
			continue
		}
		_, inView := f.view[id]
		sincePub := now.Sub(e.lastPub)
		switch {
		case e.proxy && now.Sub(e.since) >= f.cfg.Grace && (!e.pending || !inView):
			// Reports stopped (or the client never showed up in the view).
			delete(f.local, id)
		case e.pending && (sincePub >= f.cfg.MinInterval || final):
			if p, ok := f.publishLocked(id, e, now); ok {
				out = append(out, p)
			}
		case e.pending || final:
		case (e.stream || e.proxy) && sincePub >= f.cfg.Heartbeat && e.rec.LastReport.After(e.published.LastReport),
			e.stream && sincePub >= f.cfg.Grace:
			// LastReport moved (unchanged reports), or keep Updated fresh
			// for the sweep.
			if p, ok := f.publishLocked(id, e, now); ok {
				out = append(out, p)
			}
		case !e.stream && !e.proxy && now.Sub(e.since) >= f.cfg.Grace:
			if p, ok := f.graceLocked(id, e, now); ok {
				out = append(out, p)
			}
		}
	}
	return out
}

// publishLocked makes the client's next record; false when there is
// nothing to write yet (a proxy for a client not in the view) or it
// cannot be encoded.
func (f *Fleet) publishLocked(id string, e *local, now time.Time) (pub, bool) {
	v, inView := f.view[id]
	var rec Record
	switch {
	case e.proxy:
		if !inView {
			return pub{}, false
		}
		rec = v.Clone()
		rec.Service, rec.Labels = e.rec.Service, e.rec.Labels
		takeReport(&rec, e.rec)
	default:
		if inView && v.LastReport.After(e.rec.LastReport) {
			// A report that reached another gateway.
			takeReport(&e.rec, v)
		}
		rec = e.rec.Clone()
	}
	rec.Updated = now
	e.pending, e.lastPub = false, now
	value, err := encodeRecord(rec)
	if err != nil {
		f.m.skipped.WithLabelValues(reasonUnwritable).Inc()
		f.log.Warn("fleet record not written", "client", id, "err", err)
		return pub{}, false
	}
	e.gen++
	e.published = rec
	return pub{id: id, value: value, gen: e.gen}, true
}

// graceLocked ends a client disconnected from this gateway for Grace: a
// tombstone when the view's latest record for it is still this gateway's
// and disconnected; nothing when another gateway's (it moved).
func (f *Fleet) graceLocked(id string, e *local, now time.Time) (pub, bool) {
	v, ok := f.view[id]
	switch {
	case !ok || v.Gateway != f.cfg.Gateway:
		delete(f.local, id)
	case !v.Connected:
		delete(f.local, id)
		return pub{id: id}, true
	case now.Sub(e.since) >= sweepFactor*f.cfg.Grace:
		delete(f.local, id) // left to the sweep
	default:
		// The view still has it connected here: the disconnect is not
		// read back yet, or a proxy's copy overwrote it. Say it again.
		e.pending = true
	}
	return pub{}, false
}

// sweep tombstones the records nobody updated for 10×Grace (a dead
// gateway's, a failed tombstone's), but for clients with a stream here.
func (f *Fleet) sweep(now time.Time) []pub {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []pub
	for id, v := range f.view {
		if now.Sub(v.Updated) <= sweepFactor*f.cfg.Grace {
			continue
		}
		if e := f.local[id]; e != nil && e.stream {
			continue
		}
		out = append(out, pub{id: id})
	}
	return out
}

// produce hands the writes to the producer without blocking; a failed
// record is published again (if still the latest), a failed tombstone is
// left to the sweep.
func (f *Fleet) produce(ctx context.Context, prod *kgo.Client, pubs []pub) {
	for _, p := range pubs {
		rec := &kgo.Record{Topic: f.cfg.Topic, Key: []byte(p.id), Value: p.value}
		prod.TryProduce(ctx, rec, func(_ *kgo.Record, err error) { f.produced(p, err) })
	}
}

func (f *Fleet) produced(p pub, err error) {
	if err == nil {
		if p.value == nil {
			f.m.tombstones.Inc()
		} else {
			f.m.published.Inc()
		}
		return
	}
	f.m.produceErr.Inc()
	f.log.Warn("fleet write failed", "client", p.id, "tombstone", p.value == nil, "err", err)
	if p.value == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.local[p.id]; e != nil && e.gen == p.gen {
		e.pending = true
	}
}
