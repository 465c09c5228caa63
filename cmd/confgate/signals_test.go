package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// buildBinary builds confgate into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "confgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// proc is a running confgate process with its combined output.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// startProc runs argv (the binary, or a shell around it) and waits until
// its output contains ready.
func startProc(t *testing.T, ready string, argv ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(argv[0], argv[1:]...), out: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Env = os.Environ()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		p.done <- nil
	})
	deadline := time.After(60 * time.Second)
	for !strings.Contains(p.out.String(), ready) {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("%s exited (%v) before %q:\n%s", argv[0], err, ready, p.out)
		case <-deadline:
			t.Fatalf("no %q after 60s:\n%s", ready, p.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p
}

func (p *proc) signal(t *testing.T, s os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		t.Fatal(err)
	}
}

// exited waits (30s at most) for the process to exit and returns why.
func (p *proc) exited(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("still running after 30s:\n%s", p.out)
		return nil
	}
}

func (p *proc) running() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
		return true
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return closedPort(t)
}

// subscribed opens a Subscribe stream on addr and reads its snapshot.
func subscribed(t *testing.T, addr string) (confgatev1.ConfigServiceClient, confgatev1.ConfigService_SubscribeClient) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	c := confgatev1.NewConfigServiceClient(conn)
	st, err := c.Subscribe(ctx, &confgatev1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		if m.GetSnapshotEnd() != nil {
			return c, st
		}
	}
}

// SIGHUP to serve is a reload with nothing to reload: logged, and the
// gateway keeps serving (streams untouched, writes go through); SIGTERM
// still drains it. SIGHUP to dev, which runs in a terminal, drains and
// exits like SIGTERM, unless it was started with SIGHUP ignored (nohup).
func TestSIGHUP(t *testing.T) {
	bin := buildBinary(t)
	for _, tc := range []struct {
		name string
		// start returns the gateway process and its gRPC address.
		start    func(t *testing.T) (*proc, string)
		keepsOn  bool   // SIGHUP leaves it serving
		wantLine string // logged on SIGHUP
	}{
		{"serve reloads", func(t *testing.T) (*proc, string) {
			kafka := freeAddr(t)
			_, port, _ := net.SplitHostPort(kafka)
			startProc(t, "is ready", bin, "dev", "--listen", freeAddr(t), "--admin-listen", "", "--kafka-port", port)
			addr := freeAddr(t)
			return startProc(t, "gateway ready", bin, "serve", "--brokers", kafka, "--topic", "confgate.config",
				"--listen", addr, "--admin-listen", "", "--fetch-max-wait", "100ms"), addr
		}, true, "SIGHUP: nothing to reload, still serving"},
		{"serve reloads, json logs", func(t *testing.T) (*proc, string) {
			kafka := freeAddr(t)
			_, port, _ := net.SplitHostPort(kafka)
			startProc(t, "is ready", bin, "dev", "--listen", freeAddr(t), "--admin-listen", "", "--kafka-port", port)
			addr := freeAddr(t)
			return startProc(t, "gateway ready", bin, "-o", "json", "serve", "--brokers", kafka, "--topic", "confgate.config",
				"--listen", addr, "--admin-listen", "", "--fetch-max-wait", "100ms"), addr
		}, true, `"msg":"SIGHUP: nothing to reload, still serving`},
		{"dev drains", func(t *testing.T) (*proc, string) {
			addr := freeAddr(t)
			return startProc(t, "is ready", bin, "dev", "--listen", addr, "--admin-listen", "", "--kafka-port", "0"), addr
		}, false, ""},
		{"dev under nohup keeps on", func(t *testing.T) (*proc, string) {
			addr := freeAddr(t)
			return startProc(t, "is ready", "sh", "-c", `trap "" HUP; exec "$0" "$@"`, bin, "dev", "--listen", addr, "--admin-listen", "", "--kafka-port", "0"), addr
		}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, addr := tc.start(t)
			c, st := subscribed(t, addr)
			p.signal(t, syscall.SIGHUP)
			if !tc.keepsOn {
				_, err := st.Recv()
				for err == nil {
					_, err = st.Recv()
				}
				if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "shutting down") {
					t.Fatalf("stream after SIGHUP: %v, want UNAVAILABLE telling the client to resume elsewhere", err)
				}
				if err := p.exited(t); err != nil {
					t.Fatalf("exit after SIGHUP: %v\n%s", err, p.out)
				}
				return
			}
			// Signals that arrive together may be delivered once: the
			// second is sent after the first was logged.
			logged := func(n int) {
				t.Helper()
				deadline := time.Now().Add(30 * time.Second)
				for tc.wantLine != "" && strings.Count(p.out.String(), tc.wantLine) < n {
					if time.Now().After(deadline) {
						t.Fatalf("want %q logged %d times:\n%s", tc.wantLine, n, p.out)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			logged(1)
			p.signal(t, syscall.SIGHUP) // and again
			logged(2)
			// Still serving: the open stream gets a write made after the
			// signals, and a new stream opens.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			key := fmt.Sprintf("hup/%d", time.Now().UnixNano())
			if _, err := c.Put(ctx, &confgatev1.PutRequest{Key: key, Value: []byte("v")}); err != nil {
				t.Fatalf("put after SIGHUP: %v\n%s", err, p.out)
			}
		recv:
			for {
				m, err := st.Recv()
				if err != nil {
					t.Fatalf("stream after SIGHUP: %v\n%s", err, p.out)
				}
				for _, ch := range m.GetDelta().GetChanges() {
					if ch.GetPut().GetKey() == key {
						break recv
					}
				}
			}
			subscribed(t, addr)
			if !p.running() {
				t.Fatalf("exited after SIGHUP:\n%s", p.out)
			}
			p.signal(t, syscall.SIGTERM)
			if err := p.exited(t); err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, p.out)
			}
		})
	}
}
