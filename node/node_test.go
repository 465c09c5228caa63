package node_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/node"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestNodeLifecycle(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("serves, then stops in order", func(t *testing.T) {
		n, err := node.Start(ctx, node.Config{Store: store.Config{Brokers: c.ListenAddrs(), Topic: "cfg", CreateTopic: true}, AdminListen: "127.0.0.1:0", Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		if n.AdminAddr() == "" || !strings.HasPrefix(n.GRPCAddr(), "127.0.0.1:") {
			t.Fatalf("addresses %q, %q", n.GRPCAddr(), n.AdminAddr())
		}
		conn, err := grpc.NewClient(n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cl := confgatev1.NewConfigServiceClient(conn)
		if _, err := cl.Put(ctx, &confgatev1.PutRequest{Key: "a", Value: []byte("1"), WaitApplied: true}); err != nil {
			t.Fatal(err)
		}
		st, err := cl.Subscribe(ctx, &confgatev1.SubscribeRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for m, err := st.Recv(); m.GetSnapshotEnd() == nil; m, err = st.Recv() {
			if err != nil {
				t.Fatal(err)
			}
		}
		n.Stop()
		// The stream ends with the drain's UNAVAILABLE ("resume
		// elsewhere"), which needs the gateway to drain before the store
		// stops; then the node stops cleanly.
		for {
			if _, err = st.Recv(); err != nil {
				break
			}
		}
		if !strings.Contains(err.Error(), "shutting down") {
			t.Errorf("stream ended with %v, want the drain's message", err)
		}
		if err := n.Wait(); err != nil {
			t.Fatalf("Wait after Stop = %v, want nil", err)
		}
		if _, err := net.Dial("tcp", n.GRPCAddr()); err == nil {
			t.Error("still listening after Wait")
		}
	})

	t.Run("a store that fails stops the node with its error", func(t *testing.T) {
		n, err := node.Start(ctx, node.Config{Store: store.Config{Brokers: c.ListenAddrs(), Topic: "missing"}, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.WaitReady(ctx); !errors.Is(err, store.ErrTopicMissing) {
			t.Fatalf("WaitReady = %v, want ErrTopicMissing", err)
		}
		if err := n.Wait(); !errors.Is(err, store.ErrTopicMissing) {
			t.Fatalf("Wait = %v, want ErrTopicMissing", err)
		}
	})

	t.Run("bad config is an error at start", func(t *testing.T) {
		if _, err := node.Start(ctx, node.Config{}); err == nil {
			t.Fatal("started without brokers")
		}
	})
}
