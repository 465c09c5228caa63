package main

import (
	"strings"

	"github.com/spf13/cobra"
)

func newServeCmd(g *globals) *cobra.Command {
	f := &serverFlags{}
	var (
		brokers           []string
		createTopic       bool
		allowUncompacted  bool
		replicationFactor int16
		topicConfigs      map[string]string
		auth              kafkaAuth
		config            serveConfig
	)
	cmd := &cobra.Command{
		Use:   "serve --brokers HOST:PORT[,...] --topic NAME",
		Short: "Run a gateway: consume the config topic, serve it over gRPC",
		Long: `Run a gateway. It consumes every partition of the compacted config topic into
memory, reports NOT_SERVING (health, /readyz) until it has caught up, then
serves snapshots, changes and writes over gRPC. Gateways are stateless and
interchangeable: run as many as you need behind any load balancer.

On SIGINT or SIGTERM the gateway drains first (health turns NOT_SERVING,
streams are told to resume elsewhere), then stops consuming. SIGHUP
re-reads the auth files (--auth-tokens, --auth-jwks, --acl) at once, logs
the outcome and keeps serving; a file that fails to load keeps its
previous version in force. Those files, and the TLS certificate and key,
are also re-read by themselves when they change; other settings take a
restart.

Authentication and authorization: callers are identified by a verified
client certificate (--tls-client-ca, --auth-cert-names), a static bearer
token (--auth-tokens; make one with confgate token new) or a JWT
(--auth-jwks with --auth-jwt-issuer and --auth-jwt-audience); --acl says
what each may read and write. Without any of these flags every caller may
do everything, as before. With --tls-client-ca alone a certificate is
required at the TLS handshake; with bearer tokens or --auth-anonymous as
well it becomes optional there (one presented must still verify), and
callers without one must present a token (or are anonymous).
Unauthenticated calls fail with UNAUTHENTICATED, calls the ACL does not
grant with PERMISSION_DENIED.

Sizes accept units: 1048576, 512KiB, 64MiB, 1GiB.

Configuration: every flag of serve, and the global --log-level and
--output, may also come from the environment, as CONFGATE_ plus the flag's
name in upper case with - as _ (--cache-bytes: CONFGATE_CACHE_BYTES; lists
comma-separated, maps k=v,k=v), or from a YAML file given with --config or
$CONFGATE_CONFIG, keyed by flag name (cache-bytes: 64MiB). A flag beats the
environment, which beats the file, which beats the default. A key the file
does not know is an error. The SASL password comes only from
$CONFGATE_KAFKA_SASL_PASSWORD. --print-config prints the result in the
file's format, secrets redacted, and exits; --print-config=changed prints
only the settings given, with where each came from (a saved full print
pins every default). confgate dev reads flags only.`,
		Args: cobra.NoArgs,
		// Replaces the root's hook (cobra runs the nearest one): the
		// environment and the file must be merged before setup reads
		// --log-level and --output.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.load(cmd, g.env.Getenv); err != nil {
				return usagef(cmd, "%v", err)
			}
			return g.setup(cmd)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config.print {
				return config.write(g.env.Stdout, cmd, g.env.Getenv)
			}
			config.logSources(g.log)
			if len(brokers) == 0 {
				return usagef(cmd, "--brokers is required: the Kafka bootstrap servers, host:port[,...]")
			}
			if f.topic == "" {
				return usagef(cmd, "--topic is required: the compacted config topic")
			}
			if f.cacheBytes < 0 {
				return usagef(cmd, "--cache-bytes must not be negative")
			}
			sc, err := f.storeConfig()
			if err != nil {
				return usagef(cmd, "%v", err)
			}
			for i, b := range brokers {
				brokers[i] = strings.TrimSpace(b)
			}
			sc.Brokers = brokers
			sc.CreateTopic = createTopic
			sc.AllowUncompactedTopic = allowUncompacted
			sc.ReplicationFactor = replicationFactor
			sc.TopicConfigs = topicConfigs
			if sc.ClientOpts, err = auth.opts(g.env.Getenv); err != nil {
				return usagef(cmd, "%v", err)
			}
			gc, err := f.gatewayConfig(g.log)
			if err != nil {
				return usagef(cmd, "%v", err)
			}
			if f.auth.tokens != "" || f.auth.jwks != "" || f.auth.acl != "" {
				reload := authReload(g.log, gc.Authenticator, gc.Policy)
				g.env.reload.Store(&reload)
				defer g.env.reload.Store(nil)
			}
			ctx := cmd.Context()
			n, err := startNode(ctx, g.log, sc, gc, f.fleetConfig(), f.listen, f.adminListen)
			if err != nil {
				return err
			}
			go func() {
				if n.waitReady(ctx) != nil {
					return
				}
				st := n.st.Status()
				g.log.Info("gateway ready", "grpc", n.addrs.GRPC, "entries", st.Entries, "cursor", st.Cursor.String())
				if g.env.Started != nil {
					g.env.Started(n.addrs)
				}
			}()
			return n.wait()
		},
	}
	fs := cmd.Flags()
	fs.StringSliceVar(&brokers, "brokers", nil, "Kafka bootstrap servers, host:port[,...] (required)")
	fs.StringVar(&f.topic, "topic", "", "the compacted config topic (required)")
	fs.BoolVar(&createTopic, "create-topic", false, "create the topic, compacted, when it does not exist at start (a topic deleted later is waited for, not recreated); without it a missing topic is an error at start (the safe default: a typo does not create an empty topic)")
	fs.BoolVar(&allowUncompacted, "allow-uncompacted-topic", false, "start on a topic whose cleanup.policy lacks compact; by default that is refused, since Kafka's retention then deletes config entries that were not written again in time")
	fs.Int16Var(&replicationFactor, "replication-factor", -1, "replication factor of a topic created with --create-topic; -1 takes the broker's default.replication.factor")
	fs.StringToStringVar(&topicConfigs, "topic-config", nil, "extra configs of a topic created with --create-topic, on top of cleanup.policy=compact, e.g. segment.ms=3600000,min.cleanable.dirty.ratio=0.1")
	auth.register(fs)
	f.register(fs)
	config.register(fs)
	return cmd
}
