// Package pki is the project's certificate authority and the mutual TLS every
// connection uses: what a peer is (its kind and name, carried in its
// certificate), how the certificates are made, and the tls.Configs that check
// them. Peers are authenticated by the CA and the identity in their
// certificate, never by DNS names, so addresses may be anything.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Kind is what a certificate's holder is.
type Kind string

// The kinds of identity.
const (
	KindManager Kind = "manager" // runs von-manager: calls agents, answers everyone
	KindAgent   Kind = "agent"   // runs von-agent for the router of the same name
	KindUser    Kind = "user"    // vonctl, the SDK, vonperf: reserves and joins ONs
)

// Identity is who a certificate names.
type Identity struct {
	Kind  Kind
	Name  string
	Admin bool // a user allowed to see and change every reservation and the topology
}

func (id Identity) String() string {
	s := string(id.Kind) + " " + id.Name
	if id.Admin {
		s += " (admin)"
	}
	return s
}

// uriScheme carries the identity in a URI SAN: von://KIND/NAME, with
// von://admin/NAME for an admin user.
const uriScheme = "von"

func (id Identity) uri() *url.URL {
	k := string(id.Kind)
	if id.Admin {
		k = "admin"
	}
	return &url.URL{Scheme: uriScheme, Host: k, Path: "/" + id.Name}
}

// ErrNoIdentity: the certificate carries no VON identity.
var ErrNoIdentity = errors.New("certificate names no VON identity")

// IdentityOf reads the identity a certificate names.
func IdentityOf(c *x509.Certificate) (Identity, error) {
	for _, u := range c.URIs {
		if u.Scheme != uriScheme {
			continue
		}
		id := Identity{Kind: Kind(u.Host), Name: strings.TrimPrefix(u.Path, "/")}
		if id.Kind == "admin" {
			id.Kind, id.Admin = KindUser, true
		}
		if err := id.check(); err != nil {
			return Identity{}, fmt.Errorf("%w: %s: %w", ErrNoIdentity, u, err)
		}
		return id, nil
	}
	return Identity{}, fmt.Errorf("%w (subject %q)", ErrNoIdentity, c.Subject.CommonName)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (id Identity) check() error {
	switch id.Kind {
	case KindManager, KindAgent, KindUser:
	default:
		return fmt.Errorf("unknown kind %q (want manager, agent or user)", id.Kind)
	}
	if !nameRE.MatchString(id.Name) {
		return fmt.Errorf("name %q: use 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit", id.Name)
	}
	if id.Admin && id.Kind != KindUser {
		return errors.New("only a user can be an admin")
	}
	return nil
}

// File names in a PKI directory.
const (
	CAFile    = "ca.crt"
	caKeyFile = "ca.key"
)

// Init creates a CA in dir (ca.crt, and ca.key readable by the owner only).
// It refuses to overwrite an existing CA.
func Init(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []string{CAFile, caKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%s already exists: this directory has a CA (remove it first to start over; every certificate it issued stops working)", filepath.Join(dir, f))
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "VON CA " + serial.Text(16)[:8], Organization: []string{"VON"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, caKeyFile), key); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, CAFile), "CERTIFICATE", der, 0o644)
}

// IssueRequest describes a certificate to issue.
type IssueRequest struct {
	Identity
	// Hosts are extra DNS names or IP addresses to put in the certificate, for
	// tools that check host names (VON peers do not).
	Hosts    []string
	Validity time.Duration // default 1 year
	// Out is the directory NAME.crt and NAME.key are written to (default: the
	// CA's directory; created if missing).
	Out string
}

// Issue signs a certificate for req with the CA in dir and writes NAME.crt and
// NAME.key to req.Out (default dir). It returns their paths.
func Issue(dir string, req IssueRequest) (certPath, keyPath string, err error) {
	if err := req.Identity.check(); err != nil {
		return "", "", err
	}
	caCert, caKey, err := loadCA(dir)
	if err != nil {
		return "", "", err
	}
	out := req.Out
	if out == "" {
		out = dir
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(out, req.Name+".crt"), filepath.Join(out, req.Name+".key")
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return "", "", fmt.Errorf("%s already exists; remove it to issue %s again", p, req.Name)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := newSerial()
	if err != nil {
		return "", "", err
	}
	if req.Validity <= 0 {
		req.Validity = 365 * 24 * time.Hour
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: req.Name, OrganizationalUnit: []string{string(req.Kind)}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(req.Validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{req.Identity.uri()},
	}
	for _, h := range req.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", "", err
	}
	if err := writeKey(keyPath, key); err != nil {
		return "", "", err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, nil, fmt.Errorf("no CA in %s (create one with `von-manager pki init --dir %s`): %w", dir, dir, err)
	}
	kb, err := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("the CA's key is not in %s: %w", dir, err)
	}
	cp, _ := pem.Decode(cb)
	kp, _ := pem.Decode(kb)
	if cp == nil || kp == nil {
		return nil, nil, fmt.Errorf("%s: the CA files are not PEM", dir)
	}
	cert, err := x509.ParseCertificate(cp.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kp.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
