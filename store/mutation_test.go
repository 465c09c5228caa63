package store

// Tests that pin down what the mutation run (scripts/mutation.sh) found
// unpinned in store; docs/testing.md lists each mutant and its test.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestConfigDefaults: a zero or negative knob gets its default, a positive
// one is kept; ReplicationFactor's default applies to 0 only, since -1
// (the broker's default) is a valid setting of its own.
func TestConfigDefaults(t *testing.T) {
	base := Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t"}
	zero, err := base.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	neg := base
	neg.Partitions, neg.HistoryBatches, neg.HistoryBytes = -1, -1, -1
	neg.TombstoneRetention, neg.MaxTombstones, neg.MaxTombstoneBytes = -1, -1, -1
	neg.MaxBatchRecords, neg.FetchMaxWait, neg.FetchMaxPartitionBytes = -1, -1, -1
	neg.ProbeInterval, neg.StaleAfter, neg.ProduceTimeout = -1, -1, -1
	negOut, err := neg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	set := base
	set.Partitions, set.ReplicationFactor, set.HistoryBatches, set.HistoryBytes = 3, 2, 7, 9
	set.TombstoneRetention, set.MaxTombstones, set.MaxTombstoneBytes = time.Minute, 11, 13
	set.MaxBatchRecords, set.FetchMaxWait, set.FetchMaxPartitionBytes = 17, time.Second, 19
	set.ProbeInterval, set.StaleAfter, set.ProduceTimeout = 3*time.Second, 4*time.Second, 5*time.Second
	setOut, err := set.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	rfMinus := base
	rfMinus.ReplicationFactor = -1
	rfMinusOut, err := rfMinus.withDefaults()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name                 string
		zero, neg, set       any // the field after withDefaults
		wantDefault, wantSet any
	}{
		{"Partitions", zero.Partitions, negOut.Partitions, setOut.Partitions, int32(6), int32(3)},
		{"ReplicationFactor", zero.ReplicationFactor, rfMinusOut.ReplicationFactor, setOut.ReplicationFactor, int16(-1), int16(2)},
		{"HistoryBatches", zero.HistoryBatches, negOut.HistoryBatches, setOut.HistoryBatches, 65536, 7},
		{"HistoryBytes", zero.HistoryBytes, negOut.HistoryBytes, setOut.HistoryBytes, int64(64 << 20), int64(9)},
		{"TombstoneRetention", zero.TombstoneRetention, negOut.TombstoneRetention, setOut.TombstoneRetention, 24 * time.Hour, time.Minute},
		{"MaxTombstones", zero.MaxTombstones, negOut.MaxTombstones, setOut.MaxTombstones, 200000, 11},
		{"MaxTombstoneBytes", zero.MaxTombstoneBytes, negOut.MaxTombstoneBytes, setOut.MaxTombstoneBytes, int64(64 << 20), int64(13)},
		{"MaxBatchRecords", zero.MaxBatchRecords, negOut.MaxBatchRecords, setOut.MaxBatchRecords, 512, 17},
		{"FetchMaxWait", zero.FetchMaxWait, negOut.FetchMaxWait, setOut.FetchMaxWait, 500 * time.Millisecond, time.Second},
		{"FetchMaxPartitionBytes", zero.FetchMaxPartitionBytes, negOut.FetchMaxPartitionBytes, setOut.FetchMaxPartitionBytes, int32(8 << 20), int32(19)},
		{"ProbeInterval", zero.ProbeInterval, negOut.ProbeInterval, setOut.ProbeInterval, 2 * time.Second, 3 * time.Second},
		{"StaleAfter", zero.StaleAfter, negOut.StaleAfter, setOut.StaleAfter, 10 * time.Second, 4 * time.Second},
		{"ProduceTimeout", zero.ProduceTimeout, negOut.ProduceTimeout, setOut.ProduceTimeout, 10 * time.Second, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.zero != tt.wantDefault {
				t.Errorf("zero: got %v, want the default %v", tt.zero, tt.wantDefault)
			}
			// For ReplicationFactor this is -1 set explicitly: kept as is.
			if tt.neg != tt.wantDefault {
				t.Errorf("negative: got %v, want %v", tt.neg, tt.wantDefault)
			}
			if tt.set != tt.wantSet {
				t.Errorf("set: got %v, want it kept as %v", tt.set, tt.wantSet)
			}
		})
	}
	if zero.Logger == nil {
		t.Error("Logger: nil, want slog.Default()")
	}
}

// offlineStore is a Store that never reaches Kafka: the tests below drive
// install and apply by hand, as the consume loop would.
func offlineStore(t *testing.T, logTo *bytes.Buffer) *Store {
	t.Helper()
	cfg := Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t"}
	if logTo != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logTo, nil))
	} else {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestRebuildSkipsASeq: after a rebuild, a reader at the old head gets
// ErrRebuilt, never an empty history that looks current.
func TestRebuildSkipsASeq(t *testing.T) {
	s := offlineStore(t, nil)
	s.install(topicMeta{id: topicA, partitions: 1}, []int64{0}, []int64{0}, logTrust{})
	if !s.Ready() {
		t.Fatal("not ready at an empty topic")
	}
	s.apply(recs(put(0, 0, "k", "v")))
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	head := snap.Seq
	if bs, err := s.Since(head, 10); err != nil || len(bs) != 0 {
		t.Fatalf("Since(head) before the rebuild = %d batches, %v; want none, nil", len(bs), err)
	}
	s.install(topicMeta{id: topicB, partitions: 1}, []int64{0}, []int64{0}, logTrust{})
	if got, want := s.st.epochStart, head+2; got != want {
		t.Fatalf("new epoch starts at Seq %d, want %d (one skipped after the old head %d)", got, want, head)
	}
	if _, err := s.Since(head, 10); !errors.Is(err, ErrRebuilt) {
		t.Fatalf("Since(old head) after the rebuild: %v, want ErrRebuilt", err)
	}
}

// TestInstallTrust: a bootstrap with records to read keeps its log trust;
// one with nothing to read (every partition at its target) drops it.
func TestInstallTrust(t *testing.T) {
	on := newLogTrust(time.Now(), topicTiming{tombRetention: 24 * time.Hour, createLag: time.Hour}, false)
	tests := []struct {
		name           string
		start, targets []int64
		want           bool
	}{
		{"records to read in the last partition", []int64{3, 0}, []int64{3, 5}, true},
		{"records to read in the first partition", []int64{0, 5}, []int64{3, 5}, true},
		{"caught up", []int64{3, 5}, []int64{3, 5}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := offlineStore(t, nil)
			s.install(topicMeta{id: topicA, partitions: 2}, tt.start, tt.targets, on)
			if got := s.st.trust.on; got != tt.want {
				t.Fatalf("trust on = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestLogSampled: a repeated message is logged at its 1st, 10th, 100th...
// occurrence, and counting starts again after resetLogSampling.
func TestLogSampled(t *testing.T) {
	var buf bytes.Buffer
	s := offlineStore(t, &buf)
	buf.Reset()
	count := func() []string {
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if i := strings.Index(l, "occurrence="); i >= 0 {
				got = append(got, l[i:])
			}
		}
		buf.Reset()
		return got
	}
	for range 120 {
		s.logSampled("k", slog.LevelWarn, "m")
	}
	s.logSampled("other", slog.LevelWarn, "m")
	if got, want := count(), []string{"occurrence=1", "occurrence=10", "occurrence=100", "occurrence=1"}; !slices.Equal(got, want) {
		t.Fatalf("logged %q, want %q", got, want)
	}
	s.resetLogSampling()
	s.logSampled("k", slog.LevelWarn, "m")
	if got, want := count(), []string{"occurrence=1"}; !slices.Equal(got, want) {
		t.Fatalf("after reset logged %q, want %q", got, want)
	}
}

// TestApplyNotifies: apply wakes readers (closes Changed) exactly when
// something they can see changed: a batch, a purge, an applied record, or
// becoming ready; a record below the cursor changes nothing and wakes no one.
func TestApplyNotifies(t *testing.T) {
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	tests := []struct {
		name  string
		setup func(s *Store) // before Changed is taken
		apply []rec
		want  bool
	}{
		{"a put", nil, recs(put(0, 0, "k", "v")), true},
		{"only a skipped record (a batch with no changes)", nil, recs(skip(0, 0, skipControl)), true},
		{"a record below the cursor", func(s *Store) { s.apply(recs(put(0, 0, "k", "v"))) }, recs(put(0, 0, "k", "w")), false},
		{"nothing", nil, nil, false},
		{"a tombstone past its retention, nothing else", func(s *Store) {
			s.cfg.TombstoneRetention = time.Nanosecond
			s.apply(recs(put(0, 0, "k", "v"), del(0, 1, "k")))
			if s.st.tombs != 1 {
				panic("the tombstone was purged at once")
			}
			for s.st.tombQ[0].at >= time.Now().UnixNano()-1 {
				// wait out the nanosecond (no assertion on time)
			}
		}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := offlineStore(t, nil)
			s.install(topicMeta{id: topicA, partitions: 1}, []int64{0}, []int64{0}, logTrust{})
			if tt.setup != nil {
				tt.setup(s)
			}
			ch := s.Changed()
			s.apply(tt.apply)
			if got := closed(ch); got != tt.want {
				t.Fatalf("Changed closed = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("becoming ready on a skipped record", func(t *testing.T) {
		s := offlineStore(t, nil)
		s.install(topicMeta{id: topicA, partitions: 1}, []int64{0}, []int64{1}, logTrust{})
		ch := s.Changed()
		s.apply(recs(skip(0, 0, skipControl)))
		if !s.Ready() || !closed(ch) {
			t.Fatalf("ready = %v, Changed closed = %v; want both", s.Ready(), closed(ch))
		}
	})
}

// TestLagGauge: the lag gauge of a partition is its high watermark minus the
// applied offset, never negative; Status sums them.
func TestLagGauge(t *testing.T) {
	s := offlineStore(t, nil)
	s.install(topicMeta{id: topicA, partitions: 2}, []int64{0, 0}, []int64{5, 1}, logTrust{})
	s.apply(recs(put(0, 0, "k", "v"), put(1, 0, "j", "v")))
	s.mu.Lock()
	s.hw[1] = 0 // a stale high watermark below the applied offset
	s.updateGaugesLocked()
	s.mu.Unlock()
	if got := s.Status().LagRecords; got != 4 {
		t.Errorf("Status().LagRecords = %d, want 4 (4 + 0)", got)
	}
	for p, want := range []float64{4, 0} {
		var m dto.Metric
		if err := s.m.lag.WithLabelValues(strconv.Itoa(p)).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetGauge().GetValue(); got != want {
			t.Errorf("lag of partition %d = %v, want %v", p, got, want)
		}
	}
}

// TestEntrySize pins the accounting size that the history and tombstone
// byte limits count: key, value and content type plus 96, and per header
// its key and value plus 32.
func TestEntrySize(t *testing.T) {
	tests := []struct {
		name string
		e    Entry
		want int64
	}{
		{"empty", Entry{}, 96},
		{"key, value, content type", Entry{Key: "abc", Value: []byte("12345"), ContentType: "x/y"}, 3 + 5 + 3 + 96},
		{"headers", Entry{Key: "k", Headers: []Header{{Key: "h1", Value: []byte("vvv")}, {Key: "h", Value: nil}}}, 1 + 96 + (2 + 3 + 32) + (1 + 32)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.e.Size(); got != tt.want {
				t.Fatalf("Size() = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestNoteHighWatermark: a partition's known high watermark only moves
// forward, and a partition the incarnation does not have is ignored.
func TestNoteHighWatermark(t *testing.T) {
	s := offlineStore(t, nil)
	s.install(topicMeta{id: topicA, partitions: 1}, []int64{0}, []int64{5}, logTrust{})
	steps := []struct {
		p    int32
		hw   int64
		want int64
	}{
		{0, 3, 5},  // backwards: kept
		{0, 5, 5},  // same
		{1, 99, 5}, // unknown partition: ignored, no panic
		{0, 9, 9},  // forwards
	}
	for _, st := range steps {
		s.noteHighWatermark(st.p, st.hw)
		if got := s.hw; len(got) != 1 || got[0] != st.want {
			t.Fatalf("after noteHighWatermark(%d, %d): hw = %v, want [%d]", st.p, st.hw, got, st.want)
		}
	}
}

// TestProbeOnce: one probe of a live topic reaches Kafka (the store is no
// longer stale) and raises the known high watermarks to the end offsets,
// never lowering one, and skips partitions it does not track.
func TestProbeOnce(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("t"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var rs []*kgo.Record
	for p, n := range []int{3, 2, 4} { // end offsets 3, 2, 4
		for range n {
			rs = append(rs, &kgo.Record{Key: []byte("k"), Partition: int32(p)})
		}
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	s, err := New(Config{Brokers: c.ListenAddrs(), Topic: "t", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	td, err := s.adm.ListTopics(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	meta := topicMeta{id: cursor.TopicID(td["t"].ID), partitions: 3}
	// Targets for two partitions only, so the third is one the store does
	// not track; partition 1 already knows a watermark past the end.
	s.install(meta, []int64{0, 0}, []int64{0, 10}, logTrust{})
	if !s.Stale() {
		t.Fatal("stale before any contact: false, want true")
	}
	pctx, pcancel := context.WithCancelCause(ctx)
	defer pcancel(nil)
	s.probeOnce(pctx, pcancel, meta)
	if cause := context.Cause(pctx); cause != nil {
		t.Fatalf("probe ended the epoch: %v", cause)
	}
	if s.Stale() {
		t.Fatal("stale after a successful probe")
	}
	s.mu.RLock()
	hw := slices.Clone(s.hw)
	s.mu.RUnlock()
	if want := []int64{3, 10}; !slices.Equal(hw, want) {
		t.Fatalf("high watermarks after the probe = %v, want %v", hw, want)
	}
}

// TestClip: quoted keys and values in errors and logs are cut after 64 bytes.
func TestClip(t *testing.T) {
	s64, s65 := strings.Repeat("a", 64), strings.Repeat("a", 65)
	if got := clip(s64); got != s64 {
		t.Errorf("clip(64 bytes) = %q, want it unchanged", got)
	}
	if got := clip(s65); got != s64+"..." {
		t.Errorf("clip(65 bytes) = %q, want 64 bytes and ...", got)
	}
	if got, want := clipKey([]byte(s65)), strconv.Quote(s64); got != want {
		t.Errorf("clipKey(65 bytes) = %s, want %s", got, want)
	}
}

// TestRecordSize: key, value and every header's key and value, in bytes.
func TestRecordSize(t *testing.T) {
	r := &kgo.Record{Key: []byte("kk"), Value: []byte("vvvvv"), Headers: []kgo.RecordHeader{
		{Key: "h", Value: []byte("123")}, {Key: "hh", Value: nil},
	}}
	if got, want := recordSize(r), 2+5+(1+3)+(2+0); got != want {
		t.Fatalf("recordSize = %d, want %d", got, want)
	}
}

// TestDecodeDetails: a CreateTime record is not taken for an append time,
// and a skip's log line carries the rule's error.
func TestDecodeDetails(t *testing.T) {
	var buf bytes.Buffer
	s := offlineStore(t, &buf)
	ts := time.UnixMilli(1_700_000_000_000)
	k := "k"
	p := int32(s.keyPart.Partition(&kgo.Record{Key: []byte(k)}, 4))
	r := s.decode(&kgo.Record{Key: []byte(k), Value: []byte("v"), Partition: p, Offset: 7, Timestamp: ts}, 4)
	if r.skip != skipNone || r.logAppend || r.ts != ts.UnixMilli() || r.off != 7 || r.part != p {
		t.Fatalf("decode = %+v, want applied, CreateTime %d at %d:7", r, ts.UnixMilli(), p)
	}
	buf.Reset()
	r = s.decode(&kgo.Record{Key: []byte("bad\x00key"), Value: []byte("v"), Partition: p}, 4)
	if r.skip != skipBadKey {
		t.Fatalf("skip = %q, want %q", r.skip, skipBadKey)
	}
	if line := buf.String(); !strings.Contains(line, "reason=bad_key") || !strings.Contains(line, "err=") {
		t.Fatalf("skip logged %q, want the reason and the error", line)
	}
	buf.Reset()
	s.decode(&kgo.Record{Key: nil, Value: []byte("v"), Partition: p}, 4)
	if line := buf.String(); !strings.Contains(line, "reason=no_key") || strings.Contains(line, "err=") {
		t.Fatalf("skip logged %q, want the reason and no error (there is none)", line)
	}
}

// TestGetDeleted: Get reports a deleted key and an absent one as not found.
func TestGetDeleted(t *testing.T) {
	s := offlineStore(t, nil)
	s.install(topicMeta{id: topicA, partitions: 1}, []int64{0}, []int64{0}, logTrust{})
	s.apply(recs(put(0, 0, "k", "v"), put(0, 1, "j", "v"), del(0, 2, "k")))
	for _, key := range []string{"k", "absent"} {
		if e, _, ok, err := s.Get(key); err != nil || ok || e != nil {
			t.Errorf("Get(%q) = %v, %v, %v; want not found", key, e, ok, err)
		}
	}
	if e, _, ok, err := s.Get("j"); err != nil || !ok || string(e.Value) != "v" {
		t.Errorf("Get(j) = %v, %v, %v; want v", e, ok, err)
	}
}

// TestStartRecordingShortTrustStart: a partition without a listed log start
// offset gets no trusted diff floor (and no panic).
func TestStartRecordingShortTrustStart(t *testing.T) {
	start := time.Now()
	trust := newLogTrust(start, topicTiming{tombRetention: 24 * time.Hour, createLag: time.Hour}, false)
	st := newState(topicA, []int64{0, 0}, 1, bigLimits, trust)
	young := start.Add(-time.Hour).UnixMilli()
	r0, r1 := put(0, 0, "a", "1"), put(1, 0, "b", "1")
	r0.ts, r0.logAppend, r1.ts, r1.logAppend = young, true, young, true
	st.apply(recs(r0, r1), 0)
	st.trustStart = []int64{0}
	st.startRecording(start.Add(time.Minute))
	if want := []int64{0, 1}; !slices.Equal(st.diffFloor, want) {
		t.Fatalf("diffFloor = %v, want %v", st.diffFloor, want)
	}
}

// TestByteAccounting pins what the byte limits count: a batch is its
// changes' sizes plus 8 bytes per partition of its end cursor plus 64, and
// tombBytes is the size of the tombstones held, through replacements.
func TestByteAccounting(t *testing.T) {
	st := newTestState(3, bigLimits)
	st.startRecording(time.Now())
	a, b := put(0, 0, "a", "12345"), put(1, 0, "bb", "")
	b1 := must(st.apply(recs(a, b), 0))
	wantBatch := a.entry.Size() + b.entry.Size() + 3*8 + 64
	if b1.size != wantBatch || st.historyBytes != wantBatch {
		t.Fatalf("batch size %d, history bytes %d; want %d", b1.size, st.historyBytes, wantBatch)
	}

	d := del(0, 1, "a")
	st.apply(recs(d), 0)
	if st.tombs != 1 || st.tombBytes != d.entry.Size() {
		t.Fatalf("after a delete: tombs %d, tombBytes %d; want 1, %d", st.tombs, st.tombBytes, d.entry.Size())
	}
	d2 := del(0, 2, "a") // a tombstone replacing a tombstone
	st.apply(recs(d2), 0)
	if st.tombs != 1 || st.tombBytes != d2.entry.Size() {
		t.Fatalf("after a second delete: tombs %d, tombBytes %d; want 1, %d", st.tombs, st.tombBytes, d2.entry.Size())
	}
	st.apply(recs(put(0, 3, "a", "again")), 0)
	if st.tombs != 0 || st.tombBytes != 0 {
		t.Fatalf("after a put over the tombstone: tombs %d, tombBytes %d; want 0, 0", st.tombs, st.tombBytes)
	}
}

func must(b *Batch, _ applyResult) *Batch { return b }

// TestTrimAtTheByteLimit: history exactly at the byte limit is kept whole;
// one byte less drops the oldest batch. Trimming a long history to a short
// one gives back the long backing array.
func TestTrimAtTheByteLimit(t *testing.T) {
	probe := newTestState(1, bigLimits)
	probe.startRecording(time.Now())
	two := applyOnePerBatch(t, probe, 2)
	limit := two[0].size + two[1].size
	for _, tt := range []struct {
		bytes int64
		keep  int
	}{{limit, 2}, {limit - 1, 1}} {
		st := newTestState(1, historyLimits{batches: 100, bytes: tt.bytes})
		st.startRecording(time.Now())
		all := applyOnePerBatch(t, st, 2)
		checkWindow(t, st, all, tt.keep)
	}

	st := newTestState(1, historyLimits{batches: 1000, bytes: 1 << 40})
	st.startRecording(time.Now())
	applyOnePerBatch(t, st, 500)
	st.limits.batches = 1
	applyOnePerBatch(t, st, 1)
	if len(st.history) != 1 || cap(st.history) > 2+64 {
		t.Fatalf("after trimming 501 batches to 1: len %d, cap %d; want 1 and the array given back", len(st.history), cap(st.history))
	}
}

// TestPurgeNeverLowersTheDiffFloor: forgetting a tombstone read while
// bootstrapping, below the diff floor, leaves the floor where it is.
func TestPurgeNeverLowersTheDiffFloor(t *testing.T) {
	st := newTestState(1, bigLimits)
	st.apply(recs(put(0, 0, "x", "1"), del(0, 3, "x"), put(0, 4, "y", "1")), 0)
	st.startRecording(time.Now())
	if want := []int64{5}; !slices.Equal(st.diffFloor, want) {
		t.Fatalf("diffFloor at the start of recording = %v, want %v", st.diffFloor, want)
	}
	if n := st.purgeTombstones(1); n != 1 {
		t.Fatalf("purged %d tombstones, want 1", n)
	}
	if want := []int64{5}; !slices.Equal(st.diffFloor, want) {
		t.Fatalf("diffFloor after purging x@0:3 = %v, want %v", st.diffFloor, want)
	}
}

// TestPurgeRaisesTrustFrom: forgetting a tombstone while bootstrapping
// raises its partition's trusted offset past it when it was at or after
// it, and never makes an untrusted partition trusted.
func TestPurgeRaisesTrustFrom(t *testing.T) {
	start := time.Now()
	trust := newLogTrust(start, topicTiming{tombRetention: 24 * time.Hour, createLag: time.Hour}, false)
	young, old := start.Add(-time.Hour).UnixMilli(), start.Add(-48*time.Hour).UnixMilli()
	at := func(r rec, ts int64) rec { r.ts, r.logAppend = ts, true; return r }
	st := newState(topicA, []int64{0, 0, 0}, 1, bigLimits, trust)
	st.apply(recs(
		at(del(0, 0, "a"), young),                               // partition 0: trusted from 0, its tombstone at 0
		at(put(1, 0, "b", "1"), young), at(del(1, 1, "c"), old), // partition 1: trusted from 0, tombstone at 1
		at(del(2, 0, "d"), old), // partition 2: never trusted
	), 0)
	if want := []int64{0, 0, -1}; !slices.Equal(st.trustFrom, want) {
		t.Fatalf("trustFrom after bootstrap = %v, want %v", st.trustFrom, want)
	}
	if n := st.purgeTombstones(1); n != 3 {
		t.Fatalf("purged %d tombstones, want 3", n)
	}
	if want := []int64{1, 2, -1}; !slices.Equal(st.trustFrom, want) {
		t.Fatalf("trustFrom after forgetting the tombstones = %v, want %v", st.trustFrom, want)
	}
}

// TestCreateTopicResult: createTopic reports a refused creation, and
// succeeds for a new topic and for one that already exists.
func TestCreateTopicResult(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "exists"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tests := []struct {
		name    string
		topic   string
		rf      int16
		wantErr bool
	}{
		{"new", "fresh", 1, false},
		{"exists", "exists", 1, false},
		{"refused: replication factor over the broker count", "refused", 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Config{Brokers: c.ListenAddrs(), Topic: tt.topic, Partitions: 2, ReplicationFactor: tt.rf, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.createTopic(ctx); (err != nil) != tt.wantErr {
				t.Fatalf("createTopic: %v, want an error: %v", err, tt.wantErr)
			}
		})
	}
}

// TestInspectConfigsUnknown: when the topic's configs cannot be read, the
// timing trusts nothing: no tombstone retention, CreateTime lag unknown (-1).
func TestInspectConfigsUnknown(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s, err := New(Config{Brokers: c.ListenAddrs(), Topic: "absent", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if got, want := s.inspectConfigs(ctx), (topicTiming{createLag: -1}); !sameTiming(got, want) {
		t.Fatalf("inspectConfigs of a missing topic = %+v, want %+v", got, want)
	}
}

// TestInspectConfigs: the topic's configs as logTrust reads them; a zero
// duration is a value, an unparsable or negative one is unknown.
func TestInspectConfigs(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tests := []struct {
		name    string
		configs map[string]string
		want    topicTiming
	}{
		{"all set", map[string]string{
			"cleanup.policy":                 "compact",
			"delete.retention.ms":            "86400000",
			"message.timestamp.after.max.ms": "3600000",
			"message.timestamp.type":         "LogAppendTime",
			"unclean.leader.election.enable": "true",
		}, topicTiming{tombRetention: 24 * time.Hour, createLag: time.Hour, logAppendTime: true, uncleanElection: true, cleanupPolicy: "compact"}},
		{"zero durations", map[string]string{
			"cleanup.policy":                 "compact,delete",
			"delete.retention.ms":            "0",
			"message.timestamp.after.max.ms": "0",
		}, topicTiming{createLag: 0, cleanupPolicy: "compact,delete"}},
		{"unparsable and negative", map[string]string{
			"delete.retention.ms":            "-5",
			"message.timestamp.after.max.ms": "soon",
		}, topicTiming{createLag: -1}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topic := fmt.Sprintf("t%d", i)
			s, err := New(Config{Brokers: c.ListenAddrs(), Topic: topic, Partitions: 1, ReplicationFactor: 1, TopicConfigs: tt.configs, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.createTopic(ctx); err != nil {
				t.Fatal(err)
			}
			got := s.inspectConfigs(ctx)
			if tt.want.cleanupPolicy == "" {
				got.cleanupPolicy = "" // createTopic always sets compact
			}
			if !sameTiming(got, tt.want) {
				t.Fatalf("inspectConfigs = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// sameTiming compares the fields of topicTiming that logTrust and the
// compaction check read.
func sameTiming(a, b topicTiming) bool {
	return a.tombRetention == b.tombRetention && a.createLag == b.createLag && a.logAppendTime == b.logAppendTime &&
		a.uncleanElection == b.uncleanElection && a.cleanupPolicy == b.cleanupPolicy
}

// TestLogTrustEdges: a delete.retention.ms of exactly the minimum is
// trusted, and a CreateTime lag of zero is a known lag (not unknown).
func TestLogTrustEdges(t *testing.T) {
	start := time.Now()
	if tr := newLogTrust(start, topicTiming{tombRetention: minTrustRetention, createLag: time.Hour}, false); !tr.on {
		t.Error("retention of exactly minTrustRetention: trust off, want on")
	}
	if tr := newLogTrust(start, topicTiming{tombRetention: minTrustRetention - time.Millisecond, createLag: time.Hour}, false); tr.on {
		t.Error("retention just under minTrustRetention: trust on, want off")
	}
	if tr := newLogTrust(start, topicTiming{tombRetention: time.Hour, createLag: 0}, false); tr.createLag != 0 {
		t.Errorf("createLag 0: trust's createLag = %d, want 0", tr.createLag)
	}
}

// TestTrustBootstrap: once caught up, the store lists the log start offsets
// and becomes ready trusting what it read: diffs from the trusted offsets.
func TestTrustBootstrap(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := New(Config{Brokers: c.ListenAddrs(), Topic: "t", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	td, err := s.adm.ListTopics(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	meta := topicMeta{id: cursor.TopicID(td["t"].ID), partitions: 1}
	start := time.Now()
	s.install(meta, []int64{0}, []int64{2}, newLogTrust(start, topicTiming{tombRetention: 24 * time.Hour, createLag: time.Hour}, false))
	r0, r1 := put(0, 0, "a", "1"), del(0, 1, "b")
	r0.ts, r0.logAppend, r1.ts, r1.logAppend = start.UnixMilli(), true, start.UnixMilli(), true
	s.apply(recs(r0, r1))
	if s.Ready() {
		t.Fatal("ready before the start offsets were listed")
	}
	s.trustBootstrap(ctx, meta)
	if !s.Ready() {
		t.Fatal("not ready after trustBootstrap")
	}
	if got, want := s.st.diffFloor, []int64{0}; !slices.Equal(got, want) {
		t.Fatalf("diffFloor = %v, want %v (trusted from offset 0)", got, want)
	}
}
