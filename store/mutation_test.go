package store

// Tests that pin down what the mutation run (scripts/mutation.sh) found
// unpinned in store; docs/testing.md lists each mutant and its test.

import (
	"testing"
	"time"
)

// TestConfigDefaults: a zero or negative knob gets its default, a positive
// one is kept; ReplicationFactor's default applies to 0 only, since -1
// (the broker's default) is a valid setting of its own.
func TestConfigDefaults(t *testing.T) {
	base := Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t"}
	zero, err := base.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	neg := base
	neg.Partitions, neg.HistoryBatches, neg.HistoryBytes = -1, -1, -1
	neg.TombstoneRetention, neg.MaxTombstones, neg.MaxTombstoneBytes = -1, -1, -1
	neg.MaxBatchRecords, neg.FetchMaxWait, neg.FetchMaxPartitionBytes = -1, -1, -1
	neg.ProbeInterval, neg.StaleAfter, neg.ProduceTimeout = -1, -1, -1
	negOut, err := neg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	set := base
	set.Partitions, set.ReplicationFactor, set.HistoryBatches, set.HistoryBytes = 3, 2, 7, 9
	set.TombstoneRetention, set.MaxTombstones, set.MaxTombstoneBytes = time.Minute, 11, 13
	set.MaxBatchRecords, set.FetchMaxWait, set.FetchMaxPartitionBytes = 17, time.Second, 19
	set.ProbeInterval, set.StaleAfter, set.ProduceTimeout = 3*time.Second, 4*time.Second, 5*time.Second
	setOut, err := set.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	rfMinus := base
	rfMinus.ReplicationFactor = -1
	rfMinusOut, err := rfMinus.withDefaults()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name                 string
		zero, neg, set       any // the field after withDefaults
		wantDefault, wantSet any
	}{
		{"Partitions", zero.Partitions, negOut.Partitions, setOut.Partitions, int32(6), int32(3)},
		{"ReplicationFactor", zero.ReplicationFactor, rfMinusOut.ReplicationFactor, setOut.ReplicationFactor, int16(-1), int16(2)},
		{"HistoryBatches", zero.HistoryBatches, negOut.HistoryBatches, setOut.HistoryBatches, 65536, 7},
		{"HistoryBytes", zero.HistoryBytes, negOut.HistoryBytes, setOut.HistoryBytes, int64(64 << 20), int64(9)},
		{"TombstoneRetention", zero.TombstoneRetention, negOut.TombstoneRetention, setOut.TombstoneRetention, 24 * time.Hour, time.Minute},
		{"MaxTombstones", zero.MaxTombstones, negOut.MaxTombstones, setOut.MaxTombstones, 200000, 11},
		{"MaxTombstoneBytes", zero.MaxTombstoneBytes, negOut.MaxTombstoneBytes, setOut.MaxTombstoneBytes, int64(64 << 20), int64(13)},
		{"MaxBatchRecords", zero.MaxBatchRecords, negOut.MaxBatchRecords, setOut.MaxBatchRecords, 512, 17},
		{"FetchMaxWait", zero.FetchMaxWait, negOut.FetchMaxWait, setOut.FetchMaxWait, 500 * time.Millisecond, time.Second},
		{"FetchMaxPartitionBytes", zero.FetchMaxPartitionBytes, negOut.FetchMaxPartitionBytes, setOut.FetchMaxPartitionBytes, int32(8 << 20), int32(19)},
		{"ProbeInterval", zero.ProbeInterval, negOut.ProbeInterval, setOut.ProbeInterval, 2 * time.Second, 3 * time.Second},
		{"StaleAfter", zero.StaleAfter, negOut.StaleAfter, setOut.StaleAfter, 10 * time.Second, 4 * time.Second},
		{"ProduceTimeout", zero.ProduceTimeout, negOut.ProduceTimeout, setOut.ProduceTimeout, 10 * time.Second, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.zero != tt.wantDefault {
				t.Errorf("zero: got %v, want the default %v", tt.zero, tt.wantDefault)
			}
			// For ReplicationFactor this is -1 set explicitly: kept as is.
			if tt.neg != tt.wantDefault {
				t.Errorf("negative: got %v, want %v", tt.neg, tt.wantDefault)
			}
			if tt.set != tt.wantSet {
				t.Errorf("set: got %v, want it kept as %v", tt.set, tt.wantSet)
			}
		})
	}
	if zero.Logger == nil {
		t.Error("Logger: nil, want slog.Default()")
	}
}
