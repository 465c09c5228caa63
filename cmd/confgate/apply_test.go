package main

import (
	"regexp"
	"strings"
	"testing"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Flag mistakes of the write verbs are found before any gateway is called.
func TestWriteFlagsUsage(t *testing.T) {
	t.Parallel()
	c := cli{t: t, addr: closedPort(t)}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"put", "k", "v", "--if-absent", "--if-version", "0:1"}, "--if-absent and --if-version are exclusive"},
		{[]string{"delete", "k", "--if-absent", "--if-version", "0:1"}, "--if-absent and --if-version are exclusive"},
		{[]string{"put", "k", "v", "--if-version", "0"}, "--if-version: version \"0\": want PARTITION:OFFSET"},
		{[]string{"put", "k", "v", "--if-version", "absent"}, "use --if-absent"},
		{[]string{"delete", "k", "--if-version", "-1:3"}, "--if-version: version"},
		{[]string{"put", "k", "v", "--request-id", ""}, "--request-id is empty"},
		{[]string{"put", "k", "v", "--request-id", "a b"}, "--request-id: request ID has byte 0x20"},
		{[]string{"delete", "k", "--request-id", strings.Repeat("x", 129)}, "more than 128"},
		{[]string{"apply", "testdata/changesets/deploy.yaml", "--request-id", ""}, "--request-id is empty"},
		{[]string{"apply", "testdata/changesets/unknown_field.yaml"}, `testdata/changesets/unknown_field.yaml: operation 2 (line 4): unknown field "valu"`},
		{[]string{"apply"}, "usage: confgate apply FILE"},
		{[]string{"diff", "p/"}, "--from is required"},
		{[]string{"diff", "p/", "--from", "nope!"}, "--from"},
		{[]string{"diff", "/p", "--from", "x"}, "PREFIX"},
		{[]string{"rollback", "p/"}, "--to is required"},
		{[]string{"rollback", "p/", "--to", "nope!"}, "--to"},
		{[]string{"rollback", "--to", "x"}, "usage: confgate rollback PREFIX --to CURSOR"},
	} {
		r := c.run(tc.args...)
		if r.code != exitFailure || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: code %d stderr %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

func TestNewRequestID(t *testing.T) {
	a, b := newRequestID(), newRequestID()
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(a) || a == b {
		t.Errorf("request IDs %q %q", a, b)
	}
}

// A FAILED_PRECONDITION answer's detail says where each key is.
func TestPreconditionFailureMessage(t *testing.T) {
	st, err := status.New(codes.FailedPrecondition, "precondition failed").WithDetails(&confgatev1.PreconditionFailure{Keys: []*confgatev1.KeyVersion{
		{Key: "payments/limit", Version: &confgatev1.Version{Partition: 0, Offset: 42}},
		{Key: "payments/new"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var f failedKeys
	f.note(status.Error(codes.Unavailable, "x"))
	if f.pf != nil {
		t.Fatal("noted an UNAVAILABLE error")
	}
	f.note(st.Err())
	out := &syncBuffer{}
	g := &globals{env: &Env{Stdout: out}, output: "text"}
	werr := g.writeError(&rpcError{codes.FailedPrecondition, "precondition failed"}, f, "")
	if got, want := werr.Error(), "precondition failed: payments/limit is at 0:42, payments/new is absent"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if errCode(werr) != codes.FailedPrecondition || out.String() != "" {
		t.Errorf("code %v, stdout %q", errCode(werr), out)
	}
	if got, want := f.err("the prefix changed since the diff; run rollback again").Error(),
		"the prefix changed since the diff; run rollback again (payments/limit is at 0:42, payments/new is absent)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	g.output = "json"
	g.writeError(&rpcError{codes.FailedPrecondition, "x"}, f, "")
	if got, want := out.String(), `{"precondition_failed":[{"key":"payments/limit","version":{"partition":0,"offset":42}},{"key":"payments/new","version":null}]}`+"\n"; got != want {
		t.Errorf("JSON: %s, want %s", got, want)
	}
	// Another error, or no detail, is passed on as it is.
	other := &rpcError{codes.InvalidArgument, "bad"}
	if g.writeError(other, f, "") != other || g.writeError(&rpcError{codes.FailedPrecondition, "y"}, failedKeys{}, "").Error() != "y" {
		t.Error("writeError changed an error it has nothing to add to")
	}
}
