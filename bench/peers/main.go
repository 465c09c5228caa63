// Command peers measures confgate against etcd, NATS JetStream KV and a
// Redis pub/sub layer with the same load (internal/loadgen), each server in
// a child process of its own, and writes docs/benchmarks.md. It lives in a
// module of its own so confgate never depends on the peers.
//
//	cd bench/peers && go run . --out ../../docs/benchmarks.md
//
// See README.md beside this file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/confgate/confgate/internal/loadgen"
)

// options are the command's flags.
type options struct {
	targets   []string
	cells     []cell
	scenarios []string
	duration  time.Duration
	warmup    time.Duration
	drain     time.Duration
	runs      int
	out       string
}

// cell is one broadcast load: N subscribers, R writes per second.
type cell struct {
	N int
	R float64
}

func (c cell) String() string {
	return fmt.Sprintf("%dx%s", c.N, strconv.FormatFloat(c.R, 'f', -1, 64))
}

var (
	allTargets   = []string{"confgate", "confgate-stub", "etcd", "nats", "redis"}
	allScenarios = []string{"broadcast", "sharded", "bootstrap", "storm", "herd"}
)

const (
	defaultCells = "1000x5,1000x50,5000x5,5000x50"
	// The sharded scenario: 10,000 subscribers over 1,000 prefixes, 10
	// keys per prefix, 2,000 writes/s.
	shardedSubs     = 10000
	shardedPrefixes = 1000
	shardedKeys     = 10000
	shardedRate     = 2000
	// The broadcast cells: 1 prefix, 100 keys, 1 KiB values.
	broadcastKeys = 100
	valueSize     = 1024
)

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	targets := fs.String("targets", strings.Join(allTargets, ","), "systems under test, in order: "+strings.Join(allTargets, ","))
	cells := fs.String("cells", defaultCells, "broadcast cells NxR: N subscribers (one connection each) on one prefix, R writes/s")
	scen := fs.String("scenarios", strings.Join(allScenarios, ","), "scenarios: broadcast and sharded for every target; bootstrap, storm and herd are confgate's only")
	o := &options{}
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "measured writes per fan-out run")
	fs.DurationVar(&o.warmup, "warmup", 5*time.Second, "writes before the measured ones, not counted")
	fs.DurationVar(&o.drain, "drain", 5*time.Second, "wait for deliveries after the last write")
	fs.IntVar(&o.runs, "runs", 2, "runs of everything, back to back")
	fs.StringVar(&o.out, "out", "", "Markdown report to write (default: docs/benchmarks.md in the repository)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, t := range splitList(*targets) {
		if !contains(allTargets, t) {
			return nil, fmt.Errorf("--targets: unknown %q (want %s)", t, strings.Join(allTargets, ","))
		}
		o.targets = append(o.targets, t)
	}
	for _, s := range splitList(*scen) {
		if !contains(allScenarios, s) {
			return nil, fmt.Errorf("--scenarios: unknown %q (want %s)", s, strings.Join(allScenarios, ","))
		}
		o.scenarios = append(o.scenarios, s)
	}
	for _, c := range splitList(*cells) {
		n, r, ok := strings.Cut(c, "x")
		nv, err1 := strconv.Atoi(n)
		rv, err2 := strconv.ParseFloat(r, 64)
		if !ok || err1 != nil || err2 != nil || nv <= 0 || rv <= 0 {
			return nil, fmt.Errorf("--cells: %q is not NxR (e.g. 1000x5)", c)
		}
		o.cells = append(o.cells, cell{nv, rv})
	}
	if o.runs < 1 || o.duration <= 0 {
		return nil, errors.New("--runs and --duration must be positive")
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s peers: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func main() {
	if isServeMode(os.Args[1:]) {
		os.Exit(serveMain(os.Args[1:]))
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

// fdLimit is the RLIMIT_NOFILE this program asks for: each subscriber
// holds a socket here and one in the server, and the sharded scenario has
// 10,000 of them (the servers, our children, inherit it).
const fdLimit = 200000

// raiseFDLimit lifts the soft open-file limit to the hard one, and the
// hard one to fdLimit where allowed (root, or CAP_SYS_RESOURCE).
func raiseFDLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Max < fdLimit {
		want := syscall.Rlimit{Cur: fdLimit, Max: fdLimit}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
			return fdLimit, nil
		}
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	return l.Cur, nil
}

// record is one measurement (or its failure).
type record struct {
	scenario string // "broadcast" or "sharded"
	cell     string // "1000x5" or "10000/1000p x2000"
	target   string
	run      int
	res      *loadgen.FanoutResult
	// kafkaCPU is Kafka's CPU over the measured window (confgate only;
	// nil when not sampled).
	kafkaCPU *time.Duration
	err      error
	// putErr is the first write error, if any write failed.
	putErr string
}

// putErrors keeps a target's first write error, for the report (loadgen
// counts failed writes without their reason).
type putErrors struct {
	loadgen.Target
	first atomic.Pointer[string]
}

func (p *putErrors) Put(ctx context.Context, key string, value []byte) error {
	err := p.Target.Put(ctx, key, value)
	if err != nil {
		msg := err.Error()
		p.first.CompareAndSwap(nil, &msg)
	}
	return err
}

// starter starts one target afresh.
type starter func(context.Context) (loadgen.Target, error)

func run(ctx context.Context, o *options, args []string) error {
	began := time.Now()
	nofile, err := raiseFDLimit()
	if err != nil {
		logf("cannot raise RLIMIT_NOFILE: %v", err)
	}
	// Each process (this one, each server) holds a socket per
	// subscriber, plus its own files.
	if need := uint64(shardedSubs + 1000); nofile < need {
		logf("RLIMIT_NOFILE is %d: runs above about %d subscribers will fail (raise the hard limit, see README.md)", nofile, max(int(nofile)-1000, 0))
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	out := o.out
	if out == "" {
		out = filepath.Join(root, "docs", "benchmarks.md")
	}
	rep := &report{opts: o, args: args, began: began, root: root, nofile: nofile}

	starters := map[string]starter{"etcd": startEtcd, "nats": startNATS, "redis": startRedis}
	var env *confgateEnv
	needsConfgate := contains(o.targets, "confgate") || contains(o.targets, "confgate-stub")
	if needsConfgate {
		if env, err = startConfgateEnv(ctx, logf); err != nil {
			return err
		}
		defer env.Close()
		starters["confgate"] = env.start("confgate", loadgen.ModeClient)
		starters["confgate-stub"] = env.start("confgate-stub", loadgen.ModeStub)
		rep.kafka = kafkaVersion(root)
	}

	type job struct {
		scenario, cell string
		cfg            loadgen.FanoutConfig
	}
	var jobs []job
	if contains(o.scenarios, "broadcast") {
		for _, c := range o.cells {
			jobs = append(jobs, job{"broadcast", c.String(), loadgen.FanoutConfig{
				Subscribers: c.N, Prefixes: 1, Keys: broadcastKeys, Rate: c.R, Size: valueSize,
				Duration: o.duration, Warmup: o.warmup, Drain: o.drain, KeyPrefix: "bench/",
			}})
		}
	}
	if contains(o.scenarios, "sharded") {
		jobs = append(jobs, job{"sharded", shardedCell, loadgen.FanoutConfig{
			Subscribers: shardedSubs, Prefixes: shardedPrefixes, Keys: shardedKeys, Rate: shardedRate, Size: valueSize,
			Duration: o.duration, Warmup: o.warmup, Drain: o.drain, KeyPrefix: "bench/",
		}})
	}
	for r := 1; r <= o.runs; r++ {
		for _, j := range jobs {
			for _, name := range o.targets {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				rec := measure(ctx, starters[name], name, j.cfg, env)
				rec.scenario, rec.cell, rec.run = j.scenario, j.cell, r
				rep.add(rec)
				if err := rep.write(out); err != nil { // after every cell: a long run keeps what it measured
					return err
				}
			}
		}
		if needsConfgate {
			for _, s := range []string{"bootstrap", "storm", "herd"} {
				if contains(o.scenarios, s) && ctx.Err() == nil {
					rep.addScenario(runScenario(ctx, s, env, r))
					if err := rep.write(out); err != nil {
						return err
					}
				}
			}
		}
	}
	rep.finished = time.Now()
	if err := rep.write(out); err != nil {
		return err
	}
	logf("wrote %s in %s", out, time.Since(began).Round(time.Second))
	return nil
}

// shardedCell labels the sharded scenario's load.
var shardedCell = fmt.Sprintf("%d subscribers / %d prefixes, %d writes/s", shardedSubs, shardedPrefixes, shardedRate)

// measure starts a fresh server for name, runs one fan-out and stops it.
func measure(ctx context.Context, start starter, name string, cfg loadgen.FanoutConfig, env *confgateEnv) record {
	rec := record{target: name}
	logf("%s: %d subscribers, %d prefixes, %g writes/s, %v: starting", name, cfg.Subscribers, cfg.Prefixes, cfg.Rate, cfg.Duration)
	t0 := time.Now()
	tg, err := start(ctx)
	if err != nil {
		rec.err = fmt.Errorf("start: %w", err)
		logf("%s: %v", name, rec.err)
		return rec
	}
	defer tg.Close()
	var kw *kafkaWindow
	if ct, ok := tg.(*confgateTarget); ok && env != nil && env.kafkaPID > 0 {
		kw = &kafkaWindow{pid: env.kafkaPID, warmup: int64(cfg.Warmup.Seconds() * cfg.Rate)}
		ct.kw = kw
	}
	if _, ok := tg.(*confgateTarget); ok && env != nil && len(env.brokers) > 0 {
		// Kafka's own round trip under the same load: a plain franz-go
		// producer (acks=all) beside every measured Put, to a topic of
		// its own.
		w, stop, err := loadgen.KafkaWriter(ctx, env.brokers, newTopic("baseline"), 6)
		if err != nil {
			rec.err = fmt.Errorf("baseline producer: %w", err)
			logf("%s: %v", name, rec.err)
			return rec
		}
		defer stop()
		cfg.Baseline = w
	}
	wt := &putErrors{Target: tg}
	res, err := loadgen.RunFanout(ctx, wt, cfg)
	if e := wt.first.Load(); e != nil {
		rec.putErr = *e
		logf("%s: first write error: %s", name, *e)
	}
	if err != nil {
		rec.err = err
		logf("%s: %v", name, err)
		return rec
	}
	rec.res = res
	if kw != nil {
		if c, ok := kw.cpu(); ok {
			rec.kafkaCPU = &c
		}
	}
	s := loadgen.Summarize(res)
	logf("%s: p50 %.2fms p99 %.2fms delivered %.2f%% dups %d, %d writes (%d failed) (%s)", name, s.DeliveryP50Ms, s.DeliveryP99Ms, s.DeliveredPct, s.Duplicates, s.Writes, s.WriteErrors, time.Since(t0).Round(time.Second))
	return rec
}
