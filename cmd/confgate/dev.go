package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/confgate/confgate/examples/seed"
	"github.com/confgate/confgate/store"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"
)

// seedApplyTimeout bounds waiting for the gateway to apply the seed it
// just wrote.
const seedApplyTimeout = 30 * time.Second

// embeddedSeedName is how logs and errors name the built-in seed.
const embeddedSeedName = "the built-in sample (examples/seed/sample.json)"

type devOptions struct {
	server    serverFlags
	kafkaPort int
	seedFile  string
	noSeed    bool
}

func newDevCmd(g *globals) *cobra.Command {
	o := &devOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a gateway with an embedded Kafka broker and sample data: no Kafka needed",
		Long: `Run everything in one process for development and demos: an embedded
Kafka-protocol broker (franz-go's kfake) on 127.0.0.1, a compacted topic, a
gateway on --listen, loaded with a sample configuration of a few services.

The embedded broker is for development only: its state is in memory and lost
on exit. For anything else run Apache Kafka and confgate serve.

Then, in another terminal:
  confgate get payments/db/timeout
  confgate watch payments/
  confgate put payments/db/timeout 7s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd, g, o)
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&o.kafkaPort, "kafka-port", 0, "port of the embedded Kafka broker on 127.0.0.1, for Kafka tools (default 0: a free port)")
	fs.StringVar(&o.server.topic, "topic", "confgate.config", "the config topic, created compacted in the embedded broker")
	fs.StringVar(&o.seedFile, "seed", "", "load this seed file instead of the built-in sample (format: see examples/seed)")
	fs.BoolVar(&o.noSeed, "no-seed", false, "start empty, without the sample")
	o.server.register(fs)
	return cmd
}

func runDev(cmd *cobra.Command, g *globals, o *devOptions) error {
	if o.seedFile != "" && o.noSeed {
		return usagef(cmd, "--seed and --no-seed exclude each other")
	}
	if o.kafkaPort < 0 || o.kafkaPort > 65535 {
		return usagef(cmd, "--kafka-port %d is not a port", o.kafkaPort)
	}
	if o.server.cacheBytes < 0 {
		return usagef(cmd, "--cache-bytes must not be negative")
	}
	// Read the seed before starting anything: a bad file fails fast.
	seedName, data := embeddedSeedName, seed.Sample
	if o.seedFile != "" {
		var err error
		if data, err = os.ReadFile(o.seedFile); err != nil {
			return fmt.Errorf("read the seed: %w", err)
		}
		seedName = o.seedFile
	}
	writes, err := parseSeed(seedName, data)
	if err != nil {
		return err
	}
	if o.noSeed {
		writes = nil
	}
	sc, err := o.server.storeConfig()
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	gc, err := o.server.gatewayConfig(g.log)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	log := g.log

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(o.kafkaPort))
	if err != nil {
		return fmt.Errorf("start the embedded Kafka broker on port %d (--kafka-port): %w", o.kafkaPort, err)
	}
	defer cluster.Close()
	sc.Brokers = cluster.ListenAddrs()
	sc.CreateTopic = true
	log.Warn("embedded Kafka broker started: for development only, its state is in memory and lost on exit",
		"kafka", strings.Join(sc.Brokers, ","))

	ctx := cmd.Context()
	n, err := startNode(ctx, log, sc, gc, o.server.fleetConfig(), o.server.listen, o.server.adminListen)
	if err != nil {
		return err
	}
	if err := devLoad(ctx, n, writes, seedName); err != nil {
		n.Stop()
		if werr := n.wait(); werr != nil {
			return werr
		}
		if ctx.Err() != nil {
			return nil // interrupted while starting
		}
		return err
	}
	st := n.st.Status()
	log.Info("ready", "grpc", n.addrs.GRPC, "admin", n.addrs.Admin, "entries", st.Entries, "cursor", st.Cursor.String())
	if err := devBanner(g, n.addrs, len(writes), seedName); err != nil {
		n.Stop()
		_ = n.wait()
		return err
	}
	if g.env.Started != nil {
		g.env.Started(n.addrs)
	}
	return n.wait()
}

// devLoad waits for the store, writes the seed and waits until the gateway
// has applied it.
func devLoad(ctx context.Context, n *node, writes []store.Write, seedName string) error {
	if err := n.waitReady(ctx); err != nil {
		return err
	}
	if len(writes) == 0 {
		return nil
	}
	c, err := loadSeed(ctx, n.st, writes)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, seedApplyTimeout)
	defer cancel()
	if err := n.st.WaitApplied(wctx, c); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("seed written but not applied within %s: %w", seedApplyTimeout, err)
	}
	n.log.Info("seed loaded", "entries", len(writes), "from", seedName)
	return nil
}

// devBanner tells a person where things are and what to try.
func devBanner(g *globals, a Addrs, seeded int, seedName string) error {
	p := newPrinter(g.env.Stdout)
	if g.json() {
		return p.JSON(struct {
			Ready  bool     `json:"ready"`
			GRPC   string   `json:"grpc"`
			Admin  string   `json:"admin,omitempty"`
			Kafka  []string `json:"kafka"`
			Topic  string   `json:"topic"`
			Seeded int      `json:"seeded_entries"`
		}{true, a.GRPC, a.Admin, a.Kafka, a.Topic, seeded})
	}
	addrFlag := ""
	if a.GRPC != defaultAddr {
		addrFlag = " --addr " + a.GRPC
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nconfgate dev is ready")
	if seeded > 0 {
		fmt.Fprintf(&b, ": %d entries loaded from %s", seeded, seedName)
	}
	fmt.Fprintf(&b, "\n\n  gRPC   %s\n", a.GRPC)
	if a.Admin != "" {
		fmt.Fprintf(&b, "  admin  http://%s  (/readyz, /debug/state, /metrics)\n", a.Admin)
	}
	fmt.Fprintf(&b, "  Kafka  %s  topic %s  (embedded, in memory, for development only)\n", strings.Join(a.Kafka, ","), a.Topic)
	fmt.Fprintf(&b, "\nTry, in another terminal:\n")
	fmt.Fprintf(&b, "  confgate%s get payments/db/timeout\n", addrFlag)
	fmt.Fprintf(&b, "  confgate%s watch payments/\n", addrFlag)
	fmt.Fprintf(&b, "  confgate%s put payments/db/timeout 7s\n", addrFlag)
	fmt.Fprintf(&b, "\nCtrl-C stops it; everything written is lost on exit.\n")
	return p.Raw([]byte(b.String()))
}
