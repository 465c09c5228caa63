package monitoringcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/auth"
	"github.com/confgate/confgate/fleet"
	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/node"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The files checked, from this package's directory.
var (
	dashboardFile = filepath.Join("..", "grafana", "confgate.json")
	rulesDir      = filepath.Join("..", "prometheus")
	rulesName     = "confgate-alerts.yaml"
	rulesTestName = "confgate-alerts_test.yaml"
	alertsDoc     = filepath.Join("..", "..", "docs", "alerts.md")
)

// exported is what a gateway exports, read once by TestMain.
var exported inventory

func TestMain(m *testing.M) {
	inv, err := gatewayInventory()
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading a gateway's metrics:", err)
		os.Exit(1)
	}
	exported = inv
	os.Exit(m.Run())
}

// gatewayInventory starts a gateway as `confgate serve` does (node.Start
// making its own registry, with the Go and process collectors, and the
// fleet view) on the in-process dev broker, with credentials configured
// (anonymous callers allowed) so that the per-principal limits apply,
// exercises it (exercise) and reads the metrics it exports, their labels
// and the values they took. The values of three labels are derived from
// what the gateway computes them from (derivedValues).
func gatewayInventory() (inventory, error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, err
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "monitoringcheck")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tokens := filepath.Join(dir, "tokens")
	_, hash, err := auth.NewToken()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(tokens, []byte(hash+" monitoringcheck\n"), 0o600); err != nil {
		return nil, err
	}
	authn, err := auth.NewAuthenticator(auth.Config{TokensFile: tokens, Anonymous: true})
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := node.Start(ctx, node.Config{
		// One batch of change history, so that a resume from two
		// batches back is served as a diff.
		Store: store.Config{Brokers: cluster.ListenAddrs(), Topic: "config", CreateTopic: true, HistoryBatches: 1},
		Gateway: gateway.Config{
			Name:                   "monitoringcheck",
			Authenticator:          authn,
			MaxStreamsPerPrincipal: exerciseStreams,
			MaxWritesPerSecond:     2,
			// The gateways' judgement comes every two reports.
			FleetReportInterval: 100 * time.Millisecond,
		},
		Fleet:  &fleet.Config{},
		Listen: "127.0.0.1:0",
		Logger: quiet,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		n.Stop()
		_ = n.Wait()
	}()
	if err := n.WaitReady(ctx); err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := exercise(ctx, cluster, confgatev1.NewConfigServiceClient(conn), n.Registry); err != nil {
		return nil, fmt.Errorf("exercising the gateway: %w", err)
	}
	inv, err := inventoryOf(n.Registry)
	if err != nil {
		return nil, err
	}
	for _, d := range derivedValues() {
		if err := inv.derive(d.family, d.label, d.values); err != nil {
			return nil, err
		}
	}
	return inv, nil
}

// exerciseStreams is the gateway's stream limit per principal: exercise
// opens that many streams and sees the next one refused.
const exerciseStreams = 4

// exercise makes the gateway produce the label values the dashboard, the
// alerts and the alerts' tests name, each the way it comes about in
// production, and checks each step did what it is for: commits that are
// refused by Kafka, succeed, repeat and lose a race; subscribers that
// start, resume from history, from a diff and after a topic change;
// the per-principal limits; a bad credential; a client's report and the
// judgement of the fleet's gateways. The request histogram vector gets
// series on the way (its type is then known, and with it its _bucket
// series).
func exercise(ctx context.Context, cluster *kfake.Cluster, cl confgatev1.ConfigServiceClient, reg *prometheus.Registry) error {
	// Kafka refuses to initialize the transactional producer once (the
	// fleet's idempotent producer, which has no transactional ID, passes):
	// the write through the serialization point fails, result
	// "unavailable". The next one initializes it.
	cluster.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.InitProducerIDRequest)
		if r.TransactionalID == nil {
			return nil, nil, false
		}
		resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp, nil, true
	})
	if _, err := cl.Put(ctx, &confgatev1.PutRequest{Key: "cas", Value: []byte("0"), RequestId: "monitoringcheck-0"}); err == nil {
		return errors.New("a write through the serialization point succeeded while Kafka refused its producer")
	}
	// "ok", then the same request ID again, "duplicate"; then a lost
	// compare-and-set, "precondition_failed".
	put := &confgatev1.PutRequest{Key: "cas", Value: []byte("1"), RequestId: "monitoringcheck-1", WaitApplied: true}
	for i := range 2 {
		r, err := cl.Put(ctx, put)
		if err != nil {
			return fmt.Errorf("retry-safe put: %w", err)
		}
		if r.GetDuplicate() != (i == 1) {
			return fmt.Errorf("retry-safe put %d: duplicate %v", i, r.GetDuplicate())
		}
	}
	absent := &confgatev1.Precondition{Condition: &confgatev1.Precondition_Absent{Absent: true}}
	if _, err := cl.Put(ctx, &confgatev1.PutRequest{Key: "cas", Value: []byte("2"), Precondition: absent}); status.Code(err) != codes.FailedPrecondition {
		return fmt.Errorf("put if absent of a present key: %v, want FAILED_PRECONDITION", err)
	}

	streams, stop := context.WithCancel(ctx)
	defer stop()
	subscribe := func(resume []byte) (confgatev1.ConfigService_SubscribeClient, error) {
		return cl.Subscribe(streams, &confgatev1.SubscribeRequest{ResumeCursor: resume})
	}
	// A client's initial snapshot; it names itself, which puts its
	// service in the fleet view.
	client := &confgatev1.ClientInfo{ClientId: "monitoringcheck-client", Service: "monitoringcheck"}
	s, err := cl.Subscribe(streams, &confgatev1.SubscribeRequest{Client: client})
	if err != nil {
		return err
	}
	first, err := snapshotEnd(s)
	if err != nil {
		return fmt.Errorf("initial snapshot: %w", err)
	}
	// A GetSnapshot call's snapshot, reason "get_snapshot".
	gs, err := cl.GetSnapshot(ctx, &confgatev1.GetSnapshotRequest{})
	if err != nil {
		return err
	}
	// Read to its status: the stream then no longer counts towards the
	// principal's limit.
	ended := false
	for {
		m, err := gs.Recv()
		if errors.Is(err, io.EOF) && ended {
			break
		}
		if err != nil {
			return fmt.Errorf("GetSnapshot: %v", err)
		}
		ended = ended || m.GetEnd() != nil
	}
	// Three writes, three batches: the history keeps the last one.
	var last []byte
	for i := range 3 {
		r, err := cl.Put(ctx, &confgatev1.PutRequest{Key: "k", Value: []byte{byte('0' + i)}, WaitApplied: true})
		if err != nil {
			return fmt.Errorf("put: %w", err)
		}
		last = r.GetCursor()
	}
	// Resumes: from the last write, history; from the initial snapshot,
	// older than the history, a diff; from another incarnation of the
	// topic, a reset.
	c, err := cursor.Decode(first.GetCursor())
	if err != nil {
		return err
	}
	c.Topic[0] ^= 0xff
	for _, r := range []struct {
		outcome string
		from    []byte
		is      func(*confgatev1.SubscribeResponse) bool
	}{
		{"history", last, func(m *confgatev1.SubscribeResponse) bool { return m.GetProgress() != nil }},
		{"diff", first.GetCursor(), func(m *confgatev1.SubscribeResponse) bool { return m.GetDelta() != nil }},
		{"reset", c.Encode(), func(m *confgatev1.SubscribeResponse) bool {
			return m.GetSnapshotChunk() != nil || m.GetSnapshotEnd().GetReset_()
		}},
	} {
		s, err := subscribe(r.from)
		if err != nil {
			return err
		}
		m, err := s.Recv()
		if err != nil {
			return fmt.Errorf("resume (%s): %w", r.outcome, err)
		}
		if !r.is(m) {
			return fmt.Errorf("resume (%s): first message %v", r.outcome, m)
		}
	}
	// One stream more than the principal may open: "principal_streams".
	s, err = subscribe(nil)
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		return fmt.Errorf("stream %d of one principal: %v, want RESOURCE_EXHAUSTED", exerciseStreams+1, err)
	}
	// Writes past the principal's burst: "principal_writes".
	for i := 0; ; i++ {
		_, err := cl.Put(ctx, &confgatev1.PutRequest{Key: "burst", Value: []byte("1")})
		if status.Code(err) == codes.ResourceExhausted {
			break
		}
		if err != nil || i == 100 {
			return fmt.Errorf("write %d past the write rate: %v, want RESOURCE_EXHAUSTED", i, err)
		}
	}
	// A credential the gateway does not know: "invalid_credential".
	bad := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer cgt_"+strings.Repeat("x", 43))
	if _, err := cl.Get(bad, &confgatev1.GetRequest{Key: "k"}); status.Code(err) != codes.Unauthenticated {
		return fmt.Errorf("unknown token: %v, want UNAUTHENTICATED", err)
	}
	// The client reports what it applied, as clients do.
	if _, err := cl.Report(ctx, &confgatev1.ReportRequest{
		Client:        client,
		AppliedCursor: first.GetCursor(),
		Digest:        first.GetDigest(),
	}); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	// The fleet view and the gateways' judgement come asynchronously.
	for _, w := range []struct{ family, label, value string }{
		{"confgate_gateway_fleet_clients", "service", "monitoringcheck"},
		{"confgate_gateway_fleet_gateways", "state", "diverged"},
	} {
		if err := waitForSeries(ctx, reg, w.family, w.label, w.value); err != nil {
			return err
		}
	}
	return nil
}

// snapshotEnd reads a snapshot up to its end.
func snapshotEnd(s confgatev1.ConfigService_SubscribeClient) (*confgatev1.SnapshotEnd, error) {
	for {
		m, err := s.Recv()
		if err != nil {
			return nil, err
		}
		if end := m.GetSnapshotEnd(); end != nil {
			return end, nil
		}
	}
}

// waitForSeries waits until reg has a series of family with label=value.
func waitForSeries(ctx context.Context, reg *prometheus.Registry, family, label, value string) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		mfs, err := reg.Gather()
		if err != nil {
			return err
		}
		for _, mf := range mfs {
			if mf.GetName() != family {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == label && lp.GetValue() == value {
						return nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no series %s{%s=%q}: %w", family, label, value, ctx.Err())
		case <-t.C:
		}
	}
}

// derivation is every value a label can take, as the gateway computes it.
type derivation struct {
	family, label string
	values        []string
}

// derivedValues are the labels whose every value this check can compute
// the way the gateway does: the status code of a call (status.Code's
// String, codes.OK to codes.Unauthenticated, the last gRPC defines), its
// method (gRPC's full method name, of the services gateway.Register
// serves: the config service and health; its reflection service is left
// out, so a query naming it fails here rather than passing unchecked),
// and a snapshot's reason (the SnapshotReason enum's name without its
// prefix, lower case, for a Subscribe; "get_snapshot" for a GetSnapshot
// call, which exercise makes).
func derivedValues() []derivation {
	var codeNames []string
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		codeNames = append(codeNames, c.String())
	}
	var methods []string
	for _, sd := range []grpc.ServiceDesc{confgatev1.ConfigService_ServiceDesc, healthpb.Health_ServiceDesc} {
		for _, m := range sd.Methods {
			methods = append(methods, "/"+sd.ServiceName+"/"+m.MethodName)
		}
		for _, st := range sd.Streams {
			methods = append(methods, "/"+sd.ServiceName+"/"+st.StreamName)
		}
	}
	reasons := []string{"get_snapshot"}
	for v, name := range confgatev1.SnapshotReason_name {
		if v != int32(confgatev1.SnapshotReason_SNAPSHOT_REASON_UNSPECIFIED) {
			reasons = append(reasons, strings.ToLower(strings.TrimPrefix(name, "SNAPSHOT_REASON_")))
		}
	}
	return []derivation{
		{"confgate_gateway_requests_total", "code", codeNames},
		{"confgate_gateway_requests_total", "method", methods},
		{"confgate_gateway_request_seconds", "method", methods},
		{"confgate_gateway_snapshots_total", "reason", reasons},
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fail(t *testing.T, what string, problems []string) {
	t.Helper()
	if len(problems) > 0 {
		t.Errorf("%s: %d problems:\n  %s", what, len(problems), strings.Join(problems, "\n  "))
	}
}

// The inventory holds what the dashboard and alerts build on, each with
// its labels and type, and the values the exercised gateway gave them:
// vectors with no series included (panics, with no values), histogram
// suffixes expanded, the fleet's metrics present, derived values whole.
func TestInventory(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   kind
		labels []string
		values map[string][]string // among the label's values
	}{
		{"confgate_store_ready", kindGauge, nil, nil},
		{"confgate_store_lag_records", kindGauge, []string{"partition"}, map[string][]string{"partition": {"0"}}},
		{"confgate_gateway_resumes_total", kindCounter, []string{"outcome"}, map[string][]string{"outcome": {"history", "diff", "reset"}}},
		{"confgate_gateway_snapshots_total", kindCounter, []string{"reason"}, map[string][]string{"reason": {"initial", "topic_changed", "slow_subscriber", "get_snapshot"}}},
		{"confgate_gateway_requests_total", kindCounter, []string{"method", "code"}, map[string][]string{
			"method": {"/confgate.v1.ConfigService/Put", "/confgate.v1.ConfigService/Apply", "/grpc.health.v1.Health/Check"},
			"code":   {"OK", "Unavailable", "DataLoss", "Unauthenticated"},
		}},
		{"confgate_store_commit_requests_total", kindCounter, []string{"result"}, map[string][]string{"result": {"ok", "duplicate", "precondition_failed", "unavailable"}}},
		{"confgate_gateway_refused_total", kindCounter, []string{"reason"}, map[string][]string{"reason": {"principal_streams", "principal_writes"}}},
		{"confgate_gateway_auth_failures_total", kindCounter, []string{"reason"}, map[string][]string{"reason": {"invalid_credential"}}},
		{"confgate_gateway_request_seconds_bucket", kindBucket, []string{"method", "le"}, nil},
		{"confgate_gateway_request_seconds_count", kindCount, []string{"method"}, nil},
		{"confgate_store_commit_seconds_bucket", kindBucket, []string{"le"}, nil},
		{"confgate_gateway_fleet_gateways", kindGauge, []string{"state"}, map[string][]string{"state": {"in_sync", "behind", "diverged", "not_reporting", "unknown"}}},
		{"confgate_gateway_fleet_clients", kindGauge, []string{"service", "state"}, map[string][]string{"service": {"monitoringcheck"}, "state": {"in_sync", "behind", "diverged", "not_reporting", "unknown"}}},
		{"confgate_gateway_panics_total", kindCounter, []string{"method"}, nil},
		{"confgate_build_info", kindGauge, []string{"version", "commit", "go_version"}, nil},
		{"process_resident_memory_bytes", kindGauge, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := exported[tc.name]
			if !ok {
				t.Fatalf("not exported; have %v", exported.names())
			}
			if s.kind != tc.kind {
				t.Errorf("kind %s, want %s", s.kind, tc.kind)
			}
			if got := slices.Sorted(maps.Keys(s.labels)); !slices.Equal(got, slices.Sorted(slices.Values(tc.labels))) {
				t.Errorf("labels %v, want %v", got, tc.labels)
			}
			for l, vs := range tc.values {
				for _, v := range vs {
					if !s.values[l][v] {
						t.Errorf("label %s: no value %q (has %v)", l, v, slices.Sorted(maps.Keys(s.values[l])))
					}
				}
			}
		})
	}
	if _, ok := exported["confgate_gateway_request_seconds"]; ok {
		t.Error("a histogram's family name is not a series")
	}
	// No panic was recovered: the vector is known from its descriptor,
	// and no value of its label is.
	if vs := exported["confgate_gateway_panics_total"].values; len(vs) != 0 {
		t.Errorf("panics: values %v of a vector without series", vs)
	}
	// A derived set is whole: every gRPC code, not only those seen.
	if n := len(exported["confgate_gateway_requests_total"].values["code"]); n != 17 {
		t.Errorf("%d codes, want the 17 gRPC defines", n)
	}
}

func TestDashboard(t *testing.T) {
	problems, titles := checkDashboard(read(t, dashboardFile), newChecker(exported))
	fail(t, dashboardFile, problems)
	// docs/alerts.md says what each panel shows.
	doc := string(read(t, alertsDoc))
	for _, title := range titles {
		if !strings.Contains(doc, "| "+title+" |") {
			t.Errorf("panel %q is not in the panel table of docs/alerts.md", title)
		}
	}
	t.Logf("%d panels checked", len(titles))
}

func TestAlertRules(t *testing.T) {
	c := newChecker(exported)
	anchors := anchorsOf(string(read(t, alertsDoc)))
	rules, problems := checkRules(read(t, filepath.Join(rulesDir, rulesName)), anchors, c)
	fail(t, rulesName, problems)
	if len(rules) == 0 {
		t.Fatal("no alerts")
	}
	fail(t, rulesTestName, checkRuleTests(read(t, filepath.Join(rulesDir, rulesTestName)), rulesName, rules, c))
	t.Logf("%d alerts checked", len(rules))
}
