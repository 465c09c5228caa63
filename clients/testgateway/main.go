package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/confgate/confgate/fleet"
	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/node"
	"github.com/confgate/confgate/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testgateway:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		listen      = flag.String("listen", "127.0.0.1:0", "gRPC listen address")
		adminAddr   = flag.String("admin", "127.0.0.1:0", "admin HTTP listen address")
		proxyAddr   = flag.String("proxy", "127.0.0.1:0", "listen address of the cuttable TCP proxy to the gateway")
		controlAddr = flag.String("control", "127.0.0.1:0", "listen address of the proxy control HTTP endpoint")
		addrFile    = flag.String("addr-file", "", "write the listen addresses as JSON to this file once ready")
		topic       = flag.String("topic", "confgate.polyglot", "config topic")
		partitions  = flag.Int("partitions", 3, "partitions of the topic")
		lifetime    = flag.Duration("max-lifetime", 15*time.Minute, "exit after this long, whatever happens")
		name        = flag.String("name", "testgateway", "the gateway's name (audit headers, the fleet view's gateway column)")
		reportEvery = flag.Duration("fleet-report-interval", 200*time.Millisecond, "the clients' report interval the fleet view expects (a client silent for three is not reporting)")
		verbose     = flag.Bool("v", false, "log at debug level (default: warnings only)")
	)
	flag.Parse()

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *lifetime)
	defer cancel()

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return fmt.Errorf("start kfake: %w", err)
	}
	defer cluster.Close()

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	n, err := node.Start(ctx, node.Config{
		Store: store.Config{
			Brokers:       cluster.ListenAddrs(),
			Topic:         *topic,
			CreateTopic:   true,
			Partitions:    int32(*partitions),
			ProbeInterval: 500 * time.Millisecond,
			FetchMaxWait:  100 * time.Millisecond,
		},
		Gateway: gateway.Config{
			CacheBytes:       16 << 20,
			ProgressInterval: time.Second,
			ShutdownGrace:    2 * time.Second,
			Name:             *name,
			// The tests report every 200ms: fleet states are judged
			// against that, not the 5s default.
			FleetReportInterval: *reportEvery,
		},
		// The fleet view, with short intervals so the tests see clients
		// appear, change and (Grace after their stream closes) leave
		// within seconds. Brokers, topic and gateway name are the node's.
		Fleet: &fleet.Config{
			MinInterval: 200 * time.Millisecond,
			Heartbeat:   200 * time.Millisecond,
			Grace:       2 * time.Second,
		},
		Listener:    lis,
		AdminListen: *adminAddr,
		Logger:      log,
	})
	if err != nil {
		lis.Close()
		return err
	}
	px, err := newProxy(*proxyAddr, lis.Addr().String())
	if err != nil {
		return err
	}
	defer px.close()
	ctl, err := net.Listen("tcp", *controlAddr)
	if err != nil {
		return err
	}
	ctlSrv := &http.Server{Handler: px.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = ctlSrv.Serve(ctl) }()
	defer ctlSrv.Close()

	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	err = n.WaitReady(rctx)
	rcancel()
	if err != nil {
		cancel()
		_ = n.Wait()
		return fmt.Errorf("store not ready: %w", err)
	}

	addrs := map[string]string{
		"grpc":    lis.Addr().String(),
		"admin":   n.AdminAddr(),
		"proxy":   px.addr(),
		"control": "http://" + ctl.Addr().String(),
	}
	b, _ := json.Marshal(addrs)
	fmt.Println(string(b))
	if *addrFile != "" {
		// Write then rename, so a reader never sees a partial file.
		tmp := *addrFile + ".tmp"
		if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			return err
		}
	}

	<-ctx.Done()
	err = n.Wait()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("exited after -max-lifetime %s", *lifetime)
	}
	return err
}

// proxy forwards TCP connections to target while up; down closes every
// forwarded connection and closes new ones at once.
type proxy struct {
	lis    net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func newProxy(listen, target string) (*proxy, error) {
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &proxy{lis: lis, target: target, conns: map[net.Conn]struct{}{}}
	go p.accept()
	return p, nil
}

func (p *proxy) addr() string { return p.lis.Addr().String() }

func (p *proxy) close() {
	_ = p.lis.Close()
	p.setDown(true)
}

func (p *proxy) accept() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

func (p *proxy) forward(c net.Conn) {
	defer c.Close()
	if !p.track(c) {
		return
	}
	defer p.untrack(c)
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	if !p.track(up) {
		return
	}
	defer p.untrack(up)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done // either side ended: tear down both
}

func (p *proxy) setDown(down bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	n := 0
	if down {
		for c := range p.conns {
			_ = c.Close()
			n++
		}
		clear(p.conns)
	}
	return n
}

func (p *proxy) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /proxy/down", func(w http.ResponseWriter, _ *http.Request) {
		n := p.setDown(true)
		fmt.Fprintf(w, "proxy down, closed %d connections\n", n)
	})
	mux.HandleFunc("POST /proxy/up", func(w http.ResponseWriter, _ *http.Request) {
		p.setDown(false)
		fmt.Fprintln(w, "proxy up")
	})
	return mux
}
