package gateway_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func absent() *confgatev1.Precondition {
	return &confgatev1.Precondition{Condition: &confgatev1.Precondition_Absent{Absent: true}}
}

func atVersion(v *confgatev1.Version) *confgatev1.Precondition {
	return &confgatev1.Precondition{Condition: &confgatev1.Precondition_Version{Version: v}}
}

// preconditionKeys returns the PreconditionFailure detail of err.
func preconditionKeys(t *testing.T, err error) []*confgatev1.KeyVersion {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("want FAILED_PRECONDITION, got %v", err)
	}
	for _, d := range st.Details() {
		if pf, ok := d.(*confgatev1.PreconditionFailure); ok {
			return pf.GetKeys()
		}
	}
	t.Fatalf("no PreconditionFailure detail in %v", err)
	return nil
}

func TestConditionalPut(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	g := testkit.StartGateway(t, k, topic, testkit.Options{})
	ctx := ctxT(t)
	c := g.Client

	first, err := c.Put(ctx, &confgatev1.PutRequest{Key: "app/limit", Value: []byte("1"), Precondition: absent()})
	if err != nil {
		t.Fatalf("put if absent on an absent key: %v", err)
	}
	_, err = c.Put(ctx, &confgatev1.PutRequest{Key: "app/limit", Value: []byte("2"), Precondition: absent()})
	keys := preconditionKeys(t, err)
	if len(keys) != 1 || keys[0].GetKey() != "app/limit" || keys[0].GetVersion().GetOffset() != first.GetVersion().GetOffset() || keys[0].GetVersion().GetPartition() != first.GetVersion().GetPartition() {
		t.Fatalf("failure names %v, want app/limit at %v", keys, first.GetVersion())
	}
	if !contains(status.Convert(err).Message(), "app/limit") {
		t.Fatalf("message %q does not name the key", status.Convert(err).Message())
	}
	second, err := c.Put(ctx, &confgatev1.PutRequest{Key: "app/limit", Value: []byte("2"), Precondition: atVersion(first.GetVersion()), WaitApplied: true})
	if err != nil {
		t.Fatalf("put at the current version: %v", err)
	}
	// The old version no longer matches, and nothing was written for the
	// refused writes: the value is the second one.
	if _, err := c.Delete(ctx, &confgatev1.DeleteRequest{Key: "app/limit", Precondition: atVersion(first.GetVersion())}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("delete at a stale version: %v", err)
	}
	got, err := c.Get(ctx, &confgatev1.GetRequest{Key: "app/limit", MinCursor: second.GetCursor()})
	if err != nil || string(got.GetEntry().GetValue()) != "2" {
		t.Fatalf("get: %v %q", err, got.GetEntry().GetValue())
	}
	if _, err := c.Delete(ctx, &confgatev1.DeleteRequest{Key: "app/limit", Precondition: atVersion(second.GetVersion()), WaitApplied: true}); err != nil {
		t.Fatalf("delete at the current version: %v", err)
	}
	if _, err := c.Put(ctx, &confgatev1.PutRequest{Key: "app/limit", Value: []byte("3"), Precondition: absent()}); err != nil {
		t.Fatalf("put if absent after the delete: %v", err)
	}
	// Bad preconditions are INVALID_ARGUMENT.
	for _, pc := range []*confgatev1.Precondition{
		{},
		{Condition: &confgatev1.Precondition_Absent{Absent: false}},
		atVersion(&confgatev1.Version{Partition: -1}),
	} {
		if _, err := c.Put(ctx, &confgatev1.PutRequest{Key: "app/x", Value: []byte("1"), Precondition: pc}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("precondition %v: %v", pc, err)
		}
	}
}

func TestRequestIDRetry(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	ctx := ctxT(t)
	c := g.Client
	req := &confgatev1.PutRequest{Key: "app/a", Value: []byte("v1"), RequestId: "req-1", WaitApplied: true}
	first, err := c.Put(ctx, req)
	if err != nil || first.GetDuplicate() {
		t.Fatalf("first: %v %v", first, err)
	}
	// A newer write by someone else, then the retry of the first: the
	// retry must not overwrite it.
	if _, err := c.Put(ctx, &confgatev1.PutRequest{Key: "app/a", Value: []byte("v2"), RequestId: "req-2", WaitApplied: true}); err != nil {
		t.Fatal(err)
	}
	retry, err := c.Put(ctx, req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !retry.GetDuplicate() || retry.GetVersion().GetOffset() != first.GetVersion().GetOffset() {
		t.Fatalf("retry answered %v, want the original %v as a duplicate", retry, first)
	}
	got, err := c.Get(ctx, &confgatev1.GetRequest{Key: "app/a", MinCursor: retry.GetCursor()})
	if err != nil || string(got.GetEntry().GetValue()) != "v2" {
		t.Fatalf("the retry overwrote the newer write: %q %v", got.GetEntry().GetValue(), err)
	}
	// The same ID for another key is refused.
	if _, err := c.Put(ctx, &confgatev1.PutRequest{Key: "app/b", Value: []byte("x"), RequestId: "req-1"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("reused ID: %v", err)
	}
	if _, err := c.Put(ctx, &confgatev1.PutRequest{Key: "app/b", Value: []byte("x"), RequestId: "bad id"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("ID with a space: %v", err)
	}
	// Concurrent retries of one ID: one write.
	var wg sync.WaitGroup
	res := make([]*confgatev1.PutResponse, 8)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.Put(ctx, &confgatev1.PutRequest{Key: "app/c", Value: []byte("c"), RequestId: "req-c"})
			if err != nil {
				t.Error(err)
			}
			res[i] = r
		}()
	}
	wg.Wait()
	dups := 0
	for _, r := range res {
		if r.GetDuplicate() {
			dups++
		}
		if r.GetVersion().GetOffset() != res[0].GetVersion().GetOffset() {
			t.Fatalf("retries got different versions: %v", res)
		}
	}
	if dups != len(res)-1 {
		t.Fatalf("%d of %d concurrent retries were duplicates, want %d", dups, len(res), len(res)-1)
	}
}

func TestApplyAllOrNothing(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	ctx := ctxT(t)
	c := g.Client
	ops := []*confgatev1.Operation{}
	for _, key := range []string{"svc/a", "svc/b", "svc/c", "svc/d", "svc/e", "svc/f"} {
		ops = append(ops, &confgatev1.Operation{Key: key, Value: []byte(key), Precondition: absent()})
	}
	res, err := c.Apply(ctx, &confgatev1.ApplyRequest{Operations: ops, WaitApplied: true})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if len(res.GetVersions()) != len(ops) {
		t.Fatalf("versions %v", res.GetVersions())
	}
	parts := map[int32]bool{}
	for _, v := range res.GetVersions() {
		parts[v.GetPartition()] = true
	}
	if len(parts) < 2 {
		t.Fatalf("the set should span partitions: %v", res.GetVersions())
	}
	// One failing precondition: nothing written.
	bad := []*confgatev1.Operation{
		{Key: "svc/a", Value: []byte("a2"), Precondition: atVersion(res.GetVersions()[0])},
		{Key: "svc/b", Value: []byte("b2"), Precondition: absent()},
		{Key: "svc/new", Value: []byte("n")},
	}
	_, err = c.Apply(ctx, &confgatev1.ApplyRequest{Operations: bad})
	if keys := preconditionKeys(t, err); len(keys) != 1 || keys[0].GetKey() != "svc/b" {
		t.Fatalf("failed keys %v", keys)
	}
	// validate_only checks and writes nothing.
	good := []*confgatev1.Operation{
		{Key: "svc/a", Value: []byte("a2"), Precondition: atVersion(res.GetVersions()[0])},
		{Key: "svc/b", Delete: true},
	}
	if vr, err := c.Apply(ctx, &confgatev1.ApplyRequest{Operations: good, ValidateOnly: true}); err != nil || len(vr.GetVersions()) != 0 {
		t.Fatalf("validate only: %v %v", vr, err)
	}
	end, err := c.Apply(ctx, &confgatev1.ApplyRequest{Operations: good, WaitApplied: true})
	if err != nil {
		t.Fatalf("apply after validate: %v", err)
	}
	snap := readSnapshot(t, c, end.GetCursor())
	if string(snap["svc/a"]) != "a2" || snap["svc/b"] != nil || snap["svc/new"] != nil || len(snap) != 5 {
		t.Fatalf("state after the sets: %q", snap)
	}
	// Rules of change sets.
	for name, req := range map[string]*confgatev1.ApplyRequest{
		"empty":          {},
		"key twice":      {Operations: []*confgatev1.Operation{{Key: "x/a", Value: []byte("1")}, {Key: "x/a", Delete: true}}},
		"delete w/ data": {Operations: []*confgatev1.Operation{{Key: "x/a", Delete: true, Value: []byte("1")}}},
		"bad key":        {Operations: []*confgatev1.Operation{{Key: "/x", Value: []byte("1")}}},
		"reserved":       {Operations: []*confgatev1.Operation{{Key: "_confgate/other", Value: []byte("1")}}},
	} {
		if _, err := c.Apply(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func readSnapshot(t *testing.T, c confgatev1.ConfigServiceClient, min []byte) map[string][]byte {
	t.Helper()
	st, err := c.GetSnapshot(ctxT(t), &confgatev1.GetSnapshotRequest{MinCursor: min})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range m.GetChunk().GetEntries() {
			out[e.GetKey()] = e.GetValue()
		}
		if m.GetEnd() != nil {
			return out
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
