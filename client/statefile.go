package client

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/digest"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// The state file (Config.StateFile) holds a view and its cursor. It is
// written in one piece and read in one piece; a file that fails any check
// is ignored as a whole, never partially loaded.
//
// Layout, format version 1:
//
//	magic     8 bytes: "CGSTATE" then the format version (0x01)
//	header    record: a confgate.v1.Selector, the normalized prefixes of
//	          the selector the view was made for
//	entries   records: confgate.v1.SubscribeResponse with a snapshot_chunk,
//	          entries in key order, chunks of about stateChunkBytes
//	end       record: confgate.v1.SubscribeResponse with a snapshot_end:
//	          the view's cursor, entry_count and state digest (reason
//	          unspecified, reset false)
//	checksum  4 bytes: CRC-32C (Castagnoli) of every byte before it,
//	          big-endian; nothing follows it
//
// A record is an unsigned varint length followed by that many bytes of the
// message's protobuf encoding. Entries and end are exactly what a gateway
// sends for a snapshot, and a file is checked like one (entry count,
// digest, no entry at or past the cursor), plus: the checksum, the
// selector, every key matching it, nothing after the checksum. A new
// layout gets a new version byte; readers ignore versions they do not know.
const (
	stateMagic   = "CGSTATE"
	stateVersion = 1
	// stateChunkBytes is the approximate payload of one entries record.
	stateChunkBytes = 256 << 10
	// maxStateRecord bounds one record on read, so a corrupt length cannot
	// make the reader allocate without limit: a chunk holds less than
	// stateChunkBytes plus one entry, and an entry arrived in a gRPC
	// message (maxRecvMsgSize); twice that leaves room to spare.
	maxStateRecord = stateChunkBytes + 2*maxRecvMsgSize
	// stateTempInfix names temporary files: "<name>.tmp-<random>".
	stateTempInfix = ".tmp-"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// savedState identifies what the state file holds, to skip writes that
// would not change it.
type savedState struct {
	ok  bool
	cur cursor.Cursor
	sum digest.Digest
}

func (s savedState) holds(st *state) bool {
	return s.ok && s.sum == st.sum && s.cur.Equal(st.cur)
}

// loadStateFile runs in Subscribe, before the run goroutine starts. It
// removes leftover temporary files and returns the replica loaded from the
// state file, or nil (no file, or a file that failed a check: logged and
// recorded in Status.StateFileError).
func (v *View) loadStateFile() *replica {
	path, log := v.s.stateFile, v.s.log
	removeStateTemps(path, log)
	r, err := readStateFile(path, v.s.selector)
	switch {
	case errors.Is(err, os.ErrNotExist):
		log.Info("no state file yet; starting empty", "path", path)
		return nil
	case err != nil:
		err = fmt.Errorf("state file %s ignored: %w", path, err)
		log.Warn("ignoring the state file; starting empty", "path", path, "err", err)
		v.st.fileErr = err
		return nil
	}
	log.Info("view loaded from the state file; stale until a gateway answers",
		"path", path, "entries", r.tree.Len(), "cursor", r.cur.String())
	v.saved = savedState{ok: true, cur: r.cur, sum: r.sum}
	return r
}

// removeStateTemps deletes "<name>.tmp-*" files next to path: what a
// process that died mid-write left behind.
func removeStateTemps(path string, log *slog.Logger) {
	dir, prefix := filepath.Dir(path), filepath.Base(path)+stateTempInfix
	des, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("cannot list the state file's directory", "dir", dir, "err", err)
		}
		return
	}
	for _, de := range des {
		if !de.Type().IsRegular() || !strings.HasPrefix(de.Name(), prefix) {
			continue
		}
		p := filepath.Join(dir, de.Name())
		if err := os.Remove(p); err != nil {
			log.Warn("cannot remove a leftover temporary state file", "path", p, "err", err)
			continue
		}
		log.Info("removed a leftover temporary state file", "path", p)
	}
}

// persist is the state file writer: it writes the published view when
// asked (dirty), at most once per interval, and a last time when stop is
// closed. It only reads published, immutable states, so the run goroutine
// never waits for the disk.
func (v *View) persist(stop <-chan struct{}) {
	for {
		select {
		case <-v.dirty:
		case <-stop:
			v.save()
			return
		}
		took := v.save()
		t := time.NewTimer(writePause(v.s.stateFileInterval, took, v.s.stateFileDuty))
		select {
		case <-t.C:
		case <-stop:
			t.Stop()
			v.save()
			return
		}
	}
}

// stateFileDuty bounds the share of time spent writing the state file: after
// a write that took d, the next waits at least d*stateFileDuty. Every write
// rewrites the whole view, and the cursor moves with every change to the
// topic, selected or not; without the bound a 100 MB view would be
// rewritten every StateFileInterval, for ever.
const stateFileDuty = 20

// writePause is the least wait after a write that took took.
func writePause(interval, took time.Duration, duty int) time.Duration {
	return max(interval, took*time.Duration(duty))
}

// save writes the published view unless the file already holds it or the
// view has no cursor yet, and says how long the write took. Only the
// persist goroutine calls it.
func (v *View) save() time.Duration {
	st := v.state.Load()
	if !st.synced || v.saved.holds(st) {
		return 0
	}
	start := time.Now()
	n, err := writeStateFile(v.s.stateFile, v.s.selector, st)
	if err != nil {
		err = fmt.Errorf("state file %s not written: %w", v.s.stateFile, err)
		v.s.log.Warn("cannot write the state file; it keeps its previous content", "err", err)
		v.setStatus(func(cs *connState) { cs.fileErr = err })
		return time.Since(start)
	}
	v.saved = savedState{ok: true, cur: st.cur, sum: st.sum}
	v.setStatus(func(cs *connState) { cs.fileErr = nil })
	v.s.log.Debug("state file written", "path", v.s.stateFile, "entries", st.tree.Len(),
		"bytes", n, "cursor", st.cur.String(), "took", time.Since(start))
	return time.Since(start)
}

// writeStateFile replaces path with st atomically: a temporary file in the
// same directory, fsynced, renamed over path, then the directory fsynced
// so the rename itself survives a power loss. It returns the file size.
func writeStateFile(path string, sel keyspace.Selector, st *state) (n int64, err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+stateTempInfix+"*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	cw := &countingWriter{w: f}
	if err = encodeState(cw, sel, st); err != nil {
		return 0, err
	}
	if err = f.Sync(); err != nil {
		return 0, err
	}
	if err = f.Close(); err != nil {
		return 0, err
	}
	if err = os.Rename(tmp, path); err != nil {
		return 0, err
	}
	// From here the new file is in place; a failed directory sync only
	// means the rename might not survive a power loss.
	return cw.n, syncDir(dir)
}

func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be opened for syncing there
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// recordWriter writes records to w and the checksum; the first error
// sticks and later calls do nothing.
type recordWriter struct {
	w   io.Writer // the buffered file and the checksum
	buf []byte
	err error
}

func (rw *recordWriter) raw(b []byte) {
	if rw.err == nil {
		_, rw.err = rw.w.Write(b)
	}
}

func (rw *recordWriter) record(m proto.Message) {
	if rw.err != nil {
		return
	}
	body, err := proto.MarshalOptions{}.MarshalAppend(rw.buf[:0], m)
	if err != nil {
		rw.err = err
		return
	}
	rw.buf = body
	rw.raw(binary.AppendUvarint(nil, uint64(len(body))))
	rw.raw(body)
}

// encodeState writes st in the state file layout.
func encodeState(w io.Writer, sel keyspace.Selector, st *state) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	sum := crc32.New(castagnoli)
	rw := &recordWriter{w: io.MultiWriter(bw, sum)}
	rw.raw(append([]byte(stateMagic), stateVersion))
	rw.record(&confgatev1.Selector{Prefixes: sel.Prefixes()})

	chunk := &confgatev1.SnapshotChunk{}
	msg := &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_SnapshotChunk{SnapshotChunk: chunk}}
	size := 0
	flush := func() {
		rw.record(msg)
		clear(chunk.Entries) // drop references for the collector
		chunk.Entries, size = chunk.Entries[:0], 0
	}
	st.tree.Ascend(func(e *Entry) bool {
		pe := toProto(e)
		chunk.Entries = append(chunk.Entries, pe)
		size += proto.Size(pe)
		if size >= stateChunkBytes {
			flush()
		}
		return rw.err == nil
	})
	if len(chunk.Entries) > 0 {
		flush()
	}
	rw.record(&confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_SnapshotEnd{SnapshotEnd: &confgatev1.SnapshotEnd{
		Cursor:     st.cur.Encode(),
		EntryCount: uint64(st.tree.Len()),
		Digest:     st.sum.Bytes(),
	}}})
	if rw.err != nil {
		return rw.err
	}
	if _, err := bw.Write(sum.Sum(nil)); err != nil {
		return err
	}
	return bw.Flush()
}

// readStateFile loads the state file at path for selector sel. The replica
// is returned only when every check passed.
func readStateFile(path string, sel keyspace.Selector) (*replica, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	return decodeState(f, fi.Size(), sel)
}

// stateReader reads a state file, checksumming what it reads and bounding
// records by what is left of the file.
type stateReader struct {
	r    *bufio.Reader
	sum  hash.Hash32
	left int64 // bytes not read yet
}

func (sr *stateReader) ReadByte() (byte, error) {
	b, err := sr.r.ReadByte()
	if err != nil {
		return 0, err
	}
	sr.left--
	_, _ = sr.sum.Write([]byte{b})
	return b, nil
}

// full reads exactly n bytes, checksummed unless raw.
func (sr *stateReader) full(n int64, raw bool) ([]byte, error) {
	if n > sr.left {
		return nil, io.ErrUnexpectedEOF
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(sr.r, b); err != nil {
		return nil, err
	}
	sr.left -= n
	if !raw {
		_, _ = sr.sum.Write(b)
	}
	return b, nil
}

func (sr *stateReader) record(m proto.Message) error {
	n, err := binary.ReadUvarint(sr)
	if err != nil {
		return fmt.Errorf("record length: %w", eofIsTruncation(err))
	}
	if n > maxStateRecord || int64(n) > sr.left {
		return fmt.Errorf("record of %d bytes is past the end of the file or over the limit (truncated or corrupt)", n)
	}
	b, err := sr.full(int64(n), false)
	if err != nil {
		return eofIsTruncation(err)
	}
	return proto.Unmarshal(b, m)
}

func eofIsTruncation(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("file is truncated: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// decodeState reads size bytes from r in the state file layout.
func decodeState(r io.Reader, size int64, sel keyspace.Selector) (*replica, error) {
	sr := &stateReader{r: bufio.NewReaderSize(r, 64<<10), sum: crc32.New(castagnoli), left: size}
	magic, err := sr.full(int64(len(stateMagic))+1, false)
	if err != nil {
		return nil, fmt.Errorf("header: %w", eofIsTruncation(err))
	}
	if !bytes.Equal(magic[:len(stateMagic)], []byte(stateMagic)) {
		return nil, errors.New("not a confgate state file (bad magic)")
	}
	if ver := magic[len(stateMagic)]; ver != stateVersion {
		return nil, fmt.Errorf("state file format version %d is not supported (this client reads %d)", ver, stateVersion)
	}
	var hdr confgatev1.Selector
	if err := sr.record(&hdr); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	fileSel, err := keyspace.NewSelector(hdr.GetPrefixes())
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if fileSel.Key() != sel.Key() {
		return nil, fmt.Errorf("made for selector %s, this view's is %s", fileSel, sel)
	}

	r0 := newReplica()
	s := &session{}
	for done := false; !done; {
		var m confgatev1.SubscribeResponse
		if err := sr.record(&m); err != nil {
			return nil, err
		}
		switch {
		case m.GetSnapshotChunk() != nil:
			for _, e := range m.GetSnapshotChunk().GetEntries() {
				if !sel.Match(e.GetKey()) {
					return nil, fmt.Errorf("entry %q does not match the selector %s", e.GetKey(), sel)
				}
			}
			err = r0.chunk(s, m.GetSnapshotChunk())
		case m.GetSnapshotEnd() != nil:
			if len(m.GetSnapshotEnd().GetDigest()) != digest.Size {
				return nil, errors.New("end record has no digest")
			}
			_, err = r0.snapshotEnd(s, m.GetSnapshotEnd())
			done = true
		default:
			err = errors.New("unknown record")
		}
		var pe *protocolError
		if errors.As(err, &pe) {
			err = errors.New(pe.msg) // the checks are a gateway's; the words are not
		}
		if err != nil {
			return nil, err
		}
	}
	want := sr.sum.Sum32()
	got, err := sr.full(4, true)
	if err != nil {
		return nil, fmt.Errorf("checksum: %w", eofIsTruncation(err))
	}
	if binary.BigEndian.Uint32(got) != want {
		return nil, fmt.Errorf("checksum mismatch: file says %08x, content has %08x", binary.BigEndian.Uint32(got), want)
	}
	if sr.left != 0 {
		return nil, fmt.Errorf("%d bytes after the checksum", sr.left)
	}
	if _, err := sr.r.ReadByte(); err != io.EOF {
		return nil, errors.New("the file grew while it was read")
	}
	return r0, nil
}
