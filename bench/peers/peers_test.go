package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/loadgen"
)

// TestMain lets the test binary stand in for the peers binary when a
// target re-executes itself in a server mode.
func TestMain(m *testing.M) {
	if isServeMode(os.Args[1:]) {
		os.Exit(serveMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// receipts counts what each subscriber got, by key.
type receipts struct {
	mu  sync.Mutex
	got map[int]map[string]int
}

func (r *receipts) add(sub int, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got[sub] == nil {
		r.got[sub] = map[string]int{}
	}
	r.got[sub][key]++
}

func (r *receipts) count(sub int, key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[sub][key]
}

// checkTarget opens a handful of subscribers on three prefixes over two
// connections, one of the prefixes a string prefix of another's path
// ("t/a/" and "t/ab/"), writes one key under each, and checks that each
// write reached exactly the subscribers of its prefix, once.
func checkTarget(t *testing.T, start func(context.Context) (loadgen.Target, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tg, err := start(ctx)
	if errors.Is(err, errUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if s := tg.Server(); len(s.PIDs) == 0 && s.MetricsURL == "" {
		t.Errorf("%s names no server to sample", tg.Name())
	} else if u, ok, err := s.Usage(ctx); !ok || err != nil || u.RSS == 0 {
		t.Errorf("%s server usage: %+v %v %v", tg.Name(), u, ok, err)
	}

	prefixes := []string{"t/a/", "t/a/", "t/b/", "t/ab/", "t/a/", "t/b/"}
	var conns []loadgen.Conn
	for range 2 {
		c, err := tg.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	r := &receipts{got: map[int]map[string]int{}}
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	for i, p := range prefixes {
		err := conns[i%len(conns)].Subscribe(sctx, p, func(key string, value []byte) {
			if string(value) != "v:"+key {
				t.Errorf("subscriber %d: key %q has value %q", i, key, value)
			}
			r.add(i, key)
		})
		if err != nil {
			t.Fatalf("subscribe %d to %q: %v", i, p, err)
		}
	}
	keys := []string{"t/a/k1", "t/b/k2", "t/ab/k3", "t/c/k4"}
	for _, k := range keys {
		if err := tg.Put(ctx, k, []byte("v:"+k)); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	want := func(i int, k string) int {
		if len(k) >= len(prefixes[i]) && k[:len(prefixes[i])] == prefixes[i] {
			return 1
		}
		return 0
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		done := true
		for i := range prefixes {
			for _, k := range keys {
				if want(i, k) == 1 && r.count(i, k) == 0 {
					done = false
				}
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // room for a duplicate or a stray
	for i := range prefixes {
		for _, k := range keys {
			if got, w := r.count(i, k), want(i, k); got != w {
				t.Errorf("%s: subscriber %d (%s) got %s %d times, want %d", tg.Name(), i, prefixes[i], k, got, w)
			}
		}
	}
	// After the subscribers' context ends they receive nothing more.
	scancel()
	time.Sleep(100 * time.Millisecond)
	if err := tg.Put(ctx, "t/a/k5", []byte("v:t/a/k5")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	for i := range prefixes {
		if n := r.count(i, "t/a/k5"); n != 0 {
			t.Errorf("%s: subscriber %d got a write after its context ended", tg.Name(), i)
		}
	}
}

func TestEtcd(t *testing.T)  { t.Parallel(); checkTarget(t, startEtcd) }
func TestNATS(t *testing.T)  { t.Parallel(); checkTarget(t, startNATS) }
func TestRedis(t *testing.T) { t.Parallel(); checkTarget(t, startRedis) }

func TestNATSKeys(t *testing.T) {
	for _, c := range []struct {
		prefix, filter string
		exact          bool
	}{
		{"bench/p3/", "bench.p3.>", true},
		{"", ">", true},
		{"bench/p3", "bench.>", false},
		{"bench", ">", false},
	} {
		f, e := natsWatch(c.prefix)
		if f != c.filter || e != c.exact {
			t.Errorf("natsWatch(%q) = %q, %v; want %q, %v", c.prefix, f, e, c.filter, c.exact)
		}
	}
	if k := fromNATSKey(natsKey("bench/p3/k7")); k != "bench/p3/k7" {
		t.Errorf("round trip: %q", k)
	}
	if c := redisChannel("bench/p3/k7"); c != "bench/p3/" {
		t.Errorf("redisChannel: %q", c)
	}
}

// TestConfgate checks both confgate targets on a gateway of their own,
// against CONFGATE_KAFKA_BROKERS or a Kafka started by scripts/kafka.sh
// (skipped without java, or with -short).
func TestConfgate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Kafka")
	}
	if _, err := exec.LookPath("java"); err != nil && os.Getenv("CONFGATE_KAFKA_BROKERS") == "" {
		t.Skip("no java for Kafka and no CONFGATE_KAFKA_BROKERS")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := startConfgateEnv(ctx, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	for _, c := range []struct{ name, mode string }{
		{"confgate", loadgen.ModeClient},
		{"confgate-stub", loadgen.ModeStub},
	} {
		t.Run(c.name, func(t *testing.T) { checkTarget(t, env.start(c.name, c.mode)) })
	}
}

// The report names the Kafka version the scripts run, read from the pom's
// element (its comments mention the property too).
func TestKafkaVersion(t *testing.T) {
	v := kafkaVersion("../..")
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Fatalf("kafkaVersion = %q, want a version like 4.4.0", v)
	}
}
