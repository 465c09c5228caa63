package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"

	"github.com/confgate/confgate/fleet"
	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/buildinfo"
	"github.com/confgate/confgate/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Config configures a Node.
type Config struct {
	// Store and Gateway configure the two halves; their Logger, Registerer
	// (and the gateway's Source and Gatherer) are set by the node.
	Store   store.Config
	Gateway gateway.Config
	// Listen is the gRPC address (host:port; port 0 picks a free one).
	// Default "127.0.0.1:0". Ignored when Listener is set.
	Listen string
	// Listener, when set, is the gRPC listener to serve on.
	Listener net.Listener
	// AdminListen is the admin HTTP address (/healthz, /readyz, /metrics,
	// /debug/state); "" serves no admin endpoints. Ignored when
	// AdminListener is set.
	AdminListen string
	// AdminListener, when set, is the admin listener to serve on.
	AdminListener net.Listener
	// Fleet, when set, runs the fleet view (package fleet) beside the
	// store: the gateway publishes its clients to the fleet topic and
	// answers Report and GetFleet. Its brokers, client options, topic
	// (fleet.TopicName), partitions and gateway name default to the
	// store's and the gateway's.
	Fleet *fleet.Config
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registry receives the metrics of both halves; nil makes one with the
	// Go runtime and process collectors.
	Registry *prometheus.Registry
}

// Node is a running store and gateway.
type Node struct {
	// Store and Gateway are the running halves; Registry their metrics.
	Store    *store.Store
	Gateway  *gateway.Gateway
	Registry *prometheus.Registry

	grpcAddr, adminAddr string
	stop                context.CancelFunc // starts the shutdown
	done                chan struct{}      // closed once everything stopped
	err                 error              // why it stopped, set before done closes
}

// Start listens, starts the store consuming and the gateway serving, and
// returns at once (see WaitReady). The node runs until ctx ends, Stop is
// called or the store fails: then the gateway drains first (streams are
// told to resume elsewhere while the store still serves a live state), and
// the store stops once the gateway is done.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	// A registry shared by several nodes (tests) already has it.
	if err := reg.Register(buildinfo.Collector()); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
		return nil, fmt.Errorf("register build info: %w", err)
	}
	sc, gc := cfg.Store, cfg.Gateway
	if sc.Logger == nil {
		sc.Logger = log
	}
	sc.Registerer = reg
	st, err := store.New(sc)
	if err != nil {
		return nil, err
	}
	if gc.Logger == nil {
		gc.Logger = log
	}
	var fl *fleet.Fleet
	if cfg.Fleet != nil {
		if fl, err = newFleet(*cfg.Fleet, sc, gc, log, reg); err != nil {
			st.Close()
			return nil, err
		}
		gc.Fleet = fl
	}
	gc.Source, gc.Registerer, gc.Gatherer = st, reg, reg
	gw, err := gateway.New(gc)
	if err != nil {
		st.Close()
		return nil, err
	}
	lis := cfg.Listener
	if lis == nil {
		addr := cfg.Listen
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		if lis, err = listenTCP("gRPC", addr); err != nil {
			st.Close()
			return nil, err
		}
	}
	var adm net.Listener // a nil interface, not a nil *TCPListener: Serve checks it
	if cfg.AdminListener != nil {
		adm = cfg.AdminListener
	} else if cfg.AdminListen != "" {
		if adm, err = listenTCP("admin", cfg.AdminListen); err != nil {
			lis.Close()
			st.Close()
			return nil, err
		}
	}

	gwCtx, stopGW := context.WithCancel(ctx)
	// The store outlives the gateway's drain, so draining streams still
	// read a live state; it stops once the gateway is done.
	stCtx, stopStore := context.WithCancel(context.WithoutCancel(ctx))
	n := &Node{Store: st, Gateway: gw, Registry: reg, grpcAddr: lis.Addr().String(), stop: stopGW, done: make(chan struct{})}
	if adm != nil {
		n.adminAddr = adm.Addr().String()
	}

	fleetDone := make(chan struct{})
	go func() {
		defer close(fleetDone)
		if fl != nil {
			if err := fl.Run(stCtx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("fleet view stopped", "err", err)
			}
		}
	}()
	storeErr := make(chan error, 1)
	go func() {
		err := st.Run(stCtx)
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Error("store stopped", "err", err)
			stopGW()
		}
		storeErr <- err
	}()
	go func() {
		serveErr := gw.Serve(gwCtx, lis, adm)
		stopGW()
		stopStore()
		err := <-storeErr
		<-fleetDone
		st.Close()
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			n.err = err
		case serveErr != nil:
			n.err = serveErr
		}
		log.Info("stopped")
		close(n.done)
	}()
	return n, nil
}

// GRPCAddr is the address gRPC listens on.
func (n *Node) GRPCAddr() string { return n.grpcAddr }

// AdminAddr is the admin HTTP address, "" when there is none.
func (n *Node) AdminAddr() string { return n.adminAddr }

// WaitReady waits until the store has caught up with the topic, the node
// stopped (its error, or an error saying so), or ctx ended.
func (n *Node) WaitReady(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-n.done:
			cancel()
		case <-wctx.Done():
		}
	}()
	err := n.Store.WaitReady(wctx)
	if err == nil {
		return nil
	}
	select {
	case <-n.done:
		if n.err != nil {
			return n.err
		}
		return errors.New("node: stopped before it was ready")
	default:
		return err
	}
}

// Stop starts the shutdown; Wait waits for it.
func (n *Node) Stop() { n.stop() }

// Done is closed once the node stopped.
func (n *Node) Done() <-chan struct{} { return n.done }

// Wait blocks until the node stopped and returns why (nil after Stop or
// the end of the context).
func (n *Node) Wait() error {
	<-n.done
	return n.err
}

func listenTCP(what, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		hint := ""
		if errors.Is(err, syscall.EADDRINUSE) {
			hint = " (something already listens there: another confgate? pick another address, port 0 for any free one)"
		}
		return nil, fmt.Errorf("listen on %s (%s): %w%s", addr, what, err, hint)
	}
	return lis, nil
}

// newFleet fills what a fleet configuration leaves out from the store's and
// the gateway's.
func newFleet(fc fleet.Config, sc store.Config, gc gateway.Config, log *slog.Logger, reg prometheus.Registerer) (*fleet.Fleet, error) {
	if len(fc.Brokers) == 0 {
		fc.Brokers, fc.ClientOpts = sc.Brokers, sc.ClientOpts
	}
	if fc.Topic == "" {
		fc.Topic = fleet.TopicName(sc.Topic)
	}
	if fc.Partitions == 0 {
		fc.Partitions = sc.Partitions
	}
	if fc.ReplicationFactor == 0 {
		fc.ReplicationFactor = sc.ReplicationFactor
	}
	if fc.Gateway == "" {
		fc.Gateway = gc.Name
	}
	if fc.Gateway == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("node: fleet: no gateway name and no host name: %w", err)
		}
		fc.Gateway = h
	}
	if fc.Logger == nil {
		fc.Logger = log.With("component", "fleet")
	}
	fc.Registerer = reg
	f, err := fleet.New(fc)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return f, nil
}
