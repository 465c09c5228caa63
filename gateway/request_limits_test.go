package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A gateway may tighten the request limits (key length, selector size,
// value size); past them a request is INVALID_ARGUMENT naming the flag,
// within them it works. Loosening them past the rules every gateway
// applies to the topic is refused at start.
func TestRequestLimits(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gateway.Config{MaxKeyBytes: 10, MaxSelectorPrefixes: 2, MaxValueBytes: 100}})
	stream := func(ctx context.Context, prefixes ...string) error {
		st, err := g.Client.Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: sel(prefixes...)})
		if err == nil {
			_, err = st.Recv()
		}
		return err
	}
	for _, tc := range []struct {
		name string
		call func(ctx context.Context) error
		want string // "" when allowed
	}{
		{"key at the limit", func(ctx context.Context) error {
			_, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: "a/34567890", Value: []byte("v")})
			return err
		}, ""},
		{"key over the limit", func(ctx context.Context) error {
			_, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: "a/345678901", Value: []byte("v")})
			return err
		}, "key: is 11 bytes, longer than this gateway's limit 10 (--max-key-bytes)"},
		{"get of a key over the limit", func(ctx context.Context) error {
			_, err := g.Client.Get(ctx, &confgatev1.GetRequest{Key: "a/345678901"})
			return err
		}, "--max-key-bytes"},
		{"value at the limit", func(ctx context.Context) error {
			_, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: "a/v", Value: []byte(strings.Repeat("v", 100))})
			return err
		}, ""},
		{"value over the limit", func(ctx context.Context) error {
			_, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: "a/v", Value: []byte(strings.Repeat("v", 101))})
			return err
		}, "value: is 101 bytes, more than the limit 100"},
		{"selector at the limit", func(ctx context.Context) error { return stream(ctx, "a/", "b/") }, ""},
		{"selector over the limit", func(ctx context.Context) error { return stream(ctx, "a/", "b/", "c/") }, "selector: has 3 prefixes, more than this gateway's limit 2 (--max-selector-prefixes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := tc.call(ctx)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("within the limits: %v", err)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Fatalf("got %v, want INVALID_ARGUMENT containing %q", err, tc.want)
			}
		})
	}
	if _, err := gateway.New(gateway.Config{Source: g.Store, MaxKeyBytes: 2048}); err == nil || !strings.Contains(err.Error(), "may only tighten") {
		t.Fatalf("a key limit above the topic's rule: %v, want refused", err)
	}
}
