package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/cursor"
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
	if !strings.Contains(status.Convert(err).Message(), "app/limit") {
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

// Two gateways, one topic: conditional increments through both never
// both win. (The four-gateway version on Apache Kafka, with a gateway
// killed, is internal/failover's TestConditionalCounters.)
func TestConditionalRaceAcrossGateways(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	gws := []*testkit.Gateway{testkit.StartGateway(t, k, topic, testkit.Options{}), testkit.StartGateway(t, k, topic, testkit.Options{})}
	ctx := ctxT(t)
	const writers, each = 6, 8
	var mu sync.Mutex
	won := 0
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := gws[w%2].Client
			var last []byte
			for done := 0; done < each; {
				var pc *confgatev1.Precondition
				n := 0
				got, err := c.Get(ctx, &confgatev1.GetRequest{Key: "race/n", MinCursor: last})
				switch status.Code(err) {
				case codes.NotFound:
					pc = absent()
				case codes.OK:
					pc = atVersion(got.GetEntry().GetVersion())
					fmt.Sscan(string(got.GetEntry().GetValue()), &n)
				default:
					t.Error(err)
					return
				}
				// A transaction fenced on every attempt answers UNAVAILABLE
				// ("retry with the same request ID"): retried as documented,
				// so a write that landed counts once.
				req := &confgatev1.PutRequest{Key: "race/n", Value: []byte(strconv.Itoa(n + 1)), Precondition: pc, RequestId: fmt.Sprintf("race-%d-%d-%d", w, done, n)}
				res, err := c.Put(ctx, req)
				for retry := 0; status.Code(err) == codes.Unavailable && retry < 5; retry++ {
					res, err = c.Put(ctx, req)
				}
				switch status.Code(err) {
				case codes.OK:
					last = res.GetCursor()
					done++
					mu.Lock()
					won++
					mu.Unlock()
				case codes.FailedPrecondition:
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, g := range gws {
		snap := readSnapshotAfter(t, g.Client, gws)
		if string(snap["race/n"]) != strconv.Itoa(won) {
			t.Fatalf("counter %q after %d successful increments", snap["race/n"], won)
		}
	}
	if f := testkit.Metric(t, gws[0], "confgate_store_transaction_fences_total", ""); f < 1 {
		t.Fatalf("fences %v", f)
	}
}

// readSnapshotAfter reads g's state once it has applied what every gateway
// wrote.
func readSnapshotAfter(t *testing.T, c confgatev1.ConfigServiceClient, all []*testkit.Gateway) map[string][]byte {
	t.Helper()
	var min []byte
	for _, g := range all {
		// A write through each gateway's serialization point returns a
		// cursor covering everything it wrote.
		r, err := g.Client.Put(ctxT(t), &confgatev1.PutRequest{Key: "race/barrier", Value: []byte("x"), RequestId: fmt.Sprintf("barrier-%p-%d", g, time.Now().UnixNano())})
		if err != nil {
			t.Fatal(err)
		}
		min = maxCursor(t, min, r.GetCursor())
	}
	return readSnapshot(t, c, min)
}

func maxCursor(t *testing.T, a, b []byte) []byte {
	t.Helper()
	if a == nil {
		return b
	}
	ca, err := cursor.Decode(a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := cursor.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return cursor.Max(ca, cb).Encode()
}

func TestDiffBetweenCursors(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	g := testkit.StartGateway(t, k, topic, testkit.Options{})
	ctx := ctxT(t)
	c := g.Client
	put := func(key, v string) *confgatev1.PutResponse {
		r, err := c.Put(ctx, &confgatev1.PutRequest{Key: key, Value: []byte(v), RequestId: key + "=" + v + fmt.Sprint(time.Now().UnixNano()), WaitApplied: true})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a1 := put("d/a", "1")
	put("d/b", "1")
	put("other/x", "1")
	from := put("d/c", "1").GetCursor()
	put("d/a", "2")
	put("d/a", "3")
	if _, err := c.Delete(ctx, &confgatev1.DeleteRequest{Key: "d/b", WaitApplied: true}); err != nil {
		t.Fatal(err)
	}
	put("d/new", "1")
	put("d/c", "tmp")
	put("other/x", "2")
	if _, err := c.Apply(ctx, &confgatev1.ApplyRequest{Operations: []*confgatev1.Operation{{Key: "d/c", Value: []byte("1")}}, WaitApplied: true}); err != nil {
		t.Fatal(err)
	}
	st, err := c.Diff(ctx, &confgatev1.DiffRequest{Prefix: "d/", FromCursor: from})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range m.GetChanges() {
			got = append(got, fmt.Sprintf("%s:%s>%s", d.GetKey(), d.GetBefore().GetValue(), d.GetAfter().GetValue()))
			if d.GetKey() == "d/a" && d.GetBefore().GetVersion().GetOffset() != a1.GetVersion().GetOffset() {
				t.Fatalf("before of d/a is %v, want %v", d.GetBefore().GetVersion(), a1.GetVersion())
			}
		}
		if m.GetLast() {
			break
		}
	}
	// d/c changed and changed back: its version differs, so it is listed
	// (same value, new version).
	want := "[d/a:1>3 d/b:1> d/c:1>1 d/new:>1]"
	if fmt.Sprint(got) != want {
		t.Fatalf("diff %v, want %v", got, want)
	}
	// A gateway started later holds no history from before its start:
	// OUT_OF_RANGE, naming the oldest cursor it answers from.
	late := testkit.StartGateway(t, k, topic, testkit.Options{})
	st, err = late.Client.Diff(ctx, &confgatev1.DiffRequest{Prefix: "d/", FromCursor: from})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.OutOfRange || !strings.Contains(status.Convert(err).Message(), "oldest cursor") {
		t.Fatalf("diff from before the history: %v", err)
	}
	// to must cover from.
	st, err = c.Diff(ctx, &confgatev1.DiffRequest{Prefix: "d/", FromCursor: a1.GetCursor(), ToCursor: from})
	if err == nil {
		if _, err = st.Recv(); err == nil {
			st, err = c.Diff(ctx, &confgatev1.DiffRequest{Prefix: "d/", FromCursor: from, ToCursor: a1.GetCursor()})
			if err == nil {
				_, err = st.Recv()
			}
		}
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("diff with to before from: %v", err)
	}
}

// A change set arrives in one delta even when deltas are cut small, and
// the cursors around it cover it whole (rule 7 of the history checker).
func TestChangeSetArrivesInOneDelta(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gateway.Config{ChunkBytes: 256}})
	ctx := ctxT(t)
	st, err := g.Client.Subscribe(ctx, &confgatev1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.Recv(); err != nil || m.GetSnapshotEnd() == nil {
		t.Fatalf("initial snapshot: %v %v", m, err)
	}
	var ops []*confgatev1.Operation
	for i := range 8 {
		ops = append(ops, &confgatev1.Operation{Key: fmt.Sprintf("big/%d", i), Value: bytes.Repeat([]byte{'v'}, 100)})
	}
	// Plain writes around the set, so its batch holds cuttable changes too.
	for i := range 4 {
		if _, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: fmt.Sprintf("plain/%d", i), Value: bytes.Repeat([]byte{'p'}, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := g.Client.Apply(ctx, &confgatev1.ApplyRequest{Operations: ops}); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for len(got) < 12 {
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		d := m.GetDelta()
		if d == nil {
			continue
		}
		set := 0
		for _, c := range d.GetChanges() {
			key := c.GetPut().GetKey()
			got[key]++
			if strings.HasPrefix(key, "big/") {
				set++
			}
		}
		if set != 0 && set != len(ops) {
			t.Fatalf("a delta carried %d of the change set's %d changes", set, len(ops))
		}
	}
}
