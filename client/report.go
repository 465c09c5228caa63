package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// identity validates ClientID, Service, Labels and ReportInterval into s,
// generating the client ID when none is given.
func (c Config) identity(s *settings) error {
	id := c.ClientID
	if id == "" {
		var b [16]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		id = hex.EncodeToString(b[:])
	}
	if len(id) > maxClientIDBytes {
		return fmt.Errorf("client: Config.ClientID is %d bytes, more than %d", len(id), maxClientIDBytes)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return fmt.Errorf("client: Config.ClientID has byte 0x%02x at %d: use printable ASCII without spaces", id[i], i)
		}
	}
	if len(c.Service) > maxServiceBytes {
		return fmt.Errorf("client: Config.Service is %d bytes, more than %d", len(c.Service), maxServiceBytes)
	}
	if !utf8.ValidString(c.Service) {
		return fmt.Errorf("client: Config.Service %q is not valid UTF-8", c.Service)
	}
	if len(c.Labels) > maxLabels {
		return fmt.Errorf("client: Config.Labels has %d labels, more than %d", len(c.Labels), maxLabels)
	}
	var labels map[string]string
	if len(c.Labels) > 0 {
		labels = make(map[string]string, len(c.Labels))
	}
	for k, v := range c.Labels {
		switch {
		case k == "":
			return fmt.Errorf("client: Config.Labels has an empty key")
		case len(k) > maxLabelBytes:
			return fmt.Errorf("client: Config.Labels key %q is %d bytes, more than %d", k, len(k), maxLabelBytes)
		case len(v) > maxLabelBytes:
			return fmt.Errorf("client: Config.Labels[%q] is %d bytes, more than %d", k, len(v), maxLabelBytes)
		case !utf8.ValidString(k) || !utf8.ValidString(v):
			return fmt.Errorf("client: Config.Labels[%q] = %q is not valid UTF-8", k, v)
		}
		labels[k] = v
	}
	s.clientID, s.service, s.labels = id, c.Service, labels
	s.reportInterval = c.ReportInterval
	if s.reportInterval == 0 {
		s.reportInterval = DefaultReportInterval
	}
	s.reportDigestHook = c.ReportDigestHook
	return nil
}

// clientInfo is the ClientInfo of every request: a new message each time
// (the labels map is shared, read-only).
func (s *settings) clientInfo() *confgatev1.ClientInfo {
	return &confgatev1.ClientInfo{ClientId: s.clientID, Service: s.service, Labels: s.labels}
}

// rejection is a value the application refused (View.Reject).
type rejection struct {
	// version is the key's version when it was rejected; ok is false when
	// the view did not hold the key.
	partition int32
	offset    int64
	ok        bool
	reason    string
	seq       uint64 // order of the Reject calls, to drop the oldest
}

// Reject records that the application refuses the current value of key,
// like an xDS NACK: the value the view holds now (its version), or the
// key's absence when the view does not hold it, with a reason for
// operators. The rejection is sent with every report (see
// Config.ReportInterval; one is sent soon after the call) and shows in
// the fleet view, until the key changes in the view (a newer version, a
// deletion, or a snapshot that replaced it) or Accept(key) clears it. A
// second Reject of a key replaces the first. The view keeps the 100 most
// recently rejected keys: a 101st drops the oldest. A reason longer than
// 1 KiB is cut, and invalid UTF-8 in it replaced. A key outside the
// view's selector, or not valid UTF-8, is ignored. Reject changes nothing
// the view serves: Get still returns the rejected value.
func (v *View) Reject(key, reason string) {
	if key == "" || !utf8.ValidString(key) || !v.s.selector.Match(key) {
		return
	}
	reason = strings.ToValidUTF8(reason, "\uFFFD")
	if len(reason) > maxRejectionReason {
		n := maxRejectionReason
		for n > 0 && !utf8.RuneStart(reason[n]) {
			n--
		}
		reason = reason[:n]
	}
	rj := &rejection{reason: reason}
	if e, ok := v.state.Load().tree.Get(&Entry{Key: key}); ok {
		rj.partition, rj.offset, rj.ok = e.Partition, e.Offset, true
	}
	v.mu.Lock()
	if v.rejections == nil {
		v.rejections = make(map[string]*rejection)
	}
	v.rejectSeq++
	rj.seq = v.rejectSeq
	v.rejections[key] = rj
	if len(v.rejections) > maxRejections {
		oldest := ""
		for k, r := range v.rejections {
			if oldest == "" || r.seq < v.rejections[oldest].seq {
				oldest = k
			}
		}
		delete(v.rejections, oldest)
	}
	v.mu.Unlock()
	v.kickReport()
}

// Accept clears a rejection of key made with Reject, for example once the
// application took the key's value after all. A key without a rejection
// is ignored.
func (v *View) Accept(key string) {
	v.mu.Lock()
	_, ok := v.rejections[key]
	delete(v.rejections, key)
	v.mu.Unlock()
	if ok {
		v.kickReport()
	}
}

// kickReport asks the reporter for a report soon (ReportInterval/5 after
// the last one at the latest). Never blocks.
func (v *View) kickReport() {
	select {
	case v.kick <- struct{}{}:
	default: // reporting is off, or a report is already asked for
	}
}

// report builds the report of the published state st, dropping the
// rejections of keys that changed since they were rejected.
func (v *View) report(st *state) *confgatev1.ReportRequest {
	d := st.sum.Bytes()
	if v.s.reportDigestHook != nil {
		d = v.s.reportDigestHook(d)
	}
	req := &confgatev1.ReportRequest{
		Client:        v.s.clientInfo(),
		Selector:      &confgatev1.Selector{Prefixes: v.s.selector.Prefixes()},
		AppliedCursor: st.cur.Encode(),
		Digest:        d,
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for k, r := range v.rejections {
		e, ok := st.tree.Get(&Entry{Key: k})
		if ok != r.ok || ok && (e.Partition != r.partition || e.Offset != r.offset) {
			delete(v.rejections, k) // the key changed: the rejection is over
			continue
		}
		rj := &confgatev1.Rejection{Key: k, Reason: r.reason}
		if ok {
			rj.Version = &confgatev1.Version{Partition: r.partition, Offset: r.offset}
		}
		req.Rejections = append(req.Rejections, rj)
	}
	slices.SortFunc(req.Rejections, func(a, b *confgatev1.Rejection) int { return strings.Compare(a.Key, b.Key) })
	return req
}

// reporter sends the view's reports over cc, the connection of the stream
// to addr, until ctx is done (the stream ended) or the gateway answers
// UNIMPLEMENTED. It sends one report at a time: at once when asked
// (kickReport) but at least ReportInterval/5 after the previous one, and
// ReportInterval after the previous one otherwise. Nothing is reported
// before the view has a cursor.
func (v *View) reporter(ctx context.Context, cc grpc.ClientConnInterface, addr string) {
	interval := v.s.reportInterval
	gap := interval / 5
	timeout := max(interval, time.Second)
	svc := confgatev1.NewConfigServiceClient(cc)
	log := v.s.log.With("addr", addr)

	var last time.Time // start of the last report; zero: none yet
	next := time.Now().Add(interval)
	asked := false
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		wait := time.Until(next)
		if asked {
			wait = min(wait, time.Until(last.Add(gap)))
		}
		t.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return
		case <-v.kick:
			asked = true
			continue
		case <-t.C:
		}
		if ctx.Err() != nil {
			return
		}
		asked = false
		st := v.state.Load()
		if !st.synced {
			// No cursor to report yet; the snapshot will ask.
			next = time.Now().Add(interval)
			continue
		}
		last = time.Now()
		next = last.Add(interval)
		rctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := svc.Report(rctx, v.report(st))
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return
		case status.Code(err) == codes.Unimplemented:
			log.Debug("gateway does not take reports; not reporting until the next reconnect", "err", err)
			return
		default:
			log.Debug("report failed; retrying at the next tick", "err", err, "retry_in", interval)
		}
	}
}
