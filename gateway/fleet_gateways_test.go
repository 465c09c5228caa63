package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/fleet"
	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Gateways judge each other: three honest gateways see each other in sync
// once writes stop; a gateway record that reports a wrong digest at a real
// cursor (forged into the fleet topic, as a gateway with a corrupted state
// would report) is diverged on every honest gateway, and gone once it
// leaves. Gateways' own records never show among the clients.
func TestGatewaysJudgeEachOther(t *testing.T) {
	const every = 200 * time.Millisecond
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	gws := make([]*testkit.Gateway, 3)
	for i := range gws {
		gws[i] = testkit.StartGateway(t, k, topic, testkit.Options{
			Gateway: gateway.Config{Name: fmt.Sprintf("gw-%d", i), FleetReportInterval: every},
			Fleet:   &fleet.Config{MinInterval: every, Heartbeat: every, Grace: 2 * time.Second},
		})
	}
	for i := range 20 {
		testkit.Put(t, gws[i%len(gws)], fmt.Sprintf("app/key-%d", i), fmt.Sprintf("v%d", i))
	}
	states := func(g *testkit.Gateway) map[string]float64 {
		out := map[string]float64{}
		for _, s := range []string{"in_sync", "behind", "diverged", "not_reporting", "unknown"} {
			out[s] = gauge(g, "confgate_gateway_fleet_gateways", s)
		}
		return out
	}
	for i, g := range gws {
		testkit.Eventually(t, 20*time.Second, fmt.Sprintf("gw-%d sees its 2 peers in sync", i), func() bool {
			s := states(g)
			return s["in_sync"] == 2 && s["diverged"] == 0
		})
	}

	// A gateway whose state differs at the same cursor.
	head := gws[0].Store.Status()
	digest := append([]byte(nil), head.Digest...)
	digest[3] ^= 0x5a
	now := time.Now()
	forged := func(connected bool) []byte {
		b, err := json.Marshal(map[string]any{
			"v": 1, "client_id": "gateway gw-bad", "service": "confgate-gateway", "selector": []string{""},
			"gateway": "gw-bad", "connected": connected, "connected_since_ms": now.UnixMilli(),
			// Far ahead, so it never counts as not reporting.
			"last_report_ms": now.Add(time.Hour).UnixMilli(), "updated_ms": now.UnixMilli(),
			"applied_cursor": head.Cursor.Encode(), "digest": digest,
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	produce := func(value []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rec := &kgo.Record{Topic: fleet.TopicName(topic), Key: []byte("gateway gw-bad"), Value: value}
		if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(forged(true))
	for i, g := range gws {
		testkit.Eventually(t, 20*time.Second, fmt.Sprintf("gw-%d sees gw-bad diverged", i), func() bool {
			s := states(g)
			return s["diverged"] == 1 && s["in_sync"] == 2
		})
	}

	// Gateways are not clients: GetFleet lists none of them.
	resp, err := gws[1].Client.GetFleet(context.Background(), &confgatev1.GetFleetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.GetClients() {
		if strings.HasPrefix(c.GetClient().GetClientId(), "gateway ") || c.GetClient().GetService() == "confgate-gateway" {
			t.Errorf("GetFleet lists gateway record %q", c.GetClient().GetClientId())
		}
	}

	// The bad gateway leaves.
	produce(forged(false))
	for i, g := range gws {
		testkit.Eventually(t, 20*time.Second, fmt.Sprintf("gw-%d no longer counts gw-bad", i), func() bool {
			s := states(g)
			return s["diverged"] == 0 && s["in_sync"] == 2
		})
	}
}

// Two processes under one gateway name overwrite each other's fleet
// record and escape the digest check: both say so, the others do not.
func TestGatewayNameSharedShows(t *testing.T) {
	const every = 200 * time.Millisecond
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	var gws []*testkit.Gateway
	for _, name := range []string{"dup", "dup", "solo"} {
		gws = append(gws, testkit.StartGateway(t, k, topic, testkit.Options{
			Gateway: gateway.Config{Name: name, FleetReportInterval: every},
			Fleet:   &fleet.Config{MinInterval: every, Heartbeat: every, Grace: 2 * time.Second},
		}))
	}
	for i := range 2 {
		testkit.Eventually(t, 20*time.Second, fmt.Sprintf("dup #%d says its name is shared", i), func() bool {
			return gauge(gws[i], "confgate_gateway_fleet_name_shared", "") == 1
		})
	}
	// solo has judged the fleet by now (it sees a peer), and its name is
	// its own.
	testkit.Eventually(t, 20*time.Second, "solo judged its peers", func() bool {
		return gauge(gws[2], "confgate_gateway_fleet_gateways", "in_sync")+gauge(gws[2], "confgate_gateway_fleet_gateways", "behind") >= 1
	})
	if v := gauge(gws[2], "confgate_gateway_fleet_name_shared", ""); v != 0 {
		t.Fatalf("solo says its name is shared (%v)", v)
	}
}
