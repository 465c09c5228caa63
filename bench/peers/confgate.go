package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confgate/confgate/internal/loadgen"
)

// repoRoot finds the confgate repository above the working directory (the
// directory holding scripts/kafka.sh and cmd/confgate).
func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "scripts", "kafka.sh")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "cmd", "confgate")); err == nil {
				return d, nil
			}
		}
		up := filepath.Dir(d)
		if up == d {
			return "", fmt.Errorf("no confgate repository (scripts/kafka.sh) above the working directory")
		}
		d = up
	}
}

// kafkaVersion reads the Kafka version scripts/kafka.sh runs (its pom's
// kafka.version property: the element, not a comment that names it).
func kafkaVersion(root string) string {
	b, err := os.ReadFile(filepath.Join(root, "scripts", "kafka", "pom.xml"))
	if err != nil {
		return "unknown"
	}
	m := kafkaVersionRE.FindSubmatch(b)
	if m == nil {
		return "unknown"
	}
	return string(m[1])
}

var kafkaVersionRE = regexp.MustCompile(`(?m)^\s*<kafka\.version>([^<\s]+)</kafka\.version>`)

// confgateEnv is what every confgate target of a run uses: one Kafka (ours,
// or the one CONFGATE_KAFKA_BROKERS names) and a confgate binary.
type confgateEnv struct {
	root    string
	tmp     string
	bin     string
	brokers []string
	// runDir is the Kafka run directory when we started Kafka ("" when
	// CONFGATE_KAFKA_BROKERS named one), kafkaPID its broker's PID (0 when
	// unknown: then no "+ Kafka" CPU).
	runDir   string
	kafkaPID int
	logf     func(string, ...any)
}

// startConfgateEnv builds confgate and starts Kafka unless
// CONFGATE_KAFKA_BROKERS is set.
func startConfgateEnv(ctx context.Context, logf func(string, ...any)) (*confgateEnv, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	tmp, err := tempDir("peers-confgate-")
	if err != nil {
		return nil, err
	}
	e := &confgateEnv{root: root, tmp: tmp, bin: filepath.Join(tmp, "confgate"), logf: logf}
	logf("building confgate")
	build := exec.CommandContext(ctx, "go", "build", "-o", e.bin, "./cmd/confgate")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("go build ./cmd/confgate: %v: %s", err, out)
	}
	if b := os.Getenv("CONFGATE_KAFKA_BROKERS"); b != "" {
		e.brokers = strings.Split(b, ",")
		logf("using Kafka at %s (CONFGATE_KAFKA_BROKERS; its CPU is not sampled)", b)
		return e, nil
	}
	e.runDir = filepath.Join(tmp, "kafka")
	logf("starting Kafka (scripts/kafka.sh up --port auto)")
	up := exec.CommandContext(ctx, filepath.Join(root, "scripts", "kafka.sh"), "up", "--port", "auto")
	up.Dir = root
	up.Env = append(os.Environ(), "CONFGATE_KAFKA_RUN_DIR="+e.runDir)
	var stderr bytes.Buffer
	up.Stderr = &stderr
	out, err := up.Output()
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("scripts/kafka.sh up: %v: %s", err, lastLines(stderr.String(), 20))
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CONFGATE_KAFKA_BROKERS="); ok {
			e.brokers = strings.Split(strings.TrimSpace(v), ",")
		}
	}
	if len(e.brokers) == 0 {
		e.Close()
		return nil, fmt.Errorf("scripts/kafka.sh up printed no CONFGATE_KAFKA_BROKERS: %q", out)
	}
	// scripts/kafka.sh writes node n's java PID to <run dir>/node<n>/pid.
	if b, err := os.ReadFile(filepath.Join(e.runDir, "node1", "pid")); err == nil {
		e.kafkaPID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	logf("Kafka up at %s (pid %d)", strings.Join(e.brokers, ","), e.kafkaPID)
	return e, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// Close stops our Kafka (scripts/kafka.sh down) and removes the binary.
func (e *confgateEnv) Close() error {
	if e.runDir != "" {
		down := exec.Command(filepath.Join(e.root, "scripts", "kafka.sh"), "down")
		down.Dir = e.root
		down.Env = append(os.Environ(), "CONFGATE_KAFKA_RUN_DIR="+e.runDir)
		if out, err := down.CombinedOutput(); err != nil {
			e.logf("scripts/kafka.sh down: %v: %s", err, out)
		}
	}
	return os.RemoveAll(e.tmp)
}

// gatewayLimits lift the gateway's per-caller limits, which are meant for
// production callers, not one benchmark process: every subscriber and the
// writer are the same anonymous principal here.
var gatewayLimits = []string{
	"--max-streams", "200000",
	"--max-streams-per-principal", "200000",
	"--max-writes-per-second", "1000000",
}

// gateway is one `confgate serve` child.
type gateway struct {
	*child
	addr, admin string
}

// startGateway runs `confgate serve` on topic (created, compacted) with
// free gRPC and admin ports and waits for /readyz.
func (e *confgateEnv) startGateway(ctx context.Context, topic, name string) (*gateway, error) {
	var g gateway
	c, _, err := startWithPorts(2, func(p []int) (*child, error) {
		g.addr = fmt.Sprintf("127.0.0.1:%d", p[0])
		g.admin = fmt.Sprintf("127.0.0.1:%d", p[1])
		ready := func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+g.admin+"/readyz", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("readyz: %s", resp.Status)
			}
			return nil
		}
		args := append([]string{e.bin, "serve",
			"--brokers", strings.Join(e.brokers, ","), "--topic", topic, "--create-topic",
			"--listen", g.addr, "--admin-listen", g.admin, "--log-level", "warn",
			"--gateway-name", name,
		}, gatewayLimits...)
		return startChild(ctx, "confgate serve", filepath.Join(e.tmp, name+".log"), 2*time.Minute, ready, args...)
	})
	if err != nil {
		return nil, err
	}
	g.child = c
	return &g, nil
}

// newTopic is a fresh topic name per cell, so no run reads another's data.
func newTopic(what string) string {
	return fmt.Sprintf("peers-%s-%d-%08x", what, time.Now().Unix(), rand.Uint32())
}

// confgateTarget is loadgen's confgate Target on a gateway of our own,
// which it stops on Close. It also counts the writes, to sample Kafka's
// CPU from the first measured write on (see kafkaWindow).
type confgateTarget struct {
	loadgen.Target
	name string
	env  *confgateEnv
	gw   *gateway
	kw   *kafkaWindow
}

func (t *confgateTarget) Name() string { return t.name }

func (t *confgateTarget) Put(ctx context.Context, key string, value []byte) error {
	if t.kw != nil {
		t.kw.put()
	}
	return t.Target.Put(ctx, key, value)
}

func (t *confgateTarget) Close() error {
	err := t.Target.Close()
	t.gw.Stop()
	return err
}

// startConfgate returns a start function for a confgate target in mode
// (loadgen.ModeClient or loadgen.ModeStub).
func (e *confgateEnv) start(name, mode string) func(context.Context) (loadgen.Target, error) {
	return func(ctx context.Context) (loadgen.Target, error) {
		gw, err := e.startGateway(ctx, newTopic(name), name)
		if err != nil {
			return nil, err
		}
		tg, err := loadgen.NewConfgate(ctx, loadgen.ConfgateOptions{
			Addrs:  []string{gw.addr},
			Mode:   mode,
			Server: loadgen.Server{PIDs: []int{gw.PID()}, MetricsURL: "http://" + gw.admin + "/metrics"},
		})
		if err != nil {
			gw.Stop()
			return nil, err
		}
		return &confgateTarget{Target: tg, name: name, env: e, gw: gw}, nil
	}
}

// kafkaWindow samples Kafka's CPU over a fan-out's measured window: from
// the first measured write (the write after the warmup's) to the end of
// the run, as loadgen samples the gateway.
type kafkaWindow struct {
	pid    int
	warmup int64 // writes before the measured ones
	n      atomic.Int64
	mu     sync.Mutex
	start  time.Duration
	begun  bool
}

func (k *kafkaWindow) put() {
	if k.n.Add(1) != k.warmup+1 {
		return
	}
	if u, err := loadgen.ProcUsage(k.pid); err == nil {
		k.mu.Lock()
		k.start, k.begun = u.CPU, true
		k.mu.Unlock()
	}
}

// cpu is Kafka's CPU since the first measured write; ok is false when no
// measured write was made or the process cannot be read.
func (k *kafkaWindow) cpu() (time.Duration, bool) {
	k.mu.Lock()
	start, begun := k.start, k.begun
	k.mu.Unlock()
	if !begun {
		return 0, false
	}
	u, err := loadgen.ProcUsage(k.pid)
	if err != nil {
		return 0, false
	}
	return u.CPU - start, true
}
