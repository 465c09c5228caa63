package gateway_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

func TestAdminMetricsAndReflection(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	testkit.Put(t, g, "m/a", "1")
	s := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{})
	s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })

	resp, err := http.Get("http://" + g.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`confgate_store_lag_records{partition="0"}`,
		"confgate_store_ready 1",
		`confgate_gateway_subscribers{method="Subscribe"} 1`,
		`confgate_gateway_messages_sent_total{kind="snapshot_end"}`,
		`confgate_gateway_snapshots_total{reason="initial"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	resp, err = http.Get("http://" + g.Admin + "/debug/state")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"digest":`) || !strings.Contains(string(body), `"ready":true`) {
		t.Fatalf("/debug/state: %s", body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := reflectionpb.NewServerReflectionClient(g.Conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, svc := range r.GetListServicesResponse().GetService() {
		names = append(names, svc.Name)
	}
	if !strings.Contains(strings.Join(names, ","), "confgate.v1.ConfigService") || !strings.Contains(strings.Join(names, ","), "grpc.health.v1.Health") {
		t.Fatalf("reflection lists %v", names)
	}
}

// The admin listener serves Go's profiles (open here: no Authenticator).
func TestAdminPprof(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	for _, tc := range []struct{ path, has string }{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/heap?debug=1", "heap profile"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile"},
	} {
		resp, err := http.Get("http://" + g.Admin + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tc.has) {
			t.Errorf("%s: %d, body lacks %q", tc.path, resp.StatusCode, tc.has)
		}
	}
}
