//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// raiseNofile takes the soft limit to the hard one and says so; at the
// hard limit it only says where it stands.
func TestRaiseNofile(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Skip(err)
	}
	if orig.Max < 200 || orig.Max == ^uint64(0) {
		t.Skipf("hard limit %d", orig.Max)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	for _, tc := range []struct {
		name string
		soft uint64
		want string
	}{
		{"below the hard limit", orig.Max - 100, fmt.Sprintf("raised the open file limit (RLIMIT_NOFILE) to its hard limit\" from=%d to=%d", orig.Max-100, orig.Max)},
		{"at the hard limit", orig.Max, fmt.Sprintf("is at its hard limit\" soft=%d hard=%d", orig.Max, orig.Max)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := orig
			lim.Cur = tc.soft
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			raiseNofile(slog.New(slog.NewTextHandler(&buf, nil)))
			if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				t.Fatal(err)
			}
			if lim.Cur != orig.Max {
				t.Fatalf("soft limit %d, want the hard limit %d", lim.Cur, orig.Max)
			}
			if !strings.Contains(buf.String(), tc.want) {
				t.Fatalf("log %q, want %q", buf.String(), tc.want)
			}
		})
	}
}

// With a low file descriptor limit (256, soft and hard) the gateway bounds
// its gRPC connections below it: a flood of connections is closed past
// the bound instead of exhausting descriptors, /readyz keeps answering on
// the admin listener, and once the flood ends new clients get in.
func TestLowFDLimitFlood(t *testing.T) {
	bin := buildBinary(t)
	addr, admin := freeAddr(t), freeAddr(t)
	p := startProc(t, "is ready", "sh", "-c", `ulimit -n 256 && exec "$0" "$@"`, bin, "dev",
		"--listen", addr, "--admin-listen", admin, "--kafka-port", "0")
	m := regexp.MustCompile(`connection limit derived from the file descriptor limit.* max_connections=(\d+) nofile_soft_limit=256`).FindStringSubmatch(p.out.String())
	if m == nil || m[1] != "192" {
		t.Fatalf("want the connection limit derived from 256 descriptors (192) logged:\n%s", p.out)
	}

	const flood = 400
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range flood {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	// The connections past the bound are closed by the gateway.
	closed := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF || err != nil && !isTimeout(err) {
			closed++
		}
	}
	if closed < flood-192 {
		t.Fatalf("%d of %d connections closed, want at least %d", closed, flood, flood-192)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + admin + "/readyz")
	if err != nil {
		t.Fatalf("/readyz during the flood: %v\n%s", err, p.out)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz during the flood: %s", resp.Status)
	}
	metrics, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(metrics.Body)
	metrics.Body.Close()
	if !regexp.MustCompile(`confgate_gateway_refused_total\{reason="connections"\} [1-9]`).Match(body) {
		t.Fatalf("refused{connections} not counted:\n%s", grepLines(string(body), "confgate_gateway_"))
	}
	t.Logf("%d connections: %d closed by the gateway; %s", flood, closed, grepLines(string(body), "confgate_gateway_connections "))

	for _, c := range conns {
		c.Close()
	}
	conns = nil
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := confgatev1.NewConfigServiceClient(conn).Get(ctx, &confgatev1.GetRequest{Key: "payments/db/timeout"}, grpc.WaitForReady(true))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("get after the flood: %v\n%s", err, p.out)
		}
	}
	p.signal(t, syscall.SIGTERM)
	if err := p.exited(t); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.out)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
