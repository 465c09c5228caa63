// Package fleet gives every gateway a view of the whole fleet of clients,
// while gateways stay stateless.
//
// Each gateway sees only its own connections, and clients move between
// gateways. So each gateway publishes its clients' latest state (their
// connection and their last Report) to a second compacted topic, named
// after the config topic with ".fleet" appended (TopicName), keyed by
// client ID, and every gateway consumes that topic from the start into an
// in-memory view (Snapshot). The topic is created compacted when missing.
//
// # Records
//
// A record's value is JSON with a version field, e.g.
//
//	{"v":1,"client_id":"c1","service":"payments","labels":{"zone":"a"},
//	 "selector":["payments/"],"gateway":"gw-a","connected":true,
//	 "connected_since_ms":1767225600000,"last_report_ms":1767225605000,
//	 "updated_ms":1767225605000,"applied_cursor":"<base64>","digest":"<base64>",
//	 "rejections":[{"key":"payments/x","partition":0,"offset":7,"reason":"..."}]}
//
// A tombstone (nil value) removes the client. The topic is hostile input:
// a value over 64 KiB, bad JSON, an unknown field, an unknown version, a
// client ID that is not the record's key or not 1 to 128 printable ASCII
// characters: the record is skipped and counted
// (confgate_fleet_records_skipped_total{reason}), never a crash. Decoding
// is strict, so a new field needs a new version; during a rolling upgrade
// older gateways skip (and count) the newer records.
//
// # Who writes what
//
// Per client, the view keeps the newest record in log order (one key, one
// partition). The rules that keep it right when clients move and gateways
// die:
//
//   - Connected and Disconnected publish the client's connection on this
//     gateway (Connected=false when its last stream here closed).
//   - A client that moved: A publishes Connected=false, B Connected=true,
//     in either order. When B reads a record of another gateway saying the
//     client it holds is disconnected (or a tombstone), B publishes its own
//     again, so the client ends connected on B.
//   - After Grace, A tombstones the client only if the view's latest
//     record for it is still A's and still disconnected: A's tombstone
//     never erases B's record (and should it race B's record in flight, B
//     reads the tombstone and publishes again).
//   - A gateway that dies never publishes its disconnects. Every gateway
//     writes the records of its connected clients again at least every
//     Grace (Record.Updated is the writer's clock), so any gateway
//     tombstones a record not updated for 10×Grace, whoever wrote it (a
//     dead gateway's clients, a tombstone that failed): the topic does not
//     grow forever. A skewed clock can sweep a live record early; its
//     gateway reads the tombstone and writes the record again. The dead
//     gateway's clients' LastReport stops moving meanwhile: the consumer
//     of the view treats a connected client whose LastReport is older than
//     a staleness bound as not reporting. An unchanged report is written
//     at most every Heartbeat, so that bound must exceed the clients'
//     report period plus 1.25×Heartbeat.
//   - A report may reach a gateway other than the one holding the client's
//     stream (Report is unary). That gateway publishes the view's record
//     for the client with the report's fields (the owner's gateway name and
//     connection kept); the owner, when it next publishes, takes the
//     report fields from the view when they are newer than its own.
//
// # Rate
//
// Per client a gateway writes at most one record per MinInterval: a
// report with a new selector, cursor, digest or rejections, a connect or a
// disconnect is published once the interval since the client's previous
// record has passed (a timer flushes the latest pending one: the latest
// wins); an unchanged report only moves LastReport, written at most every
// Heartbeat (default MinInterval); a connected client that does not
// report is written again every Grace. At 10,000 clients with the
// defaults (MinInterval = Heartbeat = 5s, Grace 1m) and a typical record
// of 300 bytes:
//
//   - at most 10,000 / 5 s = 2,000 records/s, 2,000 × 300 B = 600 KB/s
//     (about 4.8 Mbit/s) written, and read by every gateway; clients that
//     report every 5s cost that even when nothing changes, since their
//     LastReport must stay fresh (a Heartbeat of 30s would cut it to
//     about 333 records/s, 100 KB/s, with a staleness bound over 42s);
//   - connected clients that do not report: 10,000 / 60 s ≈ 167 records/s,
//     about 50 KB/s;
//   - the compacted topic holds about 10,000 × 300 B = 3 MB of live
//     records.
//
// The view is bounded by MaxClients (default 100,000): records of clients
// beyond it are skipped and counted.
package fleet
