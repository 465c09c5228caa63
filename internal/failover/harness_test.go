//go:build kafkafaults

package failover_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confgate/confgate/client"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/history"
	"github.com/confgate/confgate/internal/testkit"
)

// confgateBin is the binary under test, built once by TestMain.
var confgateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "confgate-failover")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	confgateBin = filepath.Join(dir, "confgate")
	build := exec.Command("go", "build", "-race", "-o", confgateBin, "../../cmd/confgate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build confgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func brokers(t *testing.T) string {
	t.Helper()
	b := os.Getenv("CONFGATE_KAFKA_BROKERS")
	if b == "" {
		t.Fatal("CONFGATE_KAFKA_BROKERS is not set: run through scripts/test.sh (make test)")
	}
	return b
}

// freePort returns a loopback address free now, below the kernel's
// ephemeral port range: gateways are restarted on their port, and a port
// from the ephemeral range (what listening on :0 gives) may meanwhile be
// taken by any outgoing connection on the machine.
func freePort(t *testing.T) string {
	t.Helper()
	hi := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				hi = n
			}
		}
	}
	for range 200 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(10000+rand.IntN(hi-10000)))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatal("no free loopback port below the ephemeral range")
	return ""
}

// gatewayProc is one `confgate serve` process with fixed ports, so it can
// be killed and restarted behind the same load-balancer entry.
type gatewayProc struct {
	t     *testing.T
	name  string
	addr  string
	admin string
	args  []string
	cmd   *exec.Cmd
	exit  chan error
	log   *os.File
}

func newGateway(t *testing.T, name, topic string, extra ...string) *gatewayProc {
	t.Helper()
	return newGatewayOn(t, brokers(t), name, topic, extra...)
}

// newGatewayOn is newGateway on the Kafka at brokerList (a test's own).
func newGatewayOn(t *testing.T, brokerList, name, topic string, extra ...string) *gatewayProc {
	t.Helper()
	g := &gatewayProc{t: t, name: name, addr: freePort(t), admin: freePort(t)}
	g.args = append([]string{"serve", "--brokers", brokerList, "--topic", topic, "--create-topic",
		"--listen", g.addr, "--admin-listen", g.admin, "--progress-interval", "200ms",
		"--probe-interval", "500ms", "--shutdown-grace", "5s", "--log-level", "warn"}, extra...)
	f, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	g.log = f
	t.Cleanup(func() {
		g.kill()
		f.Close()
		if t.Failed() {
			if b, err := os.ReadFile(f.Name()); err == nil && len(b) > 0 {
				t.Logf("%s log (tail):\n%s", name, tailString(string(b), 3000))
			}
		}
	})
	return g
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (g *gatewayProc) running() bool { return g.cmd != nil }

// start launches the process and waits until /readyz answers 200.
func (g *gatewayProc) start() {
	g.t.Helper()
	if g.running() {
		return
	}
	cmd := exec.Command(confgateBin, g.args...)
	cmd.Stdout, cmd.Stderr = g.log, g.log
	if err := cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.cmd, g.exit = cmd, make(chan error, 1)
	go func() { g.exit <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if ready(g.admin) {
			return
		}
		select {
		case err := <-g.exit:
			g.t.Fatalf("%s exited while starting: %v", g.name, err)
		default:
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%s not ready within 60s", g.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ready(admin string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + admin + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// kill sends SIGKILL and waits.
func (g *gatewayProc) kill() { g.signal(syscall.SIGKILL, 10*time.Second) }

// term sends SIGTERM (graceful drain) and waits for a clean exit.
func (g *gatewayProc) term() error { return g.signal(syscall.SIGTERM, 30*time.Second) }

func (g *gatewayProc) signal(sig syscall.Signal, wait time.Duration) error {
	if !g.running() {
		return nil
	}
	_ = g.cmd.Process.Signal(sig)
	var err error
	select {
	case err = <-g.exit:
	case <-time.After(wait):
		_ = g.cmd.Process.Kill()
		err = <-g.exit
		err = fmt.Errorf("%s did not exit within %s after %v (killed): %v", g.name, wait, sig, err)
	}
	g.cmd = nil
	if sig == syscall.SIGKILL {
		return nil
	}
	return err
}

// metric sums the samples of a metric in /metrics whose line starts with
// prefix (a name, or a name with labels such as `x{method="Subscribe"}`).
func (g *gatewayProc) metric(prefix string) float64 {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + g.admin + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0
	}
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		var v float64
		if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
			sum += v
		}
	}
	return sum
}

// haproxy is a real load balancer in TCP mode in front of the gateways.
// Health checks use each gateway's /readyz, and sessions to a server
// marked down are cut, as an operator would configure it.
type haproxy struct {
	addr string
	cmd  *exec.Cmd
}

func startHAProxy(t *testing.T, gws []*gatewayProc) *haproxy {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy not installed: scripts/test.sh installs it (apt-get install haproxy)")
	}
	h := &haproxy{addr: freePort(t)}
	var b strings.Builder
	fmt.Fprintf(&b, `global
  maxconn 4096
defaults
  mode tcp
  timeout connect 1s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
frontend confgate
  bind %s
  default_backend gateways
backend gateways
  balance roundrobin
  option httpchk
  http-check send meth GET uri /readyz
  timeout check 1s
  default-server inter 200ms fall 2 rise 1 on-marked-down shutdown-sessions
`, h.addr)
	for _, g := range gws {
		_, adminPort, _ := net.SplitHostPort(g.admin)
		fmt.Fprintf(&b, "  server %s %s check port %s\n", g.name, g.addr, adminPort)
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command(bin, "-db", "-f", cfg)
	logf, _ := os.Create(filepath.Join(t.TempDir(), "haproxy.log"))
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.cmd.Process.Kill(); _ = h.cmd.Wait(); logf.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", h.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy not listening: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// finishRun is settle for tests with writers of their own, stopped before
// it is called: it reads the topic's log, waits until every gateway's state
// and every subscriber reached its end, checks each subscriber's final view
// against the log's state for its selector, and runs the history checker
// (rules 1 to 8). It returns the log and its end.
func finishRun(t *testing.T, k *testkit.Kafka, topic string, gws []*gatewayProc, subs []*subscriber, rec *history.Recorder) ([]testkit.LogRecord, cursor.Cursor) {
	t.Helper()
	log := k.ReadLog(t, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := k.Admin(t).ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	id := cursor.TopicID(td[topic].ID)
	end := history.LogEnd(log, id)
	for _, s := range subs {
		testkit.Eventually(t, 60*time.Second, s.name+" at the log's end", func() bool { return s.at().Covers(end) })
		s.halt()
		want, err := history.StateAt(log, end, s.prefixes)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]history.Change{}
		s.view.Range("", func(e client.Entry) bool {
			got[e.Key] = history.Change{Key: e.Key, Value: e.Value, Partition: e.Partition, Offset: e.Offset}
			return true
		})
		if !bytes.Equal(history.Digest(got), history.Digest(want)) {
			t.Fatalf("%s %v: final view (%d entries) differs from the log's state at its end (%d entries)", s.name, s.prefixes, len(got), len(want))
		}
	}
	final, err := history.StateAt(log, end, nil)
	if err != nil {
		t.Fatal(err)
	}
	digest := base64.RawURLEncoding.EncodeToString(history.Digest(final))
	for _, g := range gws {
		testkit.Eventually(t, 30*time.Second, g.name+" digest equal to the topic's", func() bool { return debugDigest(g) == digest })
	}
	if err := rec.Check(log, id); err != nil {
		t.Fatalf("history check: %v", err)
	}
	return log, end
}
