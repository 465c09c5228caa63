package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/confgate/confgate/internal/loadgen"
)

func newBenchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a confgate deployment: fan-out latency, delivery, CPU and memory",
		Long: `Load a running confgate deployment (--addr, with the same TLS and token flags
as the other verbs) and measure it.

fanout, broadcast and sharded open many long-lived subscribers, each
watching one prefix, and write at a fixed rate from one open-loop writer
(every write is issued at its time, however slow earlier ones are). They
report, from the write call: delivery latency to every concerned subscriber
(p50, p99, p99.9, max), the time until all of them had a write (all-have
p99), the write's own round trip (put), the share of expected deliveries
made and the duplicates, and per million deliveries the gateway's CPU
(--server-pid or --metrics-url) and this process's CPU; the gateway's RSS
per subscriber is its growth from before the first subscriber to all of
them idle, divided by their number.

The same runs against etcd, NATS and Redis live in a separate module
(bench/peers) and are run with 'make benchmarks', which writes
docs/benchmarks.md.`,
	}
	cmd.AddCommand(
		newFanoutCmd(g, "fanout", "Fan-out: --subscribers over --prefixes, --rate writes per second", fanoutPreset{
			subscribers: 100, prefixes: 1, keys: 100, rate: 10, size: 1 << 10}),
		newFanoutCmd(g, "broadcast", "Broadcast preset: every subscriber watches one prefix (1,000 subscribers, 50 writes/s of 1 KiB over 100 keys)", fanoutPreset{
			subscribers: 1000, prefixes: 1, keys: 100, rate: 50, size: 1 << 10}),
		newFanoutCmd(g, "sharded", "Sharded preset: 10,000 subscribers over 1,000 prefixes, 2,000 writes/s of 1 KiB over 10,000 keys", fanoutPreset{
			subscribers: 10_000, prefixes: 1000, keys: 10_000, rate: 2000, size: 1 << 10}),
	)
	addBenchScenarios(cmd, g)
	var cpuProfile string
	cmd.PersistentFlags().StringVar(&cpuProfile, "cpu-profile", "", "write this process's CPU profile (pprof) to FILE: where the load tool itself spends its time, e.g. the Go client library in --mode client")
	for _, sub := range cmd.Commands() {
		run := sub.RunE
		if run == nil {
			continue
		}
		sub.RunE = func(c *cobra.Command, args []string) error {
			if cpuProfile == "" {
				return run(c, args)
			}
			f, err := os.Create(cpuProfile)
			if err != nil {
				return fmt.Errorf("cpu profile: %w", err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return fmt.Errorf("cpu profile: %w", err)
			}
			err = run(c, args)
			pprof.StopCPUProfile()
			if cerr := f.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("cpu profile: %w", cerr)
			}
			return err
		}
	}
	return cmd
}

// fanoutPreset are a fan-out verb's flag defaults.
type fanoutPreset struct {
	subscribers, prefixes, keys int
	rate                        float64
	size                        int64
}

func newFanoutCmd(g *globals, name, short string, p fanoutPreset) *cobra.Command {
	cfg := loadgen.FanoutConfig{}
	var (
		size       = p.size
		mode       string
		pids       []int
		metricsURL string
		rawBrokers []string
		rawTopic   string
		putConns   int
	)
	cmd := &cobra.Command{
		Use:   name + " [flags]",
		Short: short,
		Long: short + `.

Subscriber i watches KEY-PREFIX + "p<i % prefixes>/"; write j goes to
"<prefix of j % prefixes>k<j % keys>". Values carry a write id and the
write call's time in their first 16 bytes. --warmup writes come first and
are not counted; then --duration of measured writes, then up to --drain for
the last deliveries (less when everything arrived). --mode stub subscribes
with the raw gRPC stub (many subscribers may share a connection, --conns);
--mode client with the Go client library (one connection per subscriber).
Writes use the Put RPC on --put-conns connections of their own. With
--baseline-brokers a plain franz-go producer writes alongside each
measured write, so the Put round trip can be compared with Kafka's own
under the same load.

Server figures need --server-pid (a local gateway; repeat for several) or
--metrics-url (its admin /metrics endpoint); without them they show "-".
RSS per subscriber is only meaningful on a freshly started gateway: one
that served earlier runs may hold memory it has not returned yet, and the
figure can then even be negative. Nothing here judges the figures: compare them in docs/benchmarks.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addrs, err := g.addrList()
			if err != nil {
				return err
			}
			if cfg.Subscribers < 1 || cfg.Prefixes < 1 || cfg.Keys < 1 || cfg.Conns < 0 {
				return usagef(cmd, "--subscribers, --prefixes and --keys must be positive, --conns not negative")
			}
			if !(cfg.Rate > 0) || cfg.Duration <= 0 || cfg.Warmup < 0 || cfg.Drain < 0 {
				return usagef(cmd, "--rate and --duration must be positive, --warmup and --drain not negative")
			}
			if size < loadgen.PayloadHeader || size > 1<<30 {
				return usagef(cmd, "--size must be at least %d bytes", loadgen.PayloadHeader)
			}
			if mode != loadgen.ModeStub && mode != loadgen.ModeClient {
				return usagef(cmd, "--mode %q: want stub or client", mode)
			}
			cfg.Size = int(size)
			dial, err := fanoutDial(cmd, g, addrs)
			if err != nil {
				return err
			}
			raiseNofile(g.log)
			ctx := cmd.Context()
			octx, cancel := g.callContext(ctx)
			t, err := loadgen.NewConfgate(octx, loadgen.ConfgateOptions{
				Addrs: addrs, DialOptions: dial, Mode: mode, PutConns: putConns,
				Server: loadgen.Server{PIDs: pids, MetricsURL: metricsURL},
			})
			cancel()
			if err != nil {
				return err
			}
			defer t.Close()
			if len(rawBrokers) > 0 {
				w, stop, err := loadgen.KafkaWriter(ctx, rawBrokers, rawTopic, 6)
				if err != nil {
					return err
				}
				defer stop()
				cfg.Baseline = w
			}
			g.log.Info("bench: opening subscribers", "target", t.Name(), "subscribers", cfg.Subscribers, "prefixes", cfg.Prefixes, "rate", cfg.Rate, "duration", cfg.Duration)
			res, err := loadgen.RunFanout(ctx, t, cfg)
			if err != nil {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				return err
			}
			g.log.Info("bench: done", "connect", res.ConnectTime.Round(time.Millisecond), "elapsed", res.Elapsed.Round(time.Millisecond))
			if g.json() {
				return newPrinter(g.env.Stdout).JSON(loadgen.Summarize(res))
			}
			return loadgen.WriteText(g.env.Stdout, []*loadgen.FanoutResult{res})
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Subscribers, "subscribers", p.subscribers, "subscribers, each watching one prefix")
	f.IntVar(&cfg.Conns, "conns", 0, "connections carrying the subscribers, round-robin (stub mode); 0: one per subscriber")
	f.IntVar(&cfg.Prefixes, "prefixes", p.prefixes, "prefixes the subscribers and writes spread over")
	f.IntVar(&cfg.Keys, "keys", p.keys, "keys the writes spread over")
	f.Float64Var(&cfg.Rate, "rate", p.rate, "writes per second (open loop)")
	f.Var(byteSize{&size}, "size", "bytes of each value, at least 16 (units: KiB, MiB)")
	f.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured writing time")
	f.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "writes before the measured ones, not counted")
	f.DurationVar(&cfg.Drain, "drain", 10*time.Second, "longest wait after the last write for deliveries")
	f.StringVar(&cfg.KeyPrefix, "key-prefix", "bench/", "put before every prefix, so a run can share a deployment")
	f.StringVar(&mode, "mode", loadgen.ModeStub, "how subscribers subscribe: stub (raw gRPC stub) or client (the Go client library)")
	f.IntSliceVar(&pids, "server-pid", nil, "pid of a gateway on this machine whose CPU and RSS are read from /proc; repeat (or comma-separate) for several, summed")
	f.StringVar(&metricsURL, "metrics-url", "", "Prometheus endpoint of the gateway (http://HOST:9464/metrics): its own time to answer a Put (gw put columns), and its CPU and RSS when --server-pid is not given")
	f.IntVar(&cfg.ConnectParallelism, "connect-parallelism", loadgen.DefaultConnectParallelism, "subscribers (and connections) being opened at once")
	f.IntVar(&putConns, "put-conns", 4, "connections carrying the writes, round-robin; each carries at most the gateway's --max-streams-per-conn writes at once, so raise it for high rates with slow answers")
	f.StringSliceVar(&rawBrokers, "baseline-brokers", nil, "Kafka brokers for a plain franz-go producer (acks=all) writing alongside every measured write, same size, to --baseline-topic: the write path's floor under the same load (raw put columns)")
	f.StringVar(&rawTopic, "baseline-topic", "confgate-bench-baseline", "topic of --baseline-brokers' writes, created when absent; never the config topic")
	f.IntVar(&cfg.MaxInFlight, "max-in-flight", loadgen.DefaultMaxInFlight, "writes awaiting their answer at once; a write due past it is not issued and counts as an error")
	return cmd
}

// fanoutDial is how the fan-out verbs dial: the verbs' TLS settings and
// bearer token (resolved here: the root resolves it only for the verbs
// that always call a gateway).
func fanoutDial(cmd *cobra.Command, g *globals, addrs []string) ([]grpc.DialOption, error) {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(g.creds)}
	if err := g.token.resolve(g.env.Getenv); err != nil {
		return nil, usagef(cmd, "%v", err)
	}
	tlsOn := g.creds.Info().SecurityProtocol != "insecure"
	perRPC, err := g.token.credentials(addrs, tlsOn)
	if err != nil {
		return nil, usagef(cmd, "%v", err)
	}
	if perRPC != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(perRPC))
	}
	return opts, nil
}
