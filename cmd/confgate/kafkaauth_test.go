package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// serve reaches a Kafka that requires SASL with the mechanism, user and
// password (from the environment) it is given, and says why when refused.
func TestServeKafkaSASL(t *testing.T) {
	k, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "scram-svc", "s3cret"),
		kfake.Superuser("SCRAM-SHA-512", "scram512-svc", "s3cret512"),
		kfake.Superuser("PLAIN", "plain-svc", "pl41n"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	common := []string{"serve", "--brokers", strings.Join(k.ListenAddrs(), ","), "--topic", "cfg", "--create-topic",
		"--listen", "127.0.0.1:0", "--admin-listen", "", "--probe-interval", "200ms", "--shutdown-grace", "2s", "--log-level", "warn"}
	password := func(p string) func(string) string {
		return func(k string) string {
			if k == kafkaPasswordEnv {
				return p
			}
			return ""
		}
	}

	for _, tt := range []struct{ mechanism, user, pass string }{
		{"SCRAM-SHA-256", "scram-svc", "s3cret"},
		{"scram-sha-512", "scram512-svc", "s3cret512"},
		{"PLAIN", "plain-svc", "pl41n"},
	} {
		t.Run(tt.mechanism, func(t *testing.T) {
			n := startNodeCmdEnv(t, password(tt.pass), append(common, "--kafka-sasl-mechanism", tt.mechanism, "--kafka-sasl-user", tt.user)...)
			c := cli{t: t, addr: n.GRPC}
			c.ok("put", "--wait", "auth/"+tt.user, "ok")
			if got := strings.TrimSpace(c.ok("get", "auth/"+tt.user)); got != "ok" {
				t.Fatalf("get = %q", got)
			}
		})
	}

	// The dev broker drops a connection with bad credentials without an
	// error code (Apache Kafka answers SASL_AUTHENTICATION_FAILED), so all
	// that shows here is a gateway that waits for Kafka, never ready.
	t.Run("wrong password", func(t *testing.T) {
		var out, errb syncBuffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done := make(chan int, 1)
		var ready atomic.Bool
		go func() {
			done <- run(ctx, append(common, "--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-user", "scram-svc"),
				&Env{Stdin: bytes.NewReader(nil), Stdout: &out, Stderr: &errb, Getenv: password("wrong"),
					Started: func(Addrs) { ready.Store(true) }})
		}()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(errb.String(), "waiting for Kafka") {
			if time.Now().After(deadline) {
				t.Fatalf("no failure to reach Kafka reported; stderr: %s", errb.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		<-done
		if ready.Load() {
			t.Fatal("ready with a wrong password")
		}
	})

	for _, tt := range []struct {
		name string
		args []string
		pass string
		want string
	}{
		{"no password", []string{"--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-user", "plain-svc"}, "", "$" + kafkaPasswordEnv},
		{"no user", []string{"--kafka-sasl-mechanism", "PLAIN"}, "x", "--kafka-sasl-user"},
		{"user without mechanism", []string{"--kafka-sasl-user", "plain-svc"}, "x", "needs --kafka-sasl-mechanism"},
		{"unknown mechanism", []string{"--kafka-sasl-mechanism", "GSSAPI", "--kafka-sasl-user", "u"}, "x", "want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
		{"client certificate without key", []string{"--kafka-tls-cert", "c.pem"}, "", "--kafka-tls-cert and --kafka-tls-key go together"},
		{"CA file missing", []string{"--kafka-tls-ca", "/nonexistent/ca.pem"}, "", "--kafka-tls-ca"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb syncBuffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code := run(ctx, append(common, tt.args...), &Env{Stdin: bytes.NewReader(nil), Stdout: &out, Stderr: &errb, Getenv: password(tt.pass)})
			if code != exitFailure || !strings.Contains(errb.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d saying %q", code, errb.String(), exitFailure, tt.want)
			}
		})
	}
}

// serve reaches a Kafka that listens with TLS, verifying it with the CA it
// is given, and with a client certificate.
func TestServeKafkaTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "kafka-ca")
	crt, key := ca.issue(t, dir, "broker", true)
	cliCrt, cliKey := ca.issue(t, dir, "gateway", false)
	pair, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := loadPool("ca", ca.pem)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	n := startNodeCmd(t, "serve", "--brokers", strings.Join(k.ListenAddrs(), ","), "--topic", "cfg", "--create-topic",
		"--listen", "127.0.0.1:0", "--admin-listen", "", "--probe-interval", "200ms", "--shutdown-grace", "2s", "--log-level", "warn",
		"--kafka-tls-ca", ca.pem, "--kafka-tls-cert", cliCrt, "--kafka-tls-key", cliKey)
	c := cli{t: t, addr: n.GRPC}
	c.ok("put", "--wait", "tls/kafka", "ok")
	if got := strings.TrimSpace(c.ok("get", "tls/kafka")); got != "ok" {
		t.Fatalf("get = %q", got)
	}
}
