// Package cursor defines the position a gateway has applied: the Kafka topic
// ID plus the next offset of every partition. Cursors are opaque to clients
// and mean the same thing on every gateway: two gateways at the same cursor
// hold byte-identical state.
//
// The wire form is compact: a format byte, the 16-byte topic ID, the
// partition count and one unsigned varint per partition.
package cursor
