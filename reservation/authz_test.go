package reservation

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vonproject/von/internal/rpcconn"
	"github.com/vonproject/von/pki"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// securePKI is a CA with a manager certificate; as() issues more.
type securePKI struct {
	t   *testing.T
	dir string
}

func newPKI(t *testing.T) *securePKI {
	t.Helper()
	p := &securePKI{t: t, dir: t.TempDir()}
	if err := pki.Init(p.dir); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *securePKI) material(id pki.Identity) *pki.Material {
	p.t.Helper()
	crt, key, err := pki.Issue(p.dir, pki.IssueRequest{Identity: id})
	if err != nil {
		p.t.Fatal(err)
	}
	m, err := pki.Load(pki.Files{CA: filepath.Join(p.dir, pki.CAFile), Cert: crt, Key: key})
	if err != nil {
		p.t.Fatal(err)
	}
	return m
}

// serveSecure serves a leading manager over mutual TLS and returns its address.
func serveSecure(t *testing.T, p *securePKI, cli *clientv3.Client) (*Manager, string) {
	t.Helper()
	tls := p.material(pki.Identity{Kind: pki.KindManager, Name: "m"})
	m := startManager(t, cli, Config{TLS: tls})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &server{M: m, Secure: true}
	gs := grpc.NewServer(rpcconn.ServerOptions(tls, srv.Interceptors()...)...)
	registerServices(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return m, lis.Addr().String()
}

type clients struct {
	rs  vonv1.ReservationServiceClient
	reg vonv1.AgentRegistryServiceClient
}

func (p *securePKI) dial(addr string, id pki.Identity) clients {
	p.t.Helper()
	conn, err := rpcconn.Dial(addr, p.material(id), pki.Expect(pki.KindManager, ""))
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { conn.Close() })
	return clients{vonv1.NewReservationServiceClient(conn), vonv1.NewAgentRegistryServiceClient(conn)}
}

func wantDenied(t *testing.T, what string, err error, code codes.Code, says string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), says) {
		t.Errorf("%s: %v, want %v saying %q", what, err, code, says)
	}
}

// On a secure manager every caller is who its certificate says: an agent registers
// only its own router, users see and change only their own ONs, admins everything.
func TestAuthorization(t *testing.T) {
	_, cli := newEtcd(t)
	p := newPKI(t)
	m, addr := serveSecure(t, p, cli)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := p.dial(addr, pki.Identity{Kind: pki.KindUser, Name: "root", Admin: true})
	alice := p.dial(addr, pki.Identity{Kind: pki.KindUser, Name: "alice"})
	bob := p.dial(addr, pki.Identity{Kind: pki.KindUser, Name: "bob"})
	h2 := p.dial(addr, pki.Identity{Kind: pki.KindUser, Name: "h2"})
	r1 := p.dial(addr, pki.Identity{Kind: pki.KindAgent, Name: "r1"})

	_, err := alice.rs.ApplyTopology(ctx, &vonv1.ApplyTopologyRequest{Source: &vonv1.ApplyTopologyRequest_Yaml{Yaml: direct}})
	wantDenied(t, "alice applies a topology", err, codes.PermissionDenied, "needs an admin certificate")
	if _, err := admin.rs.ApplyTopology(ctx, &vonv1.ApplyTopologyRequest{Source: &vonv1.ApplyTopologyRequest_Yaml{Yaml: routed}}); err != nil {
		t.Fatal(err)
	}

	// An agent registers only as its own router (its registered addresses become
	// its neighbours' next hops), and users cannot register at all.
	_, err = r1.reg.Register(ctx, &vonv1.AgentRegistryServiceRegisterRequest{Node: "r2", Endpoint: "127.0.0.1:1"})
	wantDenied(t, "agent r1 registers as r2", err, codes.PermissionDenied, "may register only router r1")
	_, err = alice.reg.Register(ctx, &vonv1.AgentRegistryServiceRegisterRequest{Node: "r1", Endpoint: "127.0.0.1:1"})
	wantDenied(t, "a user registers as r1", err, codes.PermissionDenied, "for agent certificates")
	if _, err := r1.reg.Register(ctx, &vonv1.AgentRegistryServiceRegisterRequest{Node: "r1", Endpoint: "127.0.0.1:1"}); err != nil {
		t.Fatalf("r1 registering itself: %v", err)
	}
	agents, _ := m.store.Agents(ctx)
	if agents["r2"] != nil {
		t.Fatal("a registration as r2 was recorded")
	}

	// Ownership.
	if _, err := admin.rs.ApplyTopology(ctx, &vonv1.ApplyTopologyRequest{Source: &vonv1.ApplyTopologyRequest_Yaml{Yaml: direct}}); err != nil {
		t.Fatal(err)
	}
	r, err := alice.rs.Reserve(ctx, &vonv1.ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, RateBps: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetReservation().GetOwner() != "alice" {
		t.Fatalf("owner %q", r.GetReservation().GetOwner())
	}
	_, err = bob.rs.Get(ctx, &vonv1.GetRequest{Name: "a"})
	wantDenied(t, "bob gets alice's ON", err, codes.PermissionDenied, "reserved by user alice")
	_, err = bob.rs.Release(ctx, &vonv1.ReleaseRequest{Name: "a"})
	wantDenied(t, "bob releases alice's ON", err, codes.PermissionDenied, "only its owner or an admin")
	_, err = bob.rs.Renew(ctx, &vonv1.RenewRequest{Name: "a"})
	wantDenied(t, "bob renews alice's ON", err, codes.PermissionDenied, "only its owner, its members or an admin")
	// A member sees and renews its ON, but cannot release it.
	if _, err := h2.rs.Get(ctx, &vonv1.GetRequest{Name: "a"}); err != nil {
		t.Errorf("member h2 gets its ON: %v", err)
	}
	if _, err := h2.rs.Renew(ctx, &vonv1.RenewRequest{Name: "a"}); err != nil {
		t.Errorf("member h2 renews its ON: %v", err)
	}
	_, err = h2.rs.Release(ctx, &vonv1.ReleaseRequest{Name: "a"})
	wantDenied(t, "member h2 releases", err, codes.PermissionDenied, "only its owner or an admin")
	_, err = bob.rs.Reserve(ctx, &vonv1.ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, RateBps: 1_000_000})
	wantDenied(t, "bob reserves alice's name", err, codes.AlreadyExists, "taken by another user")
	if l, err := bob.rs.List(ctx, &vonv1.ListRequest{}); err != nil || len(l.GetReservations()) != 0 {
		t.Errorf("bob lists %v %v, want nothing", l, err)
	}
	if l, err := admin.rs.List(ctx, &vonv1.ListRequest{}); err != nil || len(l.GetReservations()) != 1 {
		t.Errorf("admin lists %v %v, want alice's", l, err)
	}
	if _, err := alice.rs.Get(ctx, &vonv1.GetRequest{Name: "a"}); err != nil {
		t.Errorf("alice gets her ON: %v", err)
	}
	// Watch shows bob nothing of alice's.
	wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	ws, err := bob.rs.Watch(wctx, &vonv1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := ws.Recv(); err == nil {
		t.Errorf("bob watched %v", ev)
	}
	wcancel()

	// Member credentials: the owner, or a certificate naming the member.
	pub, sealPub := memberKeys(t)
	req := func(member string) *vonv1.IssueMemberCredentialRequest {
		return &vonv1.IssueMemberCredentialRequest{Name: "a", Member: member, PublicKey: pub, SealPublicKey: sealPub, GossipAddress: "127.0.0.1:4750"}
	}
	if _, err := h2.rs.IssueMemberCredential(ctx, req("h2")); err != nil {
		t.Errorf("h2's own credential: %v", err)
	}
	_, err = h2.rs.IssueMemberCredential(ctx, req("h1"))
	wantDenied(t, "h2 asks for h1's credential", err, codes.PermissionDenied, "certificate named h1")
	_, err = bob.rs.IssueMemberCredential(ctx, req("h1"))
	wantDenied(t, "bob asks for h1's credential", err, codes.PermissionDenied, "certificate named h1")
	if _, err := alice.rs.IssueMemberCredential(ctx, req("h1")); err != nil {
		t.Errorf("the owner asks for h1's credential: %v", err)
	}
	_, err = bob.rs.ListMembers(ctx, &vonv1.ListMembersRequest{Name: "a"})
	wantDenied(t, "bob lists alice's members", err, codes.PermissionDenied, "neither the owner")
	if _, err := h2.rs.ListMembers(ctx, &vonv1.ListMembersRequest{Name: "a"}); err != nil {
		t.Errorf("member h2 lists members: %v", err)
	}
	if _, err := admin.rs.Release(ctx, &vonv1.ReleaseRequest{Name: "a"}); err != nil {
		t.Errorf("admin releases alice's ON: %v", err)
	}

	// A client without a certificate does not get through the handshake.
	plain, err := rpcconn.Dial(addr, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_, err = vonv1.NewReservationServiceClient(plain).List(ctx, &vonv1.ListRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext client: %v", err)
	}
}
