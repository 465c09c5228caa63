package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA issues certificates for TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string // path of the CA certificate
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, pem: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.pem, "CERTIFICATE", der)
	return ca
}

// issue writes a certificate and key for name (a server for 127.0.0.1, or
// a client) and returns their paths.
func (ca *testCA) issue(t *testing.T, dir, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	// Written whole then renamed, as a certificate manager would, so a
	// reloading server never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A gateway served over mutual TLS: clients with the CA and a client
// certificate work; plaintext, an unknown CA or no client certificate get
// a clear error; a rotated server certificate is served without a restart.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	srvCert, srvKey := ca.issue(t, dir, "gateway", true)
	cliCert, cliKey := ca.issue(t, dir, "service", false)
	other := newTestCA(t, dir, "other-ca")
	otherCert, otherKey := other.issue(t, dir, "stranger", false)

	_, c := startDev(t, "--tls-cert", srvCert, "--tls-key", srvKey, "--tls-client-ca", ca.pem)
	good := []string{"--tls-ca", ca.pem, "--tls-cert", cliCert, "--tls-key", cliKey}

	if out := c.ok(append([]string{"put", "--wait", "tls/probe", "on"}, good...)...); !strings.Contains(out, "cursor") {
		t.Fatalf("put over TLS printed %q", out)
	}
	if out := c.ok(append([]string{"get", "tls/probe"}, good...)...); strings.TrimSpace(out) != "on" {
		t.Fatalf("get over TLS printed %q", out)
	}
	w := c.start(append([]string{"watch", "tls/", "--count", "1", "-o", "json"}, good...)...)
	if code := w.wait(t, 20*time.Second); code != 0 || !strings.Contains(w.stdout.String(), `"tls/probe"`) {
		t.Fatalf("watch over TLS: exit %d, stdout %q, stderr %q", code, w.stdout, w.stderr)
	}

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"plaintext", nil, "--tls"},
		{"the system's CAs", []string{"--tls"}, "certificate"},
		{"another CA", []string{"--tls-ca", other.pem, "--tls-cert", cliCert, "--tls-key", cliKey}, "certificate"},
		// TLS 1.3 rejects a client certificate after the client finished
		// its handshake: the client sees the connection closed, or the
		// alert, depending on timing; the hint names the flag either way.
		{"no client certificate", []string{"--tls-ca", ca.pem}, "--tls-cert if it requires client certificates"},
		{"a client certificate of another CA", []string{"--tls-ca", ca.pem, "--tls-cert", otherCert, "--tls-key", otherKey}, "--tls-cert if it requires client certificates"},
		{"a certificate without its key", []string{"--tls-ca", ca.pem, "--tls-cert", cliCert}, "--tls-cert and --tls-key go together"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := c.run(append([]string{"get", "tls/probe", "--timeout", "5s"}, tt.args...)...)
			if r.code != exitFailure || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d saying %q", r.code, r.stderr, exitFailure, tt.want)
			}
		})
	}

	t.Run("rotation", func(t *testing.T) {
		// A new CA and server certificate replace the files in place.
		rotated := newTestCA(t, dir, "rotated-ca")
		crt, key := rotated.issue(t, dir, "gateway-next", true)
		for _, mv := range [][2]string{{crt, srvCert}, {key, srvKey}} {
			if err := os.Rename(mv[0], mv[1]); err != nil {
				t.Fatal(err)
			}
		}
		next := []string{"--tls-ca", rotated.pem, "--tls-cert", cliCert, "--tls-key", cliKey}
		deadline := time.Now().Add(20 * time.Second)
		for {
			r := c.run(append([]string{"get", "tls/probe", "--timeout", "5s"}, next...)...)
			if r.code == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the rotated certificate was not served: %s", r.stderr)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if r := c.run(append([]string{"get", "tls/probe", "--timeout", "5s"}, good...)...); r.code != exitFailure {
			t.Fatalf("the old CA still verifies the gateway after rotation: exit %d", r.code)
		}
	})
}

func TestServerTLSFlags(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	crt, key := ca.issue(t, dir, "gateway", true)
	tests := []struct {
		name string
		f    serverTLS
		want string // "" for a config
	}{
		{"off", serverTLS{}, ""},
		{"cert and key", serverTLS{cert: crt, key: key}, ""},
		{"mutual", serverTLS{cert: crt, key: key, clientCA: ca.pem}, ""},
		{"cert without key", serverTLS{cert: crt}, "--tls-cert and --tls-key go together"},
		{"client CA alone", serverTLS{clientCA: ca.pem}, "--tls-cert and --tls-key go together"},
		{"missing file", serverTLS{cert: filepath.Join(dir, "nope.crt"), key: key}, "nope.crt"},
		{"key of another certificate", serverTLS{cert: crt, key: writeOtherKey(t, ca, dir)}, "private key does not match"},
		{"client CA not PEM", serverTLS{cert: crt, key: key, clientCA: key}, "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.f.config()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("config: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("config = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func writeOtherKey(t *testing.T, ca *testCA, dir string) string {
	_, key := ca.issue(t, dir, "unrelated", true)
	return key
}
