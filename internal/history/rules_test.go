package history

import (
	"errors"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// ruleCases are broken histories for the rules no case of
// history_test.go catches on its own: one mistake each.
var ruleCases = []checkCase{
	{name: "a later stream resumed with an undecodable cursor", build: func(l *logBuilder, r *Recorder) {
		cl, c0, _ := base(l, r)
		cl.ObserveStream(1, "gw2", []byte{42}, &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Progress{
			Progress: &confgatev1.Progress{Cursor: c0.Encode()}}})
	}, want: &want{client: "c", rule: Protocol, index: 1, detail: "resume cursor: undecodable"}},
	{name: "an observation of an unknown kind", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		cl.Observe(Obs{Kind: Progress + 1, Cursor: l.cur()})
	}, want: &want{client: "c", rule: Protocol, index: 1, detail: "unknown observation kind"}},
	{name: "a delta with an undecodable cursor", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		cl.ObserveProto(&confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Delta{Delta: &confgatev1.Delta{Cursor: []byte{9}}}})
	}, want: &want{client: "c", rule: Protocol, index: 1, detail: "undecodable cursor"}},
	{name: "a last stream resumed from an older cursor, nothing observed on it", build: func(l *logBuilder, r *Recorder) {
		cl, c0, _ := base(l, r)
		x2 := l.put("a/x", "2")
		cl.Observe(delta(l.cur(), x2))
		cl.Reconnect(c0, "gw2")
	}, want: &want{client: "c", rule: Resumable, index: 2, detail: "no observation followed"}},
	{name: "coalesced delta with another value than the log", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		l.put("a/x", "2")
		x3 := l.put("a/x", "3")
		o := coalesced(l.cur(), x3)
		o.Changes[0].Value = []byte("4")
		cl.Observe(o)
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/x", detail: "differs from the log"}},
	{name: "coalesced delta with a change from before its range", build: func(l *logBuilder, r *Recorder) {
		cl, _, rs := base(l, r)
		x2 := l.put("a/x", "2")
		cl.Observe(coalesced(l.cur(), x2, rs[1]))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/y", detail: "outside its range"}},
	{name: "coalesced delta with a put of a key deleted since", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		n := l.put("a/n", "1")
		l.del("a/n")
		cl.Observe(coalesced(l.cur(), n))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/n", detail: "absent at the delta's cursor"}},
}

func TestRuleCasesReportFirstViolation(t *testing.T) {
	for _, tc := range ruleCases {
		t.Run(tc.name, func(t *testing.T) {
			v := runCase(tc)
			w := tc.want
			if v == nil || v.Client != w.client || v.Rule != w.rule || v.Index != w.index || v.Key != w.key || !strings.Contains(v.Detail, w.detail) {
				t.Fatalf("got  %v\nwant client %q rule %q index %d key %q detail containing %q", v, w.client, w.rule, w.index, w.key, w.detail)
			}
			t.Log(v)
		})
	}
}

func runCase(tc checkCase) (v *Violation) {
	l, r := newLog(topicA), NewRecorder()
	tc.build(l, r)
	if err := r.Check(l.recs, topicA); !errors.As(err, &v) {
		return nil
	}
	return v
}

// runWithout is runCase with a rule switched off; a later rule that relied
// on it may panic, which counts as a different report.
func runWithout(tc checkCase) (v *Violation, panicked bool) {
	defer func() {
		if recover() != nil {
			panicked = true
		}
	}()
	return runCase(tc), false
}

func funcName(f any) string {
	n := runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
	return n[strings.LastIndex(n, ".")+1:]
}

// Every rule is needed: with it switched off, some broken history is no
// longer reported as it was (it passes, another rule reports it later or
// differently, or a later rule that relies on it fails). A rule added
// without a broken history that it catches fails here.
//
// Except replayedViewConverges: a history that keeps every observation
// rule builds the log's state by induction, so no broken history reaches
// it first. It guards the walker's own bookkeeping (apply), and would
// catch a rule that lets a wrong change through.
func TestEveryRuleCatchesSomething(t *testing.T) {
	cases := slices.Concat(violationCases, ruleCases, setViolationCases, condViolationCases)
	want := make([]*Violation, len(cases))
	for i, tc := range cases {
		if want[i] = runCase(tc); want[i] == nil {
			t.Fatalf("%s: not reported", tc.name)
		}
	}
	caught := func(name string) {
		t.Helper()
		if name == "replayedViewConverges" {
			return
		}
		for i, tc := range cases {
			if got, panicked := runWithout(tc); panicked || !reflect.DeepEqual(got, want[i]) {
				t.Logf("%s: needed by %q", name, tc.name)
				return
			}
		}
		t.Errorf("%s: no broken history needs it", name)
	}
	pass := func(*clientCheck) *Violation { return nil }
	for _, table := range [][]rule{streamRules, observationRules, endRules} {
		for i := range table {
			check := table[i].check
			table[i].check = pass
			caught(funcName(check))
			table[i].check = check
		}
	}
	for i := range logRules {
		check := logRules[i]
		logRules[i] = func(*logIndex) *Violation { return nil }
		caught(funcName(check))
		logRules[i] = check
	}
	passChange := func(*rangeCheck) *Violation { return nil }
	for _, table := range [][]func(*rangeCheck) *Violation{deltaChangeRules, coalescedChangeRules} {
		for i := range table {
			check := table[i]
			table[i] = passChange
			caught(funcName(check))
			table[i] = check
		}
	}
}

// replayedViewConverges catches what an observation rule lets through: with
// snapshotMatchesLog off, a snapshot missing a key leaves a view that
// differs from the log at the end.
func TestReplayedViewIsASafetyNet(t *testing.T) {
	for i, r := range observationRules {
		if funcName(r.check) != "snapshotMatchesLog" {
			continue
		}
		observationRules[i].check = func(*clientCheck) *Violation { return nil }
		defer func() { observationRules[i].check = r.check }()
	}
	v := runCase(checkCase{build: func(l *logBuilder, r *Recorder) {
		x, _ := l.put("a/x", "1"), l.put("a/y", "1")
		r.Client("c", []string{"a/"}).Observe(snap(l.cur(), x))
	}})
	if v == nil || v.Rule != Convergent || v.Key != "a/y" || !strings.Contains(v.Detail, "replayed from its observations") {
		t.Fatalf("Check = %v, want the replayed view to differ on a/y", v)
	}
}
