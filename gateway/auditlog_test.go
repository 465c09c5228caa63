package gateway

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A flood of refusals logs a burst, then nothing, and the next line that is
// logged counts what was left out.
func TestRefusalLogIsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	r := newRefusalLog(slog.New(slog.NewTextHandler(&buf, nil)))
	logged := 0
	start := time.Now()
	for range 5000 {
		if r.Info("refused", "principal", "flood") {
			logged++
		}
	}
	// The burst, plus what refilled while the loop ran.
	refill := int(time.Since(start).Seconds()*refusalLogRate) + 1
	if logged < 10*refusalLogRate || logged > 10*refusalLogRate+refill {
		t.Fatalf("%d of 5000 refusals logged, want the burst of %d plus at most %d refilled", logged, 10*refusalLogRate, refill)
	}
	r.mu.Lock()
	r.tokens = 1 // as after a quiet while
	r.mu.Unlock()
	buf.Reset()
	if !r.Info("refused", "principal", "later") || !strings.Contains(buf.String(), "refusals_not_logged_before=") {
		t.Fatalf("the next line does not count the refusals left out: %q", buf.String())
	}
}
