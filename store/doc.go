// Package store turns a compacted Kafka topic into authoritative in-memory
// state.
//
// It owns the franz-go client, consumes every partition from the earliest
// offset without a consumer group, and keeps:
//   - the index: key -> entry, ordered by key (a copy-on-write B-tree, so a
//     consistent snapshot is an O(1) clone);
//   - the cursor: topic ID plus the next offset of every partition;
//   - the history: a bounded window of applied batches, for cheap resumes;
//   - tombstones, for a configurable time, so deletes can be reported to a
//     subscriber that resumes from before them;
//   - the digest: an order-independent checksum of the live entries.
//
// It is ready only once every partition has been applied up to the end
// offsets it saw at start (or at a rebuild). It validates versions where they
// enter: a record that would move a key backwards, or that sits in a
// partition the default partitioner would not choose for its key, is skipped
// and counted, never applied.
//
// The store never imports gRPC and never blocks on a reader: readers pull
// batches from the history at their own pace and are told when they fell out
// of it.
package store
