package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// serverTLS are serve's and dev's TLS flags.
type serverTLS struct {
	cert, key, clientCA string
}

func (f *serverTLS) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.cert, "tls-cert", "", "PEM certificate (chain) to serve gRPC over TLS with; re-read when the file changes, so rotation needs no restart; with --tls-key")
	fs.StringVar(&f.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.clientCA, "tls-client-ca", "", "PEM CA certificates: verify client certificates against them (mutual TLS) and accept them as credentials; required at the handshake unless --auth-tokens, --auth-jwks or --auth-anonymous offer another way in; needs --tls-cert")
}

// config is the gateway's TLS config, or nil for plaintext.
func (f *serverTLS) config() (*tls.Config, error) {
	switch {
	case f.cert == "" && f.key == "" && f.clientCA == "":
		return nil, nil
	case f.cert == "" || f.key == "":
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	r := &certReloader{certFile: f.cert, keyFile: f.key}
	if _, err := r.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.get}
	if f.clientCA != "" {
		pool, err := loadPool("--tls-client-ca", f.clientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// certReloader serves a key pair and reads it again when either file
// changed, checking at most once a second. A pair that fails to load keeps
// the previous one in service.
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // modification times and sizes of both files
	checked time.Time
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < time.Second {
		return r.cert, nil
	}
	r.checked = time.Now()
	if stamp, err := r.fileStamp(); err == nil && stamp == r.stamp {
		return r.cert, nil
	}
	if c, err := r.loadLocked(); err == nil {
		return c, nil
	}
	return r.cert, nil
}

func (r *certReloader) load() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked()
}

func (r *certReloader) loadLocked() (*tls.Certificate, error) {
	stamp, err := r.fileStamp()
	if err != nil {
		return nil, err
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s / --tls-key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.stamp, r.checked = &c, stamp, time.Now()
	return r.cert, nil
}

func (r *certReloader) fileStamp() (string, error) {
	var stamp string
	for i, f := range []string{r.certFile, r.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("%s: %w", []string{"--tls-cert", "--tls-key"}[i], err)
		}
		stamp += fmt.Sprintf("%d/%d;", st.ModTime().UnixNano(), st.Size())
	}
	return stamp, nil
}

// clientTLS are the client verbs' TLS flags.
type clientTLS struct {
	on                bool
	ca, cert, key, sn string
}

func (f *clientTLS) register(fs *pflag.FlagSet) {
	fs.BoolVar(&f.on, "tls", false, "connect over TLS, verifying the gateway against the system's CAs (implied by the other --tls-* flags)")
	fs.StringVar(&f.ca, "tls-ca", "", "PEM CA certificates to verify the gateway with, instead of the system's")
	fs.StringVar(&f.cert, "tls-cert", "", "PEM client certificate, for gateways that require one (mutual TLS); with --tls-key")
	fs.StringVar(&f.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.sn, "tls-server-name", "", "name to verify the gateway's certificate against, when it is not the host in --addr")
}

// credentials are the transport credentials the flags ask for.
func (f *clientTLS) credentials() (credentials.TransportCredentials, error) {
	if !f.on && f.ca == "" && f.cert == "" && f.key == "" && f.sn == "" {
		return insecure.NewCredentials(), nil
	}
	cfg, err := clientTLSConfig("--tls", f.ca, f.cert, f.key, f.sn)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}

// clientTLSConfig is a client's TLS config from the files its flags name;
// flag is the flags' prefix (--tls, --kafka-tls), for error messages. An
// empty ca verifies against the system's CAs.
func clientTLSConfig(flag, ca, cert, key, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if ca != "" {
		pool, err := loadPool(flag+"-ca", ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case cert != "" && key != "":
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("%s-cert %s / %s-key %s: %w", flag, cert, flag, key, err)
		}
		cfg.Certificates = []tls.Certificate{c}
	case cert != "" || key != "":
		return nil, fmt.Errorf("%s-cert and %s-key go together", flag, flag)
	}
	return cfg, nil
}

func loadPool(flag, file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", flag, file)
	}
	return pool, nil
}
