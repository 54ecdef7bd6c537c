package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	v1 "github.com/concordrpc/concord/conformance/internal/gen/connectrpc/conformance/v1"
)

// tlsConfig serves the runner's certificate. A non-empty clientCA (PEM)
// makes client certificates required and verified against it.
func tlsConfig(creds *v1.TLSCreds, clientCA []byte) (*tls.Config, error) {
	if len(creds.GetCert()) == 0 || len(creds.GetKey()) == 0 {
		return nil, errors.New("TLS requested without server credentials")
	}
	cert, err := tls.X509KeyPair(creds.GetCert(), creds.GetKey())
	if err != nil {
		return nil, fmt.Errorf("server credentials: %w", err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
	if len(clientCA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(clientCA) {
			return nil, errors.New("client certificate: no PEM certificate found")
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
