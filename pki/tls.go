package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Files names a CA certificate and a certificate and key to present.
type Files struct {
	CA, Cert, Key string
}

// Material is loaded, checked TLS material: the CA pool and this process's
// certificate and identity.
type Material struct {
	pool *x509.CertPool
	cert tls.Certificate
	id   Identity
}

// ErrNoCredentials: neither certificates nor an explicit insecure mode.
var ErrNoCredentials = errors.New("no TLS certificates")

// Load reads and checks f: the certificate must chain to the CA and name a VON
// identity.
func Load(f Files) (*Material, error) {
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return nil, fmt.Errorf("%w: give --ca, --cert and --key (or VON_CA, VON_CERT, VON_KEY)", ErrNoCredentials)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("CA certificate %s: no PEM certificate in it", f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("certificate and key: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("certificate %s was not issued by the CA in %s: %w", f.Cert, f.CA, err)
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", f.Cert, err)
	}
	cert.Leaf = leaf
	return &Material{pool: pool, cert: cert, id: id}, nil
}

// Identity is who this process's certificate names.
func (m *Material) Identity() Identity { return m.id }

// ServerConfig is mutual TLS 1.3 for a server: every client must present a
// certificate from the CA that names a VON identity (PeerIdentity reads it).
func (m *Material) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    m.pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no client certificate")
			}
			_, err := IdentityOf(cs.PeerCertificates[0])
			return err
		},
	}
}

// ClientConfig is mutual TLS 1.3 for a client: the server must present a
// certificate from the CA whose identity expect accepts (nil: any).
func (m *Material) ClientConfig(expect func(Identity) error) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.cert},
		// The chain and the identity are checked below, instead of a host
		// name: peers are named by their certificates, not by DNS.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: m.pool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("the server's certificate is not from our CA: %w", err)
			}
			id, err := IdentityOf(leaf)
			if err != nil {
				return err
			}
			if expect != nil {
				return expect(id)
			}
			return nil
		},
	}
}

// Expect accepts a peer of kind k, and when name is not empty, only that name.
func Expect(k Kind, name string) func(Identity) error {
	return func(id Identity) error {
		if id.Kind != k || (name != "" && id.Name != name) {
			want := string(k)
			if name != "" {
				want += " " + name
			}
			return fmt.Errorf("the server is %s, not %s", id, want)
		}
		return nil
	}
}

// ServerCredentials are gRPC server credentials for m.
func (m *Material) ServerCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(m.ServerConfig())
}

// ClientCredentials are gRPC client credentials for m expecting a server expect accepts.
func (m *Material) ClientCredentials(expect func(Identity) error) credentials.TransportCredentials {
	return credentials.NewTLS(m.ClientConfig(expect))
}

// PeerIdentity is the identity of the client of a gRPC call served with
// ServerCredentials; false on a plaintext (insecure) connection.
func PeerIdentity(ctx context.Context) (Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return Identity{}, false
	}
	id, err := IdentityOf(ti.State.PeerCertificates[0])
	if err != nil {
		return Identity{}, false
	}
	return id, true
}
