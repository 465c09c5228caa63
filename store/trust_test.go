package store

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestLogTrust(t *testing.T) {
	start := time.UnixMilli(100 * 86_400_000) // day 100
	day, hour, minute := int64(86_400_000), int64(3_600_000), int64(60_000)
	now := start.UnixMilli()
	def := newLogTrust(start, 24*time.Hour, time.Hour, false) // Kafka 4's defaults
	if want := now - day + 10*minute; def.after != want || !def.deadline.Equal(start.Add(5*time.Minute)) {
		t.Fatalf("after %d deadline %v, want %d and start+5m", def.after, def.deadline, want)
	}
	tests := []struct {
		name      string
		trust     logTrust
		ts        int64
		logAppend bool
		want      bool
	}{
		{"log append time, young", def, now - hour, true, true},
		{"log append time, at the bound", def, now - day + 10*minute, true, true},
		{"log append time, older", def, now - day + 10*minute - 1, true, false},
		{"create time, young", def, now - hour, false, true},
		{"create time within the lag of the bound", def, now - day + 10*minute + 30*minute, false, false},
		{"create time a lag past the bound", def, now - day + 10*minute + hour, false, true},
		{"no timestamp", def, -1, true, false},
		{"create time, lag unknown", newLogTrust(start, 24*time.Hour, -1, false), now, false, false},
		{"log append time, lag unknown", newLogTrust(start, 24*time.Hour, -1, false), now, true, true},
		{"turned off", newLogTrust(start, 24*time.Hour, time.Hour, true), now, true, false},
		{"retention too short to trust", newLogTrust(start, 5*time.Minute, 0, false), now, true, false},
		{"short retention: a thin guard", newLogTrust(start, 20*time.Minute, 0, false), now - 17*minute, true, true},
		{"short retention, older", newLogTrust(start, 20*time.Minute, 0, false), now - 19*minute, true, false},
	}
	for _, tt := range tests {
		if got := tt.trust.appendedAfter(tt.ts, tt.logAppend); got != tt.want {
			t.Errorf("%s: appendedAfter(%d, %v) = %v, want %v", tt.name, tt.ts, tt.logAppend, got, tt.want)
		}
	}
}

// Records read while bootstrapping lower the diff floor to the first
// record young enough per partition, when the bootstrap ends in time.
func TestBootstrapTrust(t *testing.T) {
	start := time.Now()
	trust := newLogTrust(start, 24*time.Hour, time.Hour, false)
	old, young := start.Add(-48*time.Hour).UnixMilli(), start.Add(-time.Hour).UnixMilli()
	at := func(r rec, ts int64) rec { r.ts, r.logAppend = ts, true; return r }
	bootstrap := func() *state {
		st := newState(topicA, []int64{0, 0, 0}, 1, bigLimits, trust)
		st.apply(recs(
			at(put(0, 0, "a", "1"), old),
			at(put(0, 1, "b", "1"), old),
			at(put(0, 2, "a", "2"), young), // partition 0 trusted from 2
			at(del(0, 3, "b"), old),        // timestamps need not grow
			at(put(1, 0, "c", "1"), old),   // partition 1: never young
			at(skip(2, 0, skipControl), young),
			at(del(2, 1, "d"), young), // partition 2 trusted from 0
		), 0)
		return st
	}
	tests := []struct {
		name      string
		end       time.Time
		diffFloor []int64
	}{
		{"in time", start.Add(time.Minute), []int64{2, 1, 0}},
		{"too late", start.Add(10 * time.Minute), []int64{4, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := bootstrap()
			st.startRecording(tt.end)
			if !slices.Equal(st.diffFloor, tt.diffFloor) {
				t.Fatalf("diffFloor %v, want %v", st.diffFloor, tt.diffFloor)
			}
			for _, c := range [][]int64{{2, 1, 0}, {3, 1, 1}, {4, 1, 2}} {
				kind, _, err := st.resume(cur(c...))
				wantDiff := cur(c...).Covers(cur(tt.diffFloor...))
				switch {
				case wantDiff && kind != ResumeDiff && kind != ResumeHistory:
					t.Errorf("resume(%v) = %v, %v; want a diff", c, kind, err)
				case !wantDiff && !errors.Is(err, ErrHistoryGone):
					t.Errorf("resume(%v) = %v, %v; want ErrHistoryGone", c, kind, err)
				}
			}
			if _, _, err := st.resume(cur(1, 1, 0)); !errors.Is(err, ErrHistoryGone) {
				t.Errorf("resume before the trusted offset = %v, want ErrHistoryGone", err)
			}
		})
	}
}
