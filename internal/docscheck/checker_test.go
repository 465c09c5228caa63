package docscheck

import (
	"strings"
	"testing"
)

// The checker against Markdown written as if it were docs/example.md, with
// the repository's real files and tests: each case's problems, in order, by
// a distinctive part of the message ("" for none).
func TestChecker(t *testing.T) {
	tests := loadTests(t)
	for _, tc := range []struct {
		name, md string
		want     []string
	}{
		{"cited tests that exist", "`TestApply`, `FuzzRecordDecode` and `BenchmarkSlowReaders`; TestDocs in prose.", nil},
		{"a test nowhere", "proved by `TestNoSuchThing`", []string{"TestNoSuchThing is cited but no *_test.go"}},
		{"a test in prose", "TestNoSuchThing proves it", []string{"TestNoSuchThing is cited"}},
		{"a test in a command", "```sh\ngo test -run 'TestNoSuchThing|TestApply' ./store\n```", []string{"TestNoSuchThing is cited"}},
		{"package context", "- `gateway`: `TestSnapshotThenDeltas`,\n  `TestApply` (in store)\n- `store`: `TestApply`",
			[]string{"TestApply is cited in gateway but is a test in store"}},
		{"context with a tag", "- `internal/brokerfaults` *(kafkafaults)*: `TestBrokerFaults`, `TestApply`",
			[]string{"TestApply is cited in internal/brokerfaults"}},
		{"context ends with the item", "- `gateway`: `TestSnapshotThenDeltas`\n\nAnd `TestApply`.", nil},
		{"a test in a package", "(`TestTLS` in `cmd/confgate`), (`TestTLS` in `gateway`)", []string{"TestTLS is cited in gateway"}},
		{"subtests", "`TestCheckReportsFirstViolation/out_of_order_within_a_partition`, `TestCheckReportsFirstViolation/no_such_case`",
			[]string{`names the subtest "no_such_case"`}},
		{"links", "[a](design-notes.md), [b](../README.md), [c](../internal/history), [d](nope.md), [e](https://example.com/x.md)",
			[]string{"link nope.md: docs/nope.md does not exist"}},
		{"anchors", "[a](clients.md#protocol-rules-for-every-client), [b](clients.md#nope), [c](#nope)",
			[]string{"clients.md has no heading with the anchor #nope", "docs/example.md has no heading with the anchor #nope"}},
		{"anchors in this file", "## Keys and `values`, again!\n\n## Keys and `values`, again!\n\n[a](#keys-and-values-again), [b](#keys-and-values-again-1), [c](#keys-and-values-again-2)",
			[]string{"has no heading with the anchor #keys-and-values-again-2"}},
		{"a link over two lines", "the [protocol\nrules](clients.md#protocol-rules-for-every-client)", nil},
		{"a link in code is code", "`[a](nope.md)`", nil},
		{"outside the repository", "[a](../../shared/DESIGN.md) and `shared/DESIGN.md`",
			[]string{"outside the repository", "outside the repository", "points outside the repository: the docs"}},
		{"shared in prose", "as ../shared says, and /work/shared; a shared history", []string{`"../shared"`, `"/work/shared;"`}},
		{"paths in code", "`scripts/kafka.sh`, `./cmd/confgate`, `proto/confgate/v1/*.pb.go`, `store/`, `scripts/nope.sh`, `proto/*.nope`",
			[]string{"scripts/nope.sh does not exist", "proto/*.nope matches no file"}},
		{"paths in fences", "```sh\n(cd clients/node && npm ci)\nout=$(scripts/kafka.sh up)\ngo test ./gateway/nope\n```",
			[]string{"gateway/nope does not exist"}},
		{"paths in prose", "see docs/clients.md, client/server and docs/nope.md.", []string{"docs/nope.md does not exist"}},
		{"not repository paths", "`payments/db/timeout`, `github.com/confgate/confgate/client`, `.cache/kafka/<version>/libs`, SIGKILL/SIGTERM", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkText("docs/example.md", tc.md, tests)
			ok := len(got) == len(tc.want)
			for i := 0; ok && i < len(got); i++ {
				ok = strings.Contains(got[i], tc.want[i])
			}
			if !ok {
				t.Errorf("problems:\n  %s\nwant (in order, containing):\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}
