package gateway

import (
	"fmt"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	// Registers the proto codec that frameCodec falls back to.
	_ "google.golang.org/grpc/encoding/proto"
)

// Field numbers shared by SubscribeResponse and GetSnapshotResponse: a
// snapshot chunk (1) and end (2) encode the same in both, so one frame
// serves either stream.
const (
	fieldChunk    protowire.Number = 1
	fieldEnd      protowire.Number = 2
	fieldDelta    protowire.Number = 3
	fieldProgress protowire.Number = 4

	fieldChunkEntries protowire.Number = 1

	fieldDeltaChanges   protowire.Number = 1
	fieldDeltaCursor    protowire.Number = 2
	fieldDeltaCoalesced protowire.Number = 3

	fieldChangePut    protowire.Number = 1
	fieldChangeDelete protowire.Number = 2
)

var marshalOpts = proto.MarshalOptions{Deterministic: true}

// encodeEntry returns the Entry message bytes for a live entry. It fails
// only on what the store should never admit (invalid UTF-8 in a string
// field); callers drop that one entry rather than the stream.
func encodeEntry(e *store.Entry) ([]byte, error) {
	b, err := marshalOpts.Marshal(protoEntry(e))
	if err != nil {
		return nil, fmt.Errorf("encode entry %q at %d/%d: %w", e.Key, e.Partition, e.Offset, err)
	}
	return b, nil
}

// encodeDeletion returns the Deletion message bytes.
func encodeDeletion(e *store.Entry) ([]byte, error) {
	b, err := marshalOpts.Marshal(&confgatev1.Deletion{Key: e.Key, Version: &confgatev1.Version{Partition: e.Partition, Offset: e.Offset}})
	if err != nil {
		return nil, fmt.Errorf("encode deletion %q at %d/%d: %w", e.Key, e.Partition, e.Offset, err)
	}
	return b, nil
}

// appendField appends a length-delimited field.
func appendField(b []byte, n protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// fieldSize is the encoded size of a length-delimited field of len n.
func fieldSize(n int) int { return protowire.SizeTag(1) + protowire.SizeBytes(n) }

// chunkFrame wraps concatenated Entry fields (SnapshotChunk body) as a
// response message.
func chunkFrame(body []byte) *frame {
	return &frame{b: appendField(make([]byte, 0, len(body)+8), fieldChunk, body)}
}

// endFrame encodes a SnapshotEnd response.
func endFrame(end *confgatev1.SnapshotEnd) *frame {
	body, err := marshalOpts.Marshal(end)
	if err != nil {
		panic(fmt.Sprintf("gateway: marshal snapshot end: %v", err))
	}
	return &frame{b: appendField(nil, fieldEnd, body)}
}

// progressFrame encodes a Progress response.
func progressFrame(p *confgatev1.Progress) *frame {
	body, err := marshalOpts.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("gateway: marshal progress: %v", err))
	}
	return &frame{b: appendField(nil, fieldProgress, body)}
}

// deltaFrame encodes a Delta response from encoded Change fields (the
// concatenation of parts), in one allocation and one copy.
func deltaFrame(changes []byte, cursor []byte, coalesced bool) *frame {
	return deltaFrameOf([][]byte{changes}, cursor, coalesced)
}

func deltaFrameOf(parts [][]byte, cursor []byte, coalesced bool) *frame {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	bodyLen := n + fieldSize(len(cursor))
	if coalesced {
		bodyLen += protowire.SizeTag(fieldDeltaCoalesced) + protowire.SizeVarint(1)
	}
	b := make([]byte, 0, fieldSize(bodyLen))
	b = protowire.AppendTag(b, fieldDelta, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(bodyLen))
	start := len(b)
	for _, p := range parts {
		b = append(b, p...)
	}
	b = appendField(b, fieldDeltaCursor, cursor)
	if coalesced {
		b = protowire.AppendTag(b, fieldDeltaCoalesced, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	f := &frame{b: b}
	if !coalesced {
		f.changes = b[start : start+n : start+n]
		f.cursor = cursor
	}
	return f
}

// mergeBytes bounds a merged delta's changes. Merging saves a message's
// fixed costs (its send, frame headers and the client's receive), which
// matter for small deltas; past a few tens of KiB the bytes cost more
// than the message, and merging them would only add a copy per stream.
const mergeBytes = 64 << 10

// mergeDeltas sends frames as few messages as it can: consecutive plain
// deltas whose changes fit in limit bytes together go out as one delta
// with their changes in order and the last one's cursor, which is the
// same state reached with fewer messages and flushes. A subscriber that
// is behind by several batches thus costs one message, not one per
// batch. A frame of another kind, or too large, goes out as it is.
func mergeDeltas(frames []*frame, limit int, send func(*frame) error) error {
	for i := 0; i < len(frames); {
		j, size := i+1, len(frames[i].changes)
		for frames[i].changes != nil && j < len(frames) && frames[j].changes != nil && size+len(frames[j].changes) <= limit {
			size += len(frames[j].changes)
			j++
		}
		if j == i+1 {
			if err := send(frames[i]); err != nil {
				return err
			}
			i = j
			continue
		}
		parts := make([][]byte, 0, j-i)
		for _, f := range frames[i:j] {
			parts = append(parts, f.changes)
		}
		if err := send(deltaFrameOf(parts, frames[j-1].cursor, false)); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// encoded returns e's encoded message, or false when it cannot be encoded:
// the entry is left out of what is being built (logged and counted), and
// the rest of the message and the stream go on.
func (g *Gateway) encoded(e *store.Entry) ([]byte, bool) {
	b, err := g.cache.entryBytes(e, g.m)
	if err != nil {
		g.m.unencodable.Inc()
		g.log.Error("leaving out an entry that cannot be encoded", "err", err)
		return nil, false
	}
	return b, true
}
