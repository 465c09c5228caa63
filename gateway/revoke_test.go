package gateway_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/confgate/confgate/auth"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc/codes"
)

// Removing a static token from the tokens file ends the streams opened
// with it (UNAUTHENTICATED, within about two seconds: the revalidation
// tick plus the file's poll interval) and refuses new calls with it;
// streams of other tokens go on.
func TestTokenRevokedMidStream(t *testing.T) {
	k := testkit.StartKafka(t)
	e := newAuthEnv(t, aOnlyACL, false, "carol", "writer")
	g := e.start(k, testkit.Topic(t), testkit.Options{})
	w := e.as(g, "writer")
	testkit.Put(t, w, "a/1", "1")
	carol := testkit.Subscribe(t, e.as(g, "carol"), &confgatev1.SubscribeRequest{Selector: sel("a/")})
	other := testkit.Subscribe(t, w, &confgatev1.SubscribeRequest{Selector: sel("a/")})
	for _, s := range []*testkit.Stream{carol, other} {
		s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	}

	// The file now holds the writer's token only (with a modification time
	// of its own, so the change shows on coarse-mtime file systems too).
	tf := filepath.Join(e.dir, "tokens")
	if err := os.WriteFile(tf, []byte(auth.HashToken(e.tokens["writer"])+" writer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Now().Add(time.Hour)
	if err := os.Chtimes(tf, mt, mt); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(20 * time.Second)
	var err error
	for err == nil || err == testkit.ErrTimeout {
		if time.Now().After(deadline) {
			t.Fatal("carol's stream still open after her token was revoked")
		}
		_, err = carol.Next(time.Until(deadline))
	}
	wantCode(t, "carol's stream", err, codes.Unauthenticated, "revoked")
	if n := testkit.Metric(t, g, "confgate_gateway_auth_failures_total", "revoked_in_stream"); n != 1 {
		t.Errorf("auth_failures{revoked_in_stream} = %v, want 1", n)
	}
	if _, err := firstRecv(e.as(g, "carol").Client, "a/"); err == nil {
		t.Error("a new stream with the revoked token was accepted")
	}
	testkit.Put(t, w, "a/2", "2")
	other.Until(10*time.Second, "the other token's delta", func(s *testkit.Stream) bool { return s.View["a/2"] != nil })
}
