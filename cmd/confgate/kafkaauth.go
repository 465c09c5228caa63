package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// kafkaPasswordEnv carries the SASL password: an environment variable, not
// a flag, so that it does not show in process listings.
const kafkaPasswordEnv = "CONFGATE_KAFKA_SASL_PASSWORD"

// kafkaAuth are serve's flags for reaching a secured Kafka: TLS and SASL.
type kafkaAuth struct {
	tls             bool
	ca, cert, key   string
	serverName      string
	mechanism, user string
}

func (f *kafkaAuth) register(fs *pflag.FlagSet) {
	fs.BoolVar(&f.tls, "kafka-tls", false, "connect to Kafka over TLS, verifying the brokers against the system's CAs (implied by the other --kafka-tls-* flags)")
	fs.StringVar(&f.ca, "kafka-tls-ca", "", "PEM CA certificates to verify the brokers with, instead of the system's")
	fs.StringVar(&f.cert, "kafka-tls-cert", "", "PEM client certificate for brokers that require one; with --kafka-tls-key")
	fs.StringVar(&f.key, "kafka-tls-key", "", "PEM private key of --kafka-tls-cert")
	fs.StringVar(&f.serverName, "kafka-tls-server-name", "", "name to verify the brokers' certificates against, when it is not the host in --brokers")
	fs.StringVar(&f.mechanism, "kafka-sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (the password comes from $"+kafkaPasswordEnv+"); use with TLS outside trusted networks")
	fs.StringVar(&f.user, "kafka-sasl-user", "", "SASL user name")
}

// opts are the franz-go options the flags ask for; getenv reads the password.
func (f *kafkaAuth) opts(getenv func(string) string) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if f.tls || f.ca != "" || f.cert != "" || f.key != "" || f.serverName != "" {
		cfg, err := clientTLSConfig("--kafka-tls", f.ca, f.cert, f.key, f.serverName)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if f.mechanism == "" {
		if f.user != "" {
			return nil, errors.New("--kafka-sasl-user needs --kafka-sasl-mechanism")
		}
		return opts, nil
	}
	pass := getenv(kafkaPasswordEnv)
	if f.user == "" || pass == "" {
		return nil, fmt.Errorf("--kafka-sasl-mechanism %s needs --kafka-sasl-user and the password in $%s", f.mechanism, kafkaPasswordEnv)
	}
	switch strings.ToUpper(f.mechanism) {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: f.user, Pass: pass}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: f.user, Pass: pass}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: f.user, Pass: pass}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("--kafka-sasl-mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", f.mechanism)
	}
	return opts, nil
}

// args are the flags that set f again, for a child process (the SASL
// password travels in the environment, which children inherit, never in
// arguments).
func (f *kafkaAuth) args() []string {
	var out []string
	if f.tls {
		out = append(out, "--kafka-tls")
	}
	for _, kv := range []struct{ flag, v string }{
		{"--kafka-tls-ca", f.ca}, {"--kafka-tls-cert", f.cert}, {"--kafka-tls-key", f.key},
		{"--kafka-tls-server-name", f.serverName}, {"--kafka-sasl-mechanism", f.mechanism}, {"--kafka-sasl-user", f.user},
	} {
		if kv.v != "" {
			out = append(out, kv.flag+"="+kv.v)
		}
	}
	return out
}
