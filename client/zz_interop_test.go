package client

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/testkit"
)

type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func TestZZInterop(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	g1 := testkit.StartGateway(t, k, topic, testkit.Options{})
	g2 := testkit.StartGateway(t, k, topic, testkit.Options{})
	for i := range 50 {
		testkit.Put(t, g1, fmt.Sprintf("svc/k%02d", i), fmt.Sprintf("v%d", i))
	}
	var lb logBuf
	v := startView(t, Config{Addrs: []string{g1.Addr, g2.Addr}, Prefixes: []string{"svc/"},
		Logger: slog.New(slog.NewTextHandler(&lb, nil))})
	waitSynced(t, v)
	_, end, _ := testkit.Snapshot(t, g1, "svc/")
	testkit.Eventually(t, 10*time.Second, "digest g1", func() bool { return bytes.Equal(v.Digest(), end.Digest) })
	// Concurrent writes while the client follows g1, then g1 dies mid-flow.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				testkit.Put(t, g2, fmt.Sprintf("svc/w%d/k%02d", w, i%13), fmt.Sprintf("x%d", i))
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	g1.Stop()
	wg.Wait()
	testkit.Delete(t, g2, "svc/k03")
	_, end2, _ := testkit.Snapshot(t, g2, "svc/")
	testkit.Eventually(t, 10*time.Second, "digest g2", func() bool { return bytes.Equal(v.Digest(), end2.Digest) })
	t.Logf("status %+v len %d", v.Status(), v.Len())
	t.Logf("logs:\n%s", lb.String())
}
