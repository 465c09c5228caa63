package loadgen

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/testkit"
	"github.com/confgate/confgate/node"
	"github.com/confgate/confgate/store"
)

// childEnv makes this test binary act as a bootstrap child: "consumer"
// (RunConsumer, JSON on stdout) or "gateway" (a node, like `confgate
// serve`, with the flags RunBootstrap appends).
const childEnv = "LOADGEN_TEST_CHILD"

func init() {
	switch os.Getenv(childEnv) {
	case "consumer":
		os.Exit(testConsumerChild(os.Args[1:]))
	case "gateway":
		os.Exit(testGatewayChild(os.Args[1:]))
	}
}

func childFlags(args []string, extra func(*flag.FlagSet)) (brokers, topic string, err error) {
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	fs.StringVar(&brokers, "brokers", "", "")
	fs.StringVar(&topic, "topic", "", "")
	if extra != nil {
		extra(fs)
	}
	return brokers, topic, fs.Parse(args)
}

func testConsumerChild(args []string) int {
	brokers, topic, err := childFlags(args, nil)
	if err != nil {
		return 2
	}
	r, err := RunConsumer(context.Background(), strings.Split(brokers, ","), topic)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

func testGatewayChild(args []string) int {
	var listen, admin string
	brokers, topic, err := childFlags(args, func(fs *flag.FlagSet) {
		fs.StringVar(&listen, "listen", "", "")
		fs.StringVar(&admin, "admin-listen", "", "")
	})
	if err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	n, err := node.Start(ctx, node.Config{
		Store:  store.Config{Brokers: strings.Split(brokers, ","), Topic: topic},
		Listen: listen, AdminListen: admin,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-n.Done()
	return 0
}

func TestRunBootstrap(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The children tell what they are by their first argument's
	// environment: run them through env(1) so both can differ.
	consumer := []string{"env", childEnv + "=consumer", exe}
	gateway := []string{"env", childEnv + "=gateway", exe}
	const keys, size = 3000, 100
	keyLen := len("bench/bootstrap/k00000000")
	for _, tc := range []struct {
		name       string
		runs       int
		wantFilled bool
	}{
		{"fills a new topic", 2, true},
		{"skips the fill when the topic holds the keys", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := RunBootstrap(ctx, BootstrapConfig{
				Brokers: k.Brokers, Topic: topic, Partitions: 3, Keys: keys, Size: size, Fill: true, Runs: tc.runs,
				ConsumerCommand: consumer, GatewayCommand: gateway, Stderr: testWriter{t},
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Filled != tc.wantFilled || res.Partitions != 3 {
				t.Errorf("filled %v, partitions %d; want %v, 3", res.Filled, res.Partitions, tc.wantFilled)
			}
			if want := int64(keys * (keyLen + size)); res.LiveKeys != keys || res.LiveBytes != want {
				t.Errorf("live keys %d, bytes %d; want %d, %d", res.LiveKeys, res.LiveBytes, keys, want)
			}
			if len(res.Consumer) != tc.runs || len(res.Gateway) != tc.runs {
				t.Fatalf("%d consumer and %d gateway runs, want %d each", len(res.Consumer), len(res.Gateway), tc.runs)
			}
			for i, c := range res.Consumer {
				if c.Records != keys || c.Keys != keys || c.Elapsed <= 0 || c.RSS < 1<<20 {
					t.Errorf("consumer run %d: %+v", i, c)
				}
			}
			for i, g := range res.Gateway {
				if g.Ready <= 0 || g.RSS < 1<<20 {
					t.Errorf("gateway run %d: %+v", i, g)
				}
			}
			sum := res.Summary()
			if len(sum) != tc.runs || sum[0].LiveBytes != res.LiveBytes || sum[0].TimeRatio <= 0 || sum[0].GatewayRSSRatio <= 0 {
				t.Errorf("summary %+v", sum)
			}
		})
	}
}

func TestBootstrapConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  BootstrapConfig
		want string
	}{
		{"no brokers", BootstrapConfig{Topic: "t"}, "no brokers"},
		{"no topic", BootstrapConfig{Brokers: []string{"x"}}, "no topic"},
		{"fill without keys", BootstrapConfig{Brokers: []string{"x"}, Topic: "t", Fill: true}, "--fill"},
		{"no commands", BootstrapConfig{Brokers: []string{"x"}, Topic: "t"}, "required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RunBootstrap(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if os.Getenv("CONFGATE_TEST_VERBOSE") != "" {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
