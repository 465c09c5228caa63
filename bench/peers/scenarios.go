package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/confgate/confgate/internal/loadgen"
)

// The confgate-only scenarios (internal/loadgen's RunBootstrap, RunStorm
// and RunHerd), run once per --runs against the run's Kafka.

// Their sizes.
const (
	stormSubscribers = 10000
	stormPrefixes    = 10
	herdClients      = 1000
)

// scenarioRecord is one scenario run: its summary rows (structs with json
// tags, shown field by field) or its error.
type scenarioRecord struct {
	name string
	run  int
	desc string
	rows []any
	err  error
}

func runScenario(ctx context.Context, name string, env *confgateEnv, run int) scenarioRecord {
	rec := scenarioRecord{name: name, run: run}
	logf("scenario %s (run %d): starting", name, run)
	t0 := time.Now()
	switch name {
	case "bootstrap":
		rec.desc = "about 100 MB of live config (100,000 keys of 1 KiB, then 1,000,000 keys of 100 bytes) in a compacted topic, read to its end by a plain franz-go consumer and by a gateway until /readyz (each a child process)"
		exe, err := selfExe()
		if err != nil {
			rec.err = err
			break
		}
		for _, c := range []struct{ keys, size int }{{100000, 1024}, {1000000, 100}} {
			res, err := loadgen.RunBootstrap(ctx, loadgen.BootstrapConfig{
				Brokers: env.brokers, Topic: newTopic("bootstrap"), Keys: c.keys, Size: c.size,
				Fill: true, Runs: 1,
				ConsumerCommand: []string{exe, "consume-kafka"},
				GatewayCommand:  append([]string{env.bin, "serve", "--log-level", "warn"}, gatewayLimits...),
				Logf:            logf,
			})
			if err != nil {
				rec.err = fmt.Errorf("%d keys of %d bytes: %w", c.keys, c.size, err)
				break
			}
			for _, s := range res.Summary() {
				rec.rows = append(rec.rows, s)
			}
		}
	case "storm":
		rec.desc = fmt.Sprintf("%d subscribers over %d prefixes on gateway A, which is SIGKILLed; all resume on gateway B with their cursors while writes go on", stormSubscribers, stormPrefixes)
		topic := newTopic("storm")
		a, err := env.startGateway(ctx, topic, "storm-a")
		if err != nil {
			rec.err = err
			break
		}
		defer a.Stop()
		b, err := env.startGateway(ctx, topic, "storm-b")
		if err != nil {
			rec.err = err
			break
		}
		defer b.Stop()
		res, err := loadgen.RunStorm(ctx, loadgen.StormConfig{
			From: a.addr, To: b.addr, Subscribers: stormSubscribers, Prefixes: stormPrefixes,
			KillPID: a.PID(), Server: loadgen.Server{PIDs: []int{b.PID()}},
			MetricsURL: "http://" + b.admin + "/metrics", Logf: logf,
		})
		if err != nil {
			rec.err = err
			break
		}
		rec.rows = append(rec.rows, res.Summary())
	case "herd":
		rec.desc = fmt.Sprintf("%d clients, each on its own connection, ask one gateway for the same ~10 MB prefix snapshot at once", herdClients)
		g, err := env.startGateway(ctx, newTopic("herd"), "herd")
		if err != nil {
			rec.err = err
			break
		}
		defer g.Stop()
		res, err := loadgen.RunHerd(ctx, loadgen.HerdConfig{
			Addr: g.addr, Fill: true, Clients: herdClients,
			Server: loadgen.Server{PIDs: []int{g.PID()}}, Logf: logf,
		})
		if err != nil {
			rec.err = err
			break
		}
		rec.rows = append(rec.rows, res.Summary())
	}
	if rec.err != nil {
		logf("scenario %s: %v", name, rec.err)
	} else {
		logf("scenario %s: done in %s", name, time.Since(t0).Round(time.Second))
	}
	return rec
}

// consumeKafka is the hidden mode RunBootstrap's consumer child runs:
// `peers consume-kafka --brokers B --topic T` reads the topic to its end
// and prints the ConsumerRun as JSON.
func consumeKafka(args []string) error {
	fs := flag.NewFlagSet("consume-kafka", flag.ContinueOnError)
	brokers := fs.String("brokers", "", "Kafka bootstrap servers")
	topic := fs.String("topic", "", "topic")
	if err := fs.Parse(args); err != nil {
		return err
	}
	run, err := loadgen.RunConsumer(context.Background(), strings.Split(*brokers, ","), *topic)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(run)
}
