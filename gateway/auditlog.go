package gateway

import (
	"log/slog"
	"sync"
	"time"
)

// Refusals are logged at most refusalLogRate a second (bursts of ten
// times that): a client flooding bad credentials or denied calls must not
// flood the log. What is left out is counted, and the next line that is
// logged says how many were.
const refusalLogRate = 100

// refusalLog rate-limits the audit lines of refused calls. Writes are
// always logged: the per-principal write rate bounds them already.
type refusalLog struct {
	log *slog.Logger

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int64 // refusals not logged since the last line
}

func newRefusalLog(log *slog.Logger) *refusalLog {
	return &refusalLog{log: log, tokens: 10 * refusalLogRate}
}

// Info logs one refusal, unless over the rate; returns whether it did.
func (r *refusalLog) Info(msg string, args ...any) bool {
	r.mu.Lock()
	now := time.Now()
	if !r.last.IsZero() {
		r.tokens = min(10*refusalLogRate, r.tokens+now.Sub(r.last).Seconds()*refusalLogRate)
	}
	r.last = now
	if r.tokens < 1 {
		r.suppressed++
		r.mu.Unlock()
		return false
	}
	r.tokens--
	skipped := r.suppressed
	r.suppressed = 0
	r.mu.Unlock()
	if skipped > 0 {
		args = append(args, "refusals_not_logged_before", skipped)
	}
	r.log.Info(msg, args...)
	return true
}
