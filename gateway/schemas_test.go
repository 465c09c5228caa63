package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const rateSchema = `{"type": "json", "schema": {"type": "object", "properties": {"rate": {"type": "integer", "maximum": 100}}, "required": ["rate"]}}`

func TestSchemasRefuseBadWrites(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	g := testkit.StartGateway(t, k, topic, testkit.Options{})
	ctx := ctxT(t)
	c := g.Client
	mustPut := func(key, v string) *confgatev1.PutResponse {
		t.Helper()
		r, err := c.Put(ctx, &confgatev1.PutRequest{Key: key, Value: []byte(v), RequestId: fmt.Sprintf("p-%x", key+v), WaitApplied: true})
		if err != nil {
			t.Fatalf("put %s=%s: %v", key, v, err)
		}
		return r
	}
	mustPut("svc/a", `{"rate": 500}`) // before any schema
	// A schema the current config breaks is refused, naming the value.
	_, err := c.Put(ctx, &confgatev1.PutRequest{Key: "_confgate/schemas/svc/*", Value: []byte(rateSchema), RequestId: "s1"})
	wantInvalid(t, err, "svc/a", "maximum", "/rate", "same change set")
	// Together with the fix, in one change set, it is published.
	if _, err := c.Apply(ctx, &confgatev1.ApplyRequest{WaitApplied: true, Operations: []*confgatev1.Operation{
		{Key: "_confgate/schemas/svc/*", Value: []byte(rateSchema)},
		{Key: "svc/a", Value: []byte(`{"rate": 50}`)},
	}}); err != nil {
		t.Fatalf("schema with its fix: %v", err)
	}
	for name, req := range map[string]*confgatev1.PutRequest{
		"conditional": {Key: "svc/b", Value: []byte(`{"rate": 250}`), Precondition: absent()},
		"plain":       {Key: "svc/b", Value: []byte(`{"rate": 250}`)},
	} {
		_, err := c.Put(ctx, req)
		wantInvalid(t, err, "svc/b", "maximum", "/rate", "_confgate/schemas/svc/*")
		_ = name
	}
	_, err = c.Put(ctx, &confgatev1.PutRequest{Key: "svc/b", Value: []byte(`{}`), RequestId: "r2"})
	wantInvalid(t, err, "svc/b", "required", "", "rate")
	_, err = c.Put(ctx, &confgatev1.PutRequest{Key: "svc/b", Value: []byte(`not json`), RequestId: "r3"})
	wantInvalid(t, err, "svc/b", "json", "", "")
	// A change set fails as a whole.
	_, err = c.Apply(ctx, &confgatev1.ApplyRequest{Operations: []*confgatev1.Operation{
		{Key: "svc/ok", Value: []byte(`{"rate": 1}`)},
		{Key: "svc/bad", Value: []byte(`{"rate": 101}`)},
	}})
	wantInvalid(t, err, "svc/bad", "maximum", "/rate", "")
	// Typed schemas; the most specific wins.
	mustPut("_confgate/schemas/svc/timeout", `{"type": "duration", "max": "1m"}`)
	_, err = c.Put(ctx, &confgatev1.PutRequest{Key: "svc/timeout", Value: []byte("2m"), RequestId: "t1"})
	wantInvalid(t, err, "svc/timeout", "max", "", "_confgate/schemas/svc/timeout")
	mustPut("svc/timeout", "30s")
	// Schema documents must compile; other reserved keys are refused.
	_, err = c.Put(ctx, &confgatev1.PutRequest{Key: "_confgate/schemas/x/*", Value: []byte(`{"type": "nope"}`), RequestId: "bad-schema"})
	wantInvalid(t, err, "_confgate/schemas/x/*", "schema", "", "type")
	_, err = c.Put(ctx, &confgatev1.PutRequest{Key: "_confgate/other", Value: []byte(`1`)})
	wantInvalid(t, err, "_confgate/other", "reserved", "", "")
	snap := readSnapshotAfter(t, c, []*testkit.Gateway{g})
	if _, ok := snap["svc/b"]; ok {
		t.Fatal("a refused write was written")
	}
	if _, ok := snap["svc/ok"]; ok {
		t.Fatal("part of a refused change set was written")
	}

	// A foreign producer's record that breaks the schema is applied (the
	// log is the truth), counted and flagged on /debug/state.
	p := testkit.Producer(t, k)
	testkit.Produce(t, p, &kgo.Record{Topic: topic, Key: []byte("svc/foreign"), Value: []byte(`{"rate": 999}`)})
	testkit.Eventually(t, 10e9, "the foreign record applied", func() bool {
		_, err := c.Get(ctx, &confgatev1.GetRequest{Key: "svc/foreign"})
		return err == nil
	})
	if n := testkit.Metric(t, g, "confgate_store_schema_violations_total", ""); n != 1 {
		t.Fatalf("schema violations counted: %v", n)
	}
	st, body := schemaProblems(t, g)
	if v := st.SchemaViolations["svc/foreign"]; !strings.Contains(v, "maximum") {
		t.Fatalf("/debug/state flags %q for svc/foreign: %s", v, body)
	}
	// Fixed by a valid write: no longer flagged.
	mustPut("svc/foreign", `{"rate": 9}`)
	if st, body := schemaProblems(t, g); len(st.SchemaViolations) != 0 {
		t.Fatalf("still flagged after a valid write: %s", body)
	}
}

// debugSchemas is the schema part of /debug/state.
type debugSchemas struct {
	SchemaViolations map[string]string `json:"schema_violations"`
	InvalidSchemas   map[string]string `json:"invalid_schemas"`
}

// schemaProblems reads g's /debug/state: its schema part, and the body.
func schemaProblems(t *testing.T, g *testkit.Gateway) (debugSchemas, []byte) {
	t.Helper()
	resp, err := http.Get("http://" + g.Admin + "/debug/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var st debugSchemas
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("/debug/state: %v: %s", err, body)
	}
	return st, body
}

// wantInvalid checks err is INVALID_ARGUMENT naming key, rule and path.
func wantInvalid(t *testing.T, err error, key, rule, path, more string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("want INVALID_ARGUMENT for %s, got %v", key, err)
	}
	for _, s := range []string{key, "rule " + rule, path, more} {
		if !strings.Contains(st.Message(), s) {
			t.Fatalf("message %q does not say %q", st.Message(), s)
		}
	}
}

// Records other producers write with the gateways' own headers are
// hostile too: a schema document that does not compile is flagged and
// governs nothing; a recorded precondition that did not hold where the
// record landed is counted; a forged change-set header that never
// completes holds its partition back only until the hold time, then the
// record is applied.
func TestForeignRecordsWithGatewayHeaders(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	g := testkit.StartGateway(t, k, topic, testkit.Options{Store: store.Config{SetHoldTimeout: time.Second}})
	ctx := ctxT(t)
	c := g.Client
	if _, err := c.Put(ctx, &confgatev1.PutRequest{Key: "f/cas", Value: []byte("1"), RequestId: "f1", WaitApplied: true}); err != nil {
		t.Fatal(err)
	}
	p := testkit.Producer(t, k)
	testkit.Produce(t, p,
		&kgo.Record{Topic: topic, Key: []byte("_confgate/schemas/f/*"), Value: []byte(`{"type": "int", "max": "ten"}`)},
		// Claims the key was absent; it was at first's version.
		&kgo.Record{Topic: topic, Key: []byte("f/cas"), Value: []byte("2"), Headers: []kgo.RecordHeader{{Key: store.IfHeader, Value: []byte("absent")}}},
		// Operation 0 of a set of 2 whose other record never comes.
		&kgo.Record{Topic: topic, Key: []byte("f/forged"), Value: []byte("x"), Headers: []kgo.RecordHeader{{Key: store.SetHeader, Value: []byte("0/2:forged")}}},
	)
	testkit.Eventually(t, 15e9, "the forged set's record applied after the hold time", func() bool {
		_, err := c.Get(ctx, &confgatev1.GetRequest{Key: "f/forged"})
		return err == nil
	})
	if n := testkit.Metric(t, g, "confgate_store_precondition_violations_total", ""); n != 1 {
		t.Fatalf("precondition violations counted: %v", n)
	}
	if n := testkit.Metric(t, g, "confgate_store_broken_change_sets_total", ""); n != 1 {
		t.Fatalf("broken change sets counted: %v", n)
	}
	// The invalid schema governs nothing: any value is accepted.
	if _, err := c.Put(ctx, &confgatev1.PutRequest{Key: "f/n", Value: []byte("not a number"), RequestId: "f2"}); err != nil {
		t.Fatalf("a schema that does not compile must not govern: %v", err)
	}
	if st, body := schemaProblems(t, g); !strings.Contains(st.InvalidSchemas["_confgate/schemas/f/*"], "max") {
		t.Fatalf("/debug/state invalid_schemas: %s", body)
	}
}
