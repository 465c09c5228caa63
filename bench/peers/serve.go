package main

import (
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"go.etcd.io/etcd/server/v3/embed"
)

// The hidden server modes: the peers binary re-executes itself as
// `peers serve-etcd ...` or `peers serve-nats ...`, so each server runs in
// its own process and its CPU and RSS are read alone from /proc. Each
// prints one readyPrefix line on stdout once it accepts clients, then runs
// until SIGTERM or SIGINT.

// isServeMode says whether args (without the program name) ask for a
// server mode.
func isServeMode(args []string) bool {
	return len(args) > 0 && (args[0] == "serve-etcd" || args[0] == "serve-nats" || args[0] == "consume-kafka")
}

// serveMain runs a server mode and returns the exit code.
func serveMain(args []string) int {
	var err error
	switch args[0] {
	case "serve-etcd":
		err = serveEtcd(args[1:])
	case "serve-nats":
		err = serveNATS(args[1:])
	case "consume-kafka":
		err = consumeKafka(args[1:])
	default:
		err = fmt.Errorf("unknown mode %q", args[0])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "peers %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func waitSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
}

// serveEtcd runs a single-member embedded etcd with etcd's own defaults
// (snapshot count 10,000, fsync on, 2 GiB backend quota, no auth, no TLS);
// only logging is turned down to errors.
func serveEtcd(args []string) error {
	fs := flag.NewFlagSet("serve-etcd", flag.ContinueOnError)
	dir := fs.String("dir", "", "data directory")
	cport := fs.Int("client-port", 0, "client port on 127.0.0.1")
	pport := fs.Int("peer-port", 0, "peer port on 127.0.0.1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *cport == 0 || *pport == 0 {
		return fmt.Errorf("--dir, --client-port and --peer-port are required")
	}
	cfg := embed.NewConfig()
	cfg.Name = "peers"
	cfg.Dir = *dir
	cu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *cport)}
	pu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *pport)}
	cfg.ListenClientUrls = []url.URL{cu}
	cfg.AdvertiseClientUrls = []url.URL{cu}
	cfg.ListenPeerUrls = []url.URL{pu}
	cfg.AdvertisePeerUrls = []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return err
	case <-time.After(60 * time.Second):
		return fmt.Errorf("etcd not ready after 60s")
	}
	fmt.Printf("%s etcd %s\n", readyPrefix, cu.Host)
	go func() {
		if err := <-e.Err(); err != nil {
			fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
			os.Exit(1)
		}
	}()
	waitSignal()
	return nil
}

// serveNATS runs a nats-server with JetStream, file store in --store, and
// the server's defaults otherwise (64K connections, 1 MiB max payload)
// but one: nats-server 2.15 caps a stream at 1,000 consumers unless told
// otherwise, and every KV watcher is a consumer of the bucket's stream, so
// the cap is lifted (-1, unlimited, as before 2.15).
func serveNATS(args []string) error {
	fs := flag.NewFlagSet("serve-nats", flag.ContinueOnError)
	port := fs.Int("port", 0, "client port on 127.0.0.1")
	store := fs.String("store", "", "JetStream store directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *store == "" || *port == 0 {
		return fmt.Errorf("--port and --store are required")
	}
	opts := &natsserver.Options{
		Host:      "127.0.0.1",
		Port:      *port,
		JetStream: true,
		StoreDir:  *store,
		NoSigs:    true,
		NoLog:     true,
		JetStreamLimits: natsserver.JSLimitOpts{
			DefaultMaxConsumers: -1,
		},
	}
	// nats-server reports a failed bind only in its log: check the port
	// first, so a lost port race fails fast ("address already in use")
	// and the parent retries on another.
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		return err
	}
	l.Close()
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return err
	}
	go ns.Start()
	if !ns.ReadyForConnections(20 * time.Second) {
		ns.Shutdown()
		return fmt.Errorf("nats-server not ready after 20s")
	}
	fmt.Printf("%s nats %s\n", readyPrefix, ns.ClientURL())
	waitSignal()
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}
