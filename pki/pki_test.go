package pki

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func issue(t *testing.T, dir string, id Identity) Files {
	t.Helper()
	crt, key, err := Issue(dir, IssueRequest{Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	return Files{CA: filepath.Join(dir, CAFile), Cert: crt, Key: key}
}

func load(t *testing.T, f Files) *Material {
	t.Helper()
	m, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// handshake runs a TLS handshake between client and server configs over a pipe
// and returns the client's and the server's errors.
func handshake(client, server *tls.Config) (cerr, serr error) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(b, server)
		s.SetDeadline(time.Now().Add(5 * time.Second))
		err := s.Handshake()
		if err == nil {
			_, err = s.Read(make([]byte, 1)) // the client's verification outcome arrives as data or an alert
		}
		done <- err
	}()
	c := tls.Client(a, client)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	cerr = c.Handshake()
	if cerr == nil {
		_, cerr = c.Write([]byte{1})
	}
	if cerr != nil {
		a.Close()
	}
	return cerr, <-done
}

func TestIdentitiesAndMutualTLS(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir); err != nil {
		t.Fatal(err)
	}
	if err := Init(dir); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Init: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, caKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode: %v %v", fi.Mode(), err)
	}
	mgr := load(t, issue(t, dir, Identity{Kind: KindManager, Name: "m1"}))
	r1 := load(t, issue(t, dir, Identity{Kind: KindAgent, Name: "r1"}))
	alice := load(t, issue(t, dir, Identity{Kind: KindUser, Name: "alice", Admin: true}))
	if got := alice.Identity(); got != (Identity{Kind: KindUser, Name: "alice", Admin: true}) {
		t.Fatalf("alice is %v", got)
	}
	if got := r1.Identity().String(); got != "agent r1" {
		t.Fatalf("r1 is %q", got)
	}
	// The manager dials agent r1: it accepts r1, refuses anything else.
	if cerr, serr := handshake(mgr.ClientConfig(Expect(KindAgent, "r1")), r1.ServerConfig()); cerr != nil || serr != nil {
		t.Fatalf("manager → r1: %v / %v", cerr, serr)
	}
	if cerr, _ := handshake(mgr.ClientConfig(Expect(KindAgent, "r2")), r1.ServerConfig()); cerr == nil || !strings.Contains(cerr.Error(), "not agent r2") {
		t.Fatalf("manager → r1 posing as r2: %v", cerr)
	}
	if cerr, _ := handshake(alice.ClientConfig(Expect(KindManager, "")), r1.ServerConfig()); cerr == nil {
		t.Fatal("a user accepted an agent as its manager")
	}
	// Another CA's certificates are refused both ways.
	other := t.TempDir()
	if err := Init(other); err != nil {
		t.Fatal(err)
	}
	stranger := load(t, issue(t, other, Identity{Kind: KindManager, Name: "m1"}))
	if cerr, serr := handshake(stranger.ClientConfig(nil), r1.ServerConfig()); cerr == nil && serr == nil {
		t.Fatal("r1 accepted a client from another CA")
	}
	if cerr, _ := handshake(mgr.ClientConfig(Expect(KindAgent, "r1")), stranger.ServerConfig()); cerr == nil || !strings.Contains(cerr.Error(), "not from our CA") {
		t.Fatalf("manager accepted a server from another CA: %v", cerr)
	}
	// A client without a certificate is refused.
	bare := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if cerr, serr := handshake(bare, r1.ServerConfig()); cerr == nil && serr == nil {
		t.Fatal("r1 accepted a client without a certificate")
	}
	// Load refuses a certificate from another CA and mismatched files.
	if _, err := Load(Files{CA: filepath.Join(dir, CAFile), Cert: filepath.Join(other, "m1.crt"), Key: filepath.Join(other, "m1.key")}); err == nil ||
		!strings.Contains(err.Error(), "not issued by the CA") {
		t.Fatalf("Load of a foreign certificate: %v", err)
	}
	if _, err := Load(Files{}); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("Load of nothing: %v", err)
	}
}

func TestIssueRefusesBadIdentities(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Issue(dir, IssueRequest{Identity: Identity{Kind: KindUser, Name: "a"}}); err == nil || !strings.Contains(err.Error(), "pki init") {
		t.Fatalf("Issue without a CA: %v", err)
	}
	if err := Init(dir); err != nil {
		t.Fatal(err)
	}
	for _, id := range []Identity{
		{Kind: "root", Name: "x"}, {Kind: KindUser, Name: ""}, {Kind: KindUser, Name: "../etc/passwd"},
		{Kind: KindAgent, Name: "r1", Admin: true}, {Kind: KindUser, Name: strings.Repeat("a", 65)},
	} {
		if _, _, err := Issue(dir, IssueRequest{Identity: id}); err == nil {
			t.Errorf("Issue(%+v) succeeded", id)
		}
	}
	issue(t, dir, Identity{Kind: KindUser, Name: "bob"})
	if _, _, err := Issue(dir, IssueRequest{Identity: Identity{Kind: KindUser, Name: "bob"}}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("re-issue: %v", err)
	}
}

func TestFlags(t *testing.T) {
	var f Flags
	if _, err := f.Load(nil, KindAgent); !errors.Is(err, ErrNoCredentials) || !strings.Contains(err.Error(), "pki issue --dir DIR --kind agent") {
		t.Fatalf("no flags: %v", err)
	}
	f.Insecure = true
	if m, err := f.Load(nil, KindAgent); m != nil || err != nil {
		t.Fatalf("--insecure: %v %v", m, err)
	}
	f.CA = "ca.crt"
	if _, err := f.Load(nil, KindAgent); err == nil || !strings.Contains(err.Error(), "choose one") {
		t.Fatalf("--insecure with --ca: %v", err)
	}
	dir := t.TempDir()
	if err := Init(dir); err != nil {
		t.Fatal(err)
	}
	f = Flags{Files: issue(t, dir, Identity{Kind: KindUser, Name: "u"})}
	if _, err := f.Load(nil, KindAgent); err == nil || !strings.Contains(err.Error(), "needs a certificate of kind agent") {
		t.Fatalf("wrong kind: %v", err)
	}
}
