package monitoringcheck

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/fleet"
	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/node"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
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
// fleet view) on the in-process dev broker, makes one Put so that the
// request histogram vector has a series (its type is then known, and with
// it its _bucket series), and reads the metrics it registered.
func gatewayInventory() (inventory, error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, err
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := node.Start(ctx, node.Config{
		Store:   store.Config{Brokers: cluster.ListenAddrs(), Topic: "config", CreateTopic: true},
		Gateway: gateway.Config{Name: "monitoringcheck"},
		Fleet:   &fleet.Config{},
		Listen:  "127.0.0.1:0",
		Logger:  quiet,
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
	if _, err := confgatev1.NewConfigServiceClient(conn).Put(ctx, &confgatev1.PutRequest{Key: "a", Value: []byte("1"), WaitApplied: true}); err != nil {
		return nil, err
	}
	return inventoryOf(n.Registry)
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
// its labels and type as registered: vectors with no series yet
// included, histogram suffixes expanded, the fleet's metrics present.
func TestInventory(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   kind // kindUnknown: a gauge, or not collected yet
		labels []string
	}{
		{"confgate_store_ready", kindGauge, nil},
		{"confgate_store_lag_records", kindGauge, []string{"partition"}},
		{"confgate_gateway_resumes_total", kindCounter, []string{"outcome"}},
		{"confgate_gateway_auth_failures_total", kindCounter, []string{"reason"}},
		{"confgate_gateway_request_seconds_bucket", kindBucket, []string{"method", "le"}},
		{"confgate_gateway_request_seconds_count", kindCount, []string{"method"}},
		{"confgate_store_commit_seconds_bucket", kindBucket, []string{"le"}},
		{"confgate_gateway_fleet_gateways", kindUnknown, []string{"state"}},
		{"confgate_gateway_fleet_clients", kindUnknown, []string{"service", "state"}},
		{"confgate_build_info", kindGauge, []string{"version", "commit", "go_version"}},
		{"process_resident_memory_bytes", kindGauge, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := exported[tc.name]
			if !ok {
				t.Fatalf("not exported; have %v", exported.names())
			}
			// The fleet's gauges have series only once the fleet was
			// judged (gateways) or a client reported (clients).
			if s.kind != tc.kind && !(tc.kind == kindUnknown && s.kind == kindGauge) {
				t.Errorf("kind %s, want %s", s.kind, tc.kind)
			}
			if len(s.labels) != len(tc.labels) {
				t.Errorf("labels %v, want %v", s.labels, tc.labels)
			}
			for _, l := range tc.labels {
				if !s.labels[l] {
					t.Errorf("no label %s (has %v)", l, s.labels)
				}
			}
		})
	}
	if _, ok := exported["confgate_gateway_request_seconds"]; ok {
		t.Error("a histogram's family name is not a series")
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
