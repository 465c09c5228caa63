package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/loadgen"
	"github.com/confgate/confgate/internal/testkit"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc/credentials/insecure"
)

// benchMainEnv makes this test binary act as the confgate binary, for the
// child processes the bench scenarios start (serve, the bootstrap
// consumer) and for gateways the tests run in a process of their own.
const benchMainEnv = "CONFGATE_BENCH_TEST_MAIN"

func init() {
	if os.Getenv(benchMainEnv) == "" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	env := &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	code := runBenchArgs(ctx, os.Args[1:], env, "", "text")
	stop()
	os.Exit(code)
}

// hasBench reports whether the root command already has `bench` (its
// parent command, written separately).
func hasBench(env *Env) bool {
	for _, c := range newRootCmd(env).Commands() {
		if c.Name() == "bench" {
			return true
		}
	}
	return false
}

// runBenchArgs runs a command line. Where the root has no `bench` yet, the
// scenarios run under a bare `bench` parent with globals set here (addr,
// output), the way the root would set them.
func runBenchArgs(ctx context.Context, args []string, env *Env, addr, output string) int {
	if len(args) > 0 && args[0] == "serve" || hasBench(env) {
		if args[0] == "bench" {
			args = append(args, "-o", output)
			if addr != "" {
				args = append(args, "--addr", addr)
			}
		}
		return run(ctx, args, env)
	}
	if len(args) > 0 && args[0] == "bench" {
		args = args[1:]
	}
	g := &globals{env: env, addr: addr, output: output, timeout: 10 * time.Second, creds: insecure.NewCredentials(),
		log: slog.New(slog.NewTextHandler(env.Stderr, nil))}
	parent := &cobra.Command{Use: "bench", SilenceUsage: true, SilenceErrors: true}
	parent.SetOut(env.Stdout)
	parent.SetErr(env.Stderr)
	addBenchScenarios(parent, g)
	parent.SetArgs(args)
	if err := parent.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(env.Stderr, "confgate: %s\n", oneLine(err.Error()))
		return exitFailure
	}
	return exitOK
}

// bench runs `confgate bench ARGS` in process.
func bench(t *testing.T, addr, output string, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	env := &Env{Stdin: bytes.NewReader(nil), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	code := runBenchArgs(ctx, append([]string{"bench"}, args...), env, addr, output)
	return result{code, out.String(), errb.String()}
}

func benchJSON[T any](t *testing.T, r result) []T {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, stderr: %s", r.code, r.stderr)
	}
	var out []T
	for line := range strings.SplitSeq(strings.TrimSpace(r.stdout), "\n") {
		var v T
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		out = append(out, v)
	}
	return out
}

func TestBenchBootstrapCommand(t *testing.T) {
	t.Setenv(benchMainEnv, "1") // the children are this binary
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	const keys, size = 2000, 200
	live := int64(keys * (len("bench/bootstrap/k00000000") + size))
	args := []string{"bootstrap", "--brokers", strings.Join(k.Brokers, ","), "--topic", topic, "--partitions", "3",
		"--keys", strconv.Itoa(keys), "--size", strconv.Itoa(size), "--fill", "--runs", "1"}
	type row struct {
		Filled bool `json:"filled"`
		loadgen.BootstrapSummary
	}
	rows := benchJSON[row](t, bench(t, "", "json", args...))
	if len(rows) != 1 || !rows[0].Filled || rows[0].LiveBytes != live || rows[0].Partitions != 3 {
		t.Fatalf("rows %+v; want one, filled, %d live bytes, 3 partitions", rows, live)
	}
	r := rows[0]
	if r.ConsumerMS <= 0 || r.ConsumerRSS < 1<<20 || r.GatewayMS <= 0 || r.GatewayRSS < 1<<20 || r.TimeRatio <= 0 {
		t.Errorf("figures %+v", r)
	}
	// Again, as text: the topic holds the keys, no fill.
	out := bench(t, "", "text", append(args, "--runs", "2")...)
	if out.code != 0 || !strings.Contains(out.stdout, "already held the keys") || !strings.Contains(out.stdout, "gateway RSS/live") ||
		strings.Count(out.stdout, "\n") != 4 {
		t.Errorf("exit %d, stdout:\n%s\nstderr: %s", out.code, out.stdout, out.stderr)
	}
}

// startServeProcess runs `confgate serve` (this test binary) in a process
// of its own and waits until it is ready.
func startServeProcess(t *testing.T, k *testkit.Kafka, topic string) (cmd *exec.Cmd, grpcAddr string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p1, err1 := loadgen.FreePort()
	p2, err2 := loadgen.FreePort()
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	grpcAddr, admin := fmt.Sprintf("127.0.0.1:%d", p1), fmt.Sprintf("127.0.0.1:%d", p2)
	cmd = exec.Command(exe, "serve", "--brokers", strings.Join(k.Brokers, ","), "--topic", topic, "--create-topic",
		"--listen", grpcAddr, "--admin-listen", admin, "--log-level", "warn")
	cmd.Env = append(os.Environ(), benchMainEnv+"=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	testkit.Eventually(t, 30*time.Second, "serve ready", func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return cmd, grpcAddr
}

func TestBenchStormCommandKillsGatewayA(t *testing.T) {
	t.Setenv(benchMainEnv, "1")
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	b := testkit.StartGateway(t, k, topic, testkit.Options{})
	a, aAddr := startServeProcess(t, k, topic)
	const subs = 30
	rows := benchJSON[loadgen.StormSummary](t, bench(t, aAddr, "json", "storm", "--to", b.Addr,
		"--subscribers", strconv.Itoa(subs), "--conns", "3", "--prefixes", "3", "--rate", "50", "--size", "128",
		"--warmup", "300ms", "--max-wait", "20s", "--kill-pid", strconv.Itoa(a.Process.Pid),
		"--metrics-url", "http://"+b.Admin+"/metrics"))
	s := rows[0]
	if s.Subscribed != subs || s.Current != subs || s.Resumed != subs || s.WithoutSnapshot != subs || s.WithoutSnapshotPc != 100 {
		t.Errorf("summary %+v; want all %d subscribed, current and resumed without snapshot", s, subs)
	}
	if s.Resumes["history"]+s.Resumes["diff"] != subs || s.Resumes["reset"] != 0 {
		t.Errorf("gateway B counted resumes %v, want %d without a reset", s.Resumes, subs)
	}
	if s.ErrorsBeforeCut != 0 || s.ResumeErrors != 0 || s.ErrorsAfterResume != 0 || s.WriteErrors != 0 || s.Writes == 0 {
		t.Errorf("errors or writes: %+v", s)
	}
	// A is gone: killed, not drained.
	if err := a.Process.Signal(syscall.Signal(0)); err == nil {
		if ps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.Process.Pid)); !strings.Contains(string(ps), ") Z") {
			t.Errorf("gateway A (pid %d) still runs", a.Process.Pid)
		}
	}
}

func TestBenchHerdCommand(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	const clients, keys, size = 10, 100, 512
	rows := benchJSON[loadgen.HerdSummary](t, bench(t, g.Addr, "json", "herd", "--fill", "--bytes", strconv.Itoa(keys*size),
		"--size", strconv.Itoa(size), "--clients", strconv.Itoa(clients), "--server-pid", strconv.Itoa(os.Getpid())))
	s := rows[0]
	entryBytes := int64(keys * (len("bench/herd/k000000") + size))
	if s.Entries != keys || s.EntryBytes != entryBytes || s.Done != clients || s.Complete != clients || s.Errors != 0 ||
		s.BytesReceived != clients*entryBytes || s.ServerRSSMax < 1<<20 || s.P50MS <= 0 {
		t.Errorf("summary %+v; want %d clients with %d entries of %d bytes each", s, clients, keys, entryBytes)
	}
	out := bench(t, g.Addr, "text", "herd", "--clients", "3")
	if out.code != 0 || !strings.Contains(out.stdout, "3 received every entry") {
		t.Errorf("exit %d, stdout:\n%s\nstderr: %s", out.code, out.stdout, out.stderr)
	}
}

func TestBenchScenarioUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"storm"}, "--to is required"},
		{[]string{"bootstrap"}, "--brokers is required"},
		{[]string{"bootstrap", "--brokers", "x", "--keys", "0"}, "--keys must be positive"},
		{[]string{"herd", "--size", "0"}, "--size must be positive"},
		{[]string{"bootstrap-consumer"}, "--brokers and --topic are required"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := bench(t, "127.0.0.1:1", "text", tc.args...)
			if r.code != exitFailure || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, exitFailure, tc.want)
			}
		})
	}
}

// bench bootstrap reaches a Kafka that needs SASL, and so do its consumer
// and gateway children: the flags are passed on, the password through the
// environment they inherit.
func TestBenchBootstrapKafkaSASL(t *testing.T) {
	t.Setenv(benchMainEnv, "1") // the children are this binary
	k, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "bench-svc", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	t.Setenv(kafkaPasswordEnv, "s3cret")
	args := []string{"bench", "bootstrap", "--brokers", strings.Join(k.ListenAddrs(), ","), "--topic", "boot", "--partitions", "2",
		"--keys", "300", "--size", "64", "--fill", "--runs", "1", "--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-user", "bench-svc"}
	run := func(args []string) result {
		var out, errb syncBuffer
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
		defer cancel()
		env := &Env{Stdin: bytes.NewReader(nil), Stdout: &out, Stderr: &errb, Getenv: os.Getenv}
		code := runBenchArgs(ctx, args, env, "", "json")
		return result{code, out.String(), errb.String()}
	}
	rows := benchJSON[loadgen.BootstrapSummary](t, run(args))
	if len(rows) != 1 || rows[0].LiveBytes != 300*int64(len("bench/bootstrap/k00000000")+64) || rows[0].GatewayMS <= 0 || rows[0].ConsumerMS <= 0 {
		t.Fatalf("rows %+v", rows)
	}
	// Without the credentials the fill cannot reach Kafka.
	if r := run(args[:len(args)-4]); r.code == 0 {
		t.Fatalf("bootstrap without SASL succeeded: %s", r.stdout)
	}
}

func TestKafkaAuthArgsRoundTrip(t *testing.T) {
	for _, in := range []kafkaAuth{
		{},
		{tls: true},
		{ca: "/ca.pem", cert: "/c.pem", key: "/k.pem", serverName: "kafka.internal"},
		{mechanism: "SCRAM-SHA-512", user: "svc"},
	} {
		var out kafkaAuth
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		out.register(fs)
		if err := fs.Parse(in.args()); err != nil {
			t.Fatal(err)
		}
		if out != in {
			t.Errorf("args %q parse to %+v, want %+v", in.args(), out, in)
		}
	}
}
