package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/confgate/confgate/internal/loadgen"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
)

// consumerVerb is the hidden child `bench bootstrap` starts for its plain
// consumer, so that consumer's RSS is its own.
const consumerVerb = "bootstrap-consumer"

// addBenchScenarios adds the bootstrap, reconnect-storm and snapshot-herd
// scenarios under `confgate bench`.
func addBenchScenarios(parent *cobra.Command, g *globals) {
	parent.AddCommand(newBenchBootstrapCmd(parent, g), newBenchConsumerCmd(g), newBenchStormCmd(g), newBenchHerdCmd(g))
}

// benchServer is where to read a gateway's CPU and RSS.
type benchServer struct {
	pid        int
	metricsURL string
}

func (s *benchServer) register(cmd *cobra.Command, which string) {
	cmd.Flags().IntVar(&s.pid, "server-pid", 0, "pid of "+which+", when it runs on this machine: its CPU and RSS are read from /proc")
	cmd.Flags().StringVar(&s.metricsURL, "metrics-url", "", "Prometheus endpoint of "+which+" (http://HOST:9464/metrics): its CPU and RSS when --server-pid is not given")
}

func (s *benchServer) server() loadgen.Server {
	if s.pid > 0 {
		return loadgen.Server{PIDs: []int{s.pid}}
	}
	return loadgen.Server{MetricsURL: s.metricsURL}
}

// benchDial is how the scenarios dial gateways: the verbs' TLS settings
// and bearer token.
func benchDial(cmd *cobra.Command, g *globals, addrs []string) ([]grpc.DialOption, error) {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(g.creds)}
	if err := g.token.resolve(g.env.Getenv); err != nil {
		return nil, usagef(cmd, "%v", err)
	}
	if g.token.token != "" || g.token.file != "" {
		tlsOn := g.creds.Info().SecurityProtocol != "insecure"
		perRPC, err := g.token.credentials(addrs, tlsOn)
		if err != nil {
			return nil, usagef(cmd, "%v", err)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(perRPC))
	}
	return opts, nil
}

func benchLogf(g *globals) func(string, ...any) {
	return func(format string, args ...any) { g.log.Info(fmt.Sprintf(format, args...)) }
}

func mib(n int64) string { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }

func newBenchBootstrapCmd(parent *cobra.Command, g *globals) *cobra.Command {
	var (
		cfg          loadgen.BootstrapConfig
		brokers      []string
		size         int64
		readyTimeout time.Duration
		kafka        kafkaAuth
	)
	cmd := &cobra.Command{
		Use:   "bootstrap --brokers HOST:PORT --keys N --size BYTES [--fill]",
		Short: "Time a gateway's start on a large topic against a plain Kafka consumer",
		Long: `Measure what it costs a gateway to become ready on a topic of --keys entries
of --size bytes (100 MB: --keys 100000 --size 1KiB, or --keys 1000000
--size 100), next to a plain franz-go consumer of the same topic (no
consumer group, every partition from its start to the end offsets it saw
at start, key -> value kept in a map): the baseline of what any in-memory
index of the topic costs.

The topic is created compacted with --partitions when it is missing;
--fill writes the keys with a fast franz-go producer (murmur2
partitioning, acks=all), skipped when the topic's end offsets already sum
to --keys or more. Then, --runs times each, the consumer runs in a child
process (this binary's hidden 'bench bootstrap-consumer') and reports its
time and RSS, and a gateway ('confgate serve' in a child process, on free
ports) is timed from its start until /readyz answers 200, its RSS read
from /proc at that moment.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(brokers) == 0 {
				return usagef(cmd, "--brokers is required: the Kafka bootstrap servers, host:port[,...]")
			}
			if cfg.Keys <= 0 {
				return usagef(cmd, "--keys must be positive")
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Brokers, cfg.Size, cfg.ReadyTimeout = brokers, int(size), readyTimeout
			if cfg.Topic == "" {
				cfg.Topic = fmt.Sprintf("confgate.bench.bootstrap.%dx%d", cfg.Keys, cfg.Size)
			}
			if cfg.KafkaOpts, err = kafka.opts(g.env.Getenv); err != nil {
				return usagef(cmd, "%v", err)
			}
			// The children reach Kafka the same way (the SASL password
			// through the environment they inherit).
			path := strings.Fields(parent.CommandPath())[1:]
			cfg.ConsumerCommand = append(append(append([]string{exe}, path...), consumerVerb), kafka.args()...)
			cfg.GatewayCommand = append([]string{exe, "serve", "--log-level", "warn"}, kafka.args()...)
			cfg.Stderr = g.env.Stderr
			cfg.Logf = benchLogf(g)
			res, err := loadgen.RunBootstrap(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			rows := res.Summary()
			if g.json() {
				p := newPrinter(g.env.Stdout)
				for _, r := range rows {
					if err := p.JSON(struct {
						Topic  string `json:"topic"`
						Filled bool   `json:"filled"`
						loadgen.BootstrapSummary
					}{cfg.Topic, res.Filled, r}); err != nil {
						return err
					}
				}
				return nil
			}
			fill := "already held the keys"
			if res.Filled {
				fill = fmt.Sprintf("filled in %s", res.FillElapsed.Round(time.Millisecond))
			}
			fmt.Fprintf(g.env.Stdout, "topic %s: %d partitions, %d live keys, %s MiB live (keys + values); %s\n",
				cfg.Topic, res.Partitions, res.LiveKeys, mib(res.LiveBytes), fill)
			tw := tabwriter.NewWriter(g.env.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "run\tconsumer ms\tconsumer RSS MiB\t(delta)\tgateway ms\tgateway RSS MiB\tgateway/consumer time\tconsumer RSS/live\tgateway RSS/live\t")
			for _, r := range rows {
				fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%.0f\t%s\t%.2f\t%.2f\t%.2f\t\n", r.Run, r.ConsumerMS, mib(r.ConsumerRSS), mib(r.ConsumerRSSDelta),
					r.GatewayMS, mib(r.GatewayRSS), r.TimeRatio, r.ConsumerRSSRatio, r.GatewayRSSRatio)
			}
			return tw.Flush()
		},
	}
	fs := cmd.Flags()
	fs.StringSliceVar(&brokers, "brokers", nil, "Kafka bootstrap servers, host:port[,...] (required)")
	fs.StringVar(&cfg.Topic, "topic", "", "the topic (default confgate.bench.bootstrap.KEYSxSIZE)")
	fs.Int32Var(&cfg.Partitions, "partitions", 6, "partitions of the topic when it is created")
	fs.Int16Var(&cfg.ReplicationFactor, "replication-factor", -1, "replication factor of the topic when it is created; -1 takes the broker's default")
	fs.IntVar(&cfg.Keys, "keys", 100_000, "entries in the topic")
	size = 1 << 10
	fs.Var(byteSize{&size}, "size", "bytes of each value")
	fs.BoolVar(&cfg.Fill, "fill", false, "write the keys first, unless the topic already holds that many records")
	fs.IntVar(&cfg.Runs, "runs", 2, "runs of the consumer and of the gateway, each reported")
	fs.DurationVar(&readyTimeout, "ready-timeout", 10*time.Minute, "bound on each child (consumer done, gateway ready)")
	kafka.register(fs)
	return cmd
}

func newBenchConsumerCmd(g *globals) *cobra.Command {
	var (
		brokers []string
		topic   string
		kafka   kafkaAuth
	)
	cmd := &cobra.Command{
		Use:    consumerVerb + " --brokers HOST:PORT --topic NAME",
		Short:  "The plain consumer of `bench bootstrap`, in a process of its own; prints JSON",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(brokers) == 0 || topic == "" {
				return usagef(cmd, "--brokers and --topic are required")
			}
			opts, err := kafka.opts(g.env.Getenv)
			if err != nil {
				return usagef(cmd, "%v", err)
			}
			r, err := loadgen.RunConsumer(cmd.Context(), brokers, topic, opts...)
			if err != nil {
				return err
			}
			return json.NewEncoder(g.env.Stdout).Encode(r)
		},
	}
	cmd.Flags().StringSliceVar(&brokers, "brokers", nil, "Kafka bootstrap servers")
	cmd.Flags().StringVar(&topic, "topic", "", "the topic")
	kafka.register(cmd.Flags())
	return cmd
}

func newBenchStormCmd(g *globals) *cobra.Command {
	var (
		cfg  loadgen.StormConfig
		size int64
		srv  benchServer
	)
	cmd := &cobra.Command{
		Use:   "storm --addr A --to B [--subscribers N]",
		Short: "Reconnect storm: cut every subscriber of gateway A at once, resume them all on B",
		Long: `--subscribers subscribers (on --conns connections, default one each)
subscribe through gateway --addr (A), each to one of --prefixes prefixes,
get their snapshot and follow deltas, while --rate writes per second of
--size bytes go through gateway --to (B). After --warmup the tool cuts them
all at once: it closes every connection to A, or, with --kill-pid, kills
A's process with SIGKILL. Every subscriber then resumes on B at once with
the last cursor it received.

A subscriber is current once, after its resume, it has received a message
(snapshot end, delta or progress) whose cursor covers the head at the cut:
the position past every write acknowledged before the cut (the maximum of
the cursors Put answered) and past its own last cursor. Reported: the time
from the cut until all were current, the share that resumed without a
snapshot (their first message on B was a delta or progress), resume
latency (each Subscribe call on B to its first message), errors, and B's
CPU and peak RSS from the cut until all were current (--server-pid or
--metrics-url; with --metrics-url also B's resumes by outcome).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addrs, err := g.addrList()
			if err != nil {
				return err
			}
			if cfg.To == "" {
				return usagef(cmd, "--to is required: the gateway the subscribers resume on")
			}
			cfg.From, cfg.Size = addrs[0], int(size)
			if cfg.DialOptions, err = benchDial(cmd, g, []string{cfg.From, cfg.To}); err != nil {
				return err
			}
			cfg.Server, cfg.MetricsURL, cfg.Logf = srv.server(), srv.metricsURL, benchLogf(g)
			raiseNofile(g.log)
			res, err := loadgen.RunStorm(cmd.Context(), cfg)
			if res == nil {
				return err
			}
			if perr := printStorm(g, res.Summary()); perr != nil {
				return perr
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.To, "to", "", "gateway B, host:port: where subscribers resume and writes go (required)")
	fs.IntVar(&cfg.Subscribers, "subscribers", 10_000, "subscribers")
	fs.IntVar(&cfg.Conns, "conns", 0, "connections carrying them, on each gateway; 0: one per subscriber")
	fs.IntVar(&cfg.Prefixes, "prefixes", 10, "prefixes the subscribers and writes spread over")
	fs.StringVar(&cfg.KeyPrefix, "key-prefix", "bench/storm/", "put before every prefix")
	fs.Float64Var(&cfg.Rate, "rate", 50, "writes per second, before and during the storm")
	size = 1 << 10
	fs.Var(byteSize{&size}, "size", "bytes of each write")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "writes between everyone's snapshot and the cut")
	fs.DurationVar(&cfg.MaxWait, "max-wait", 2*time.Minute, "bound on subscribing, and on the storm after the cut")
	fs.IntVar(&cfg.KillPID, "kill-pid", 0, "at the cut, SIGKILL this process (gateway A, run locally) instead of closing the connections")
	srv.register(cmd, "gateway B")
	return cmd
}

func printStorm(g *globals, s loadgen.StormSummary) error {
	if g.json() {
		return newPrinter(g.env.Stdout).JSON(s)
	}
	tw := tabwriter.NewWriter(g.env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "subscribers\t%d on %d connections (%d subscribed before the cut)\n", s.Subscribers, s.Conns, s.Subscribed)
	fmt.Fprintf(tw, "current\t%d, all after %.1f ms (p50 %.1f ms, p99 %.1f ms)\n", s.Current, s.AllCurrentMS, s.CurrentP50MS, s.CurrentP99MS)
	fmt.Fprintf(tw, "resumed without snapshot\t%d of %d (%.1f%%)\n", s.WithoutSnapshot, s.Resumed, s.WithoutSnapshotPc)
	fmt.Fprintf(tw, "resume latency\tp50 %.1f ms, p99 %.1f ms, max %.1f ms\n", s.ResumeP50MS, s.ResumeP99MS, s.ResumeMaxMS)
	fmt.Fprintf(tw, "errors\t%d before the cut, %d resume attempts, %d after resuming\n", s.ErrorsBeforeCut, s.ResumeErrors, s.ErrorsAfterResume)
	if s.FirstError != "" {
		fmt.Fprintf(tw, "first error\t%s\n", oneLine(s.FirstError))
	}
	fmt.Fprintf(tw, "writes\t%d (%d failed)\n", s.Writes, s.WriteErrors)
	fmt.Fprintf(tw, "load tool\tCPU %.0f ms from the cut until all were current\n", s.ClientCPUMS)
	if s.ServerRSSMax > 0 {
		fmt.Fprintf(tw, "gateway B\tCPU %.0f ms, RSS %s MiB before, %s MiB peak\n", s.ServerCPUMS, mib(s.ServerRSSPre), mib(s.ServerRSSMax))
	}
	if s.Resumes != nil {
		fmt.Fprintf(tw, "gateway B resumes\thistory %d, diff %d, reset %d\n", s.Resumes["history"], s.Resumes["diff"], s.Resumes["reset"])
	}
	return tw.Flush()
}

func newBenchHerdCmd(g *globals) *cobra.Command {
	var (
		cfg  loadgen.HerdConfig
		size int64
		srv  benchServer
	)
	cmd := &cobra.Command{
		Use:   "herd --addr GATEWAY [--fill] [--clients N]",
		Short: "Snapshot herd: many clients call GetSnapshot on one prefix at once",
		Long: `--fill first writes --bytes of values (--bytes / --size keys) under --prefix
through the gateway, concurrently. Then --clients clients, each on its own
connection, all connected first, call GetSnapshot on --prefix at once.
Reported: each client's completion time (p50, p99, max), the time until
all were done, key and value bytes received (each client must receive
exactly the prefix's entries), errors, and the gateway's CPU and peak RSS
during the herd, sampled every 100 ms (--server-pid or --metrics-url).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addrs, err := g.addrList()
			if err != nil {
				return err
			}
			if size <= 0 || cfg.Bytes < size {
				return usagef(cmd, "--size must be positive and at most --bytes")
			}
			cfg.Addr, cfg.Size = addrs[0], int(size)
			if cfg.DialOptions, err = benchDial(cmd, g, addrs[:1]); err != nil {
				return err
			}
			cfg.Server, cfg.Logf = srv.server(), benchLogf(g)
			raiseNofile(g.log)
			res, err := loadgen.RunHerd(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			s := res.Summary()
			if g.json() {
				return newPrinter(g.env.Stdout).JSON(s)
			}
			tw := tabwriter.NewWriter(g.env.Stdout, 0, 0, 2, ' ', 0)
			if res.FillWrites > 0 {
				fmt.Fprintf(tw, "fill\t%d keys in %s\n", res.FillWrites, res.FillElapsed.Round(time.Millisecond))
			}
			fmt.Fprintf(tw, "prefix\t%s: %d entries, %s MiB (keys + values)\n", cfg.Prefix, s.Entries, mib(s.EntryBytes))
			fmt.Fprintf(tw, "clients\t%d: %d done, %d received every entry, %d errors\n", s.Clients, s.Done, s.Complete, s.Errors)
			if s.FirstError != "" {
				fmt.Fprintf(tw, "first error\t%s\n", oneLine(s.FirstError))
			}
			fmt.Fprintf(tw, "completion\tp50 %.1f ms, p99 %.1f ms, max %.1f ms; all done after %.1f ms\n", s.P50MS, s.P99MS, s.MaxMS, s.AllDoneMS)
			fmt.Fprintf(tw, "received\t%s MiB of entries (%s MiB on the wire), %.0f MB/s\n", mib(s.BytesReceived), mib(s.WireBytes), s.MBps)
			fmt.Fprintf(tw, "load tool\tCPU %.0f ms during the herd\n", s.ClientCPUMS)
			if s.ServerRSSMax > 0 {
				fmt.Fprintf(tw, "gateway\tCPU %.0f ms, RSS %s MiB before, %s MiB peak\n", s.ServerCPUMS, mib(s.ServerRSSPre), mib(s.ServerRSSMax))
			}
			return tw.Flush()
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Prefix, "prefix", "bench/herd/", "the prefix every client reads")
	fs.BoolVar(&cfg.Fill, "fill", false, "write --bytes under --prefix first")
	cfg.Bytes, size = 10_000<<10, 1<<10
	fs.Var(byteSize{&cfg.Bytes}, "bytes", "bytes of values --fill writes")
	fs.Var(byteSize{&size}, "size", "bytes of each value --fill writes")
	fs.IntVar(&cfg.FillConcurrency, "fill-concurrency", 64, "Put calls in flight while filling")
	fs.IntVar(&cfg.Clients, "clients", 1000, "clients, each on its own connection")
	fs.DurationVar(&cfg.MaxWait, "max-wait", 2*time.Minute, "bound on connecting, and on the herd")
	srv.register(cmd, "the gateway")
	return cmd
}
