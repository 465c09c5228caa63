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
	kafka4 := topicTiming{tombRetention: 24 * time.Hour, createLag: time.Hour} // Kafka 4's defaults
	def := newLogTrust(start, kafka4, false)
	if want := now - day + 10*minute; def.after != want || !def.deadline.Equal(start.Add(5*time.Minute)) {
		t.Fatalf("after %d deadline %v, want %d and start+5m", def.after, def.deadline, want)
	}
	with := func(f func(*topicTiming)) logTrust {
		tt := kafka4
		f(&tt)
		return newLogTrust(start, tt, false)
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
		{"create time, lag unknown", with(func(tt *topicTiming) { tt.createLag = -1 }), now, false, false},
		{"log append time, lag unknown", with(func(tt *topicTiming) { tt.createLag = -1 }), now, true, true},
		{"create time on a LogAppendTime topic (legacy batch)", with(func(tt *topicTiming) { tt.logAppendTime = true }), now, false, false},
		{"log append time on a LogAppendTime topic", with(func(tt *topicTiming) { tt.logAppendTime = true }), now, true, true},
		{"unclean leader election allowed", with(func(tt *topicTiming) { tt.uncleanElection = true }), now, true, false},
		{"turned off", newLogTrust(start, kafka4, true), now, true, false},
		{"retention unknown", with(func(tt *topicTiming) { tt.tombRetention = 0 }), now, true, false},
		{"retention too short to trust", with(func(tt *topicTiming) { tt.tombRetention = 5 * time.Minute }), now, true, false},
		{"short retention: a thin guard", with(func(tt *topicTiming) { tt.tombRetention = 20 * time.Minute }), now - 17*minute, true, true},
		{"short retention, older", with(func(tt *topicTiming) { tt.tombRetention = 20 * time.Minute }), now - 19*minute, true, false},
	}
	for _, tt := range tests {
		if got := tt.trust.appendedAfter(tt.ts, tt.logAppend); got != tt.want {
			t.Errorf("%s: appendedAfter(%d, %v) = %v, want %v", tt.name, tt.ts, tt.logAppend, got, tt.want)
		}
	}
}

// Records read while bootstrapping lower the diff floor to the first
// record young enough per partition, once the bootstrap is over, in time,
// and never below the log start offsets listed after it nor at or below a
// tombstone the store forgot meanwhile.
func TestBootstrapTrust(t *testing.T) {
	start := time.Now()
	trust := newLogTrust(start, topicTiming{tombRetention: 24 * time.Hour, createLag: time.Hour}, false)
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
		forget    bool    // the store forgets tombstones while bootstrapping
		logStart  []int64 // listed after the bootstrap
		end       time.Time
		diffFloor []int64
	}{
		{"in time", false, []int64{0, 0, 0}, start.Add(time.Minute), []int64{2, 1, 0}},
		{"at the deadline", false, []int64{0, 0, 0}, trust.deadline, []int64{2, 1, 0}},
		{"too late", false, []int64{0, 0, 0}, trust.deadline.Add(time.Millisecond), []int64{4, 1, 2}},
		{"log start moved while reading", false, []int64{3, 1, 1}, start.Add(time.Minute), []int64{3, 1, 1}},
		{"a tombstone forgotten while reading", true, []int64{0, 0, 0}, start.Add(time.Minute), []int64{4, 1, 2}},
		{"start offsets unknown", false, nil, start.Add(time.Minute), []int64{4, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := bootstrap()
			if tt.forget {
				// Applied at time 0: a cutoff of 1 forgets b@0:3 and d@2:1.
				if n := st.purgeTombstones(1); n != 2 {
					t.Fatalf("purged %d tombstones, want 2", n)
				}
			}
			if !st.trustPending([]int64{4, 1, 2}) || st.trustPending([]int64{5, 1, 2}) {
				t.Fatal("trustPending: want true exactly when caught up")
			}
			st.trustStart = tt.logStart
			if tt.logStart != nil && st.trustPending([]int64{4, 1, 2}) {
				t.Fatal("trustPending with the start offsets known")
			}
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
			if st.trust.on {
				t.Fatal("trust still on after startRecording")
			}
		})
	}
}
