package reservation

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vonproject/von/credential"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// putRecord writes a reservation record as is (no admission, no 2PC).
func putRecord(t *testing.T, m *Manager, r *vonv1.Reservation) {
	t.Helper()
	b, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.cli.Put(context.Background(), m.store.onKey(r.GetName()), string(b)); err != nil {
		t.Fatal(err)
	}
}

// committedRecord is a COMMITTED reservation of h1 and h2 whose lease ends at lease.
func committedRecord(name string, onID uint32, lease time.Time) *vonv1.Reservation {
	return &vonv1.Reservation{Name: name, OnId: onID, State: vonv1.ReservationState_RESERVATION_STATE_COMMITTED, RateBps: 1_000_000,
		Members:         []*vonv1.Member{{Name: "h1", Address: "10.77.1.1"}, {Name: "h2", Address: "10.77.1.2"}},
		Ttl:             durationpb.New(time.Hour),
		LeaseExpireTime: timestamppb.New(lease), CreateTime: timestamppb.Now(), UpdateTime: timestamppb.Now()}
}

// memberKeys makes a member's Ed25519 and X25519 public keys.
func memberKeys(t *testing.T) (pub, seal []byte) {
	t.Helper()
	p, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	seal = make([]byte, 32)
	_, _ = rand.Read(seal)
	return p, seal
}

func issueReq(t *testing.T, name, member string) *vonv1.IssueMemberCredentialRequest {
	pub, seal := memberKeys(t)
	return &vonv1.IssueMemberCredentialRequest{Name: name, Member: member, PublicKey: pub, SealPublicKey: seal, GossipAddress: "10.77.1.1:4750"}
}

func verificationKeys(t *testing.T, s *server) []*vonv1.VerificationKey {
	t.Helper()
	resp, err := s.GetVerificationKeys(context.Background(), &vonv1.GetVerificationKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetKeys()
}

// A member of a reservation made by the leader gets a credential from a manager that
// does not lead; it verifies against the published keys and the member is listed.
func TestIssueMemberCredential(t *testing.T) {
	_, cli := newEtcd(t)
	leader := startManager(t, cli, Config{})
	applyYAML(t, leader, direct)
	ctx := context.Background()
	r, err := leader.Reserve(ctx, ReserveRequest{Name: "video", Members: []string{"h1", "h2"}, Rate: 1_000_000, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	follower := New(cli, Config{}) // never runs: never leads
	srv := &server{M: follower}

	// Keys exist before anyone was issued a credential.
	keys := verificationKeys(t, srv)
	if len(keys) != 1 || !keys[0].GetActive() || len(keys[0].GetPublicKey()) != ed25519.PublicKeySize {
		t.Fatalf("keys before the first credential: %v", keys)
	}

	req := issueReq(t, "video", "h1")
	before := time.Now()
	resp, err := srv.IssueMemberCredential(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOnId() != r.GetOnId() || resp.GetCredential().GetKeyId() != keys[0].GetKeyId() {
		t.Fatalf("on_id %d key %s, want %d %s", resp.GetOnId(), resp.GetCredential().GetKeyId(), r.GetOnId(), keys[0].GetKeyId())
	}
	// Verify against the keys as the leader publishes them.
	cl, err := credential.Verify(resp.GetCredential(), verificationKeys(t, &server{M: leader}), r.GetOnId(), time.Now())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if cl.GetReservation() != "video" || cl.GetMember() != "h1" || !proto.Equal(cl.GetExpireTime(), r.GetLeaseExpireTime()) ||
		string(cl.GetPublicKey()) != string(req.PublicKey) || string(cl.GetSealPublicKey()) != string(req.SealPublicKey) ||
		cl.GetIssueTime().AsTime().Before(before.Add(-time.Second)) || cl.GetIssueTime().AsTime().After(time.Now()) {
		t.Fatalf("claims %v (lease %v)", cl, r.GetLeaseExpireTime().AsTime())
	}
	if _, err := credential.Verify(resp.GetCredential(), keys, r.GetOnId()+1, time.Now()); err == nil {
		t.Error("credential admits to another ON")
	}

	req2 := issueReq(t, "video", "h2")
	req2.GossipAddress = "10.77.1.2:4750"
	if _, err := srv.IssueMemberCredential(ctx, req2); err != nil {
		t.Fatal(err)
	}
	lm, err := srv.ListMembers(ctx, &vonv1.ListMembersRequest{Name: "video"})
	if err != nil {
		t.Fatal(err)
	}
	if lm.GetOnId() != r.GetOnId() || len(lm.GetMembers()) != 2 {
		t.Fatalf("ListMembers = %v", lm)
	}
	h1, h2 := lm.GetMembers()[0], lm.GetMembers()[1]
	if h1.GetName() != "h1" || h1.GetAddress() != "10.77.1.1" || h1.GetGossipAddress() != "10.77.1.1:4750" ||
		string(h1.GetPublicKey()) != string(req.PublicKey) || string(h1.GetSealPublicKey()) != string(req.SealPublicKey) ||
		!proto.Equal(h1.GetCredentialExpireTime(), cl.GetExpireTime()) {
		t.Errorf("h1 entry %v", h1)
	}
	if h2.GetName() != "h2" || h2.GetAddress() != "10.77.1.2" || h2.GetGossipAddress() != "10.77.1.2:4750" {
		t.Errorf("h2 entry %v", h2)
	}

	// Released: no more credentials, no member list, and the reaper empties the registry.
	if _, err := leader.Release(ctx, "video"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.IssueMemberCredential(ctx, issueReq(t, "video", "h1")); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("issue after release: %v", err)
	}
	if _, err := srv.ListMembers(ctx, &vonv1.ListMembersRequest{Name: "video"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("list after release: %v", err)
	}
	if n, err := leader.ReapMembers(ctx, time.Now()); err != nil || n != 2 {
		t.Errorf("ReapMembers after release = %d, %v; want 2", n, err)
	}
}

func TestIssueMemberCredentialErrors(t *testing.T) {
	_, cli := newEtcd(t)
	m := New(cli, Config{})
	srv := &server{M: m}
	ctx := context.Background()
	putRecord(t, m, committedRecord("video", 7, time.Now().Add(time.Hour)))
	preparing := committedRecord("setup", 8, time.Now().Add(time.Hour))
	preparing.State = vonv1.ReservationState_RESERVATION_STATE_PREPARING
	putRecord(t, m, preparing)
	putRecord(t, m, committedRecord("lapsed", 9, time.Now().Add(-time.Second)))

	mod := func(f func(*vonv1.IssueMemberCredentialRequest)) *vonv1.IssueMemberCredentialRequest {
		r := issueReq(t, "video", "h1")
		f(r)
		return r
	}
	for _, c := range []struct {
		what string
		req  *vonv1.IssueMemberCredentialRequest
		code codes.Code
		msg  string
	}{
		{"unknown reservation", issueReq(t, "nosuch", "h1"), codes.NotFound, `reservation not found: "nosuch"`},
		{"not committed", issueReq(t, "setup", "h1"), codes.FailedPrecondition, "ON not committed: reservation \"setup\" is preparing"},
		{"lease ran out", issueReq(t, "lapsed", "h1"), codes.FailedPrecondition, "ON not committed: the lease"},
		{"not a member", issueReq(t, "video", "h3"), codes.PermissionDenied, `"h3" is not a member of "video"`},
		{"short public key", mod(func(r *vonv1.IssueMemberCredentialRequest) { r.PublicKey = r.PublicKey[:31] }), codes.InvalidArgument, "public_key is 31 bytes"},
		{"no public key", mod(func(r *vonv1.IssueMemberCredentialRequest) { r.PublicKey = nil }), codes.InvalidArgument, "public_key is 0 bytes"},
		{"long seal key", mod(func(r *vonv1.IssueMemberCredentialRequest) { r.SealPublicKey = make([]byte, 33) }), codes.InvalidArgument, "seal_public_key is 33 bytes"},
		{"no gossip address", mod(func(r *vonv1.IssueMemberCredentialRequest) { r.GossipAddress = "" }), codes.InvalidArgument, "gossip_address"},
		{"gossip address without port", mod(func(r *vonv1.IssueMemberCredentialRequest) { r.GossipAddress = "10.77.1.1" }), codes.InvalidArgument, "gossip_address"},
		{"gossip address without host", mod(func(r *vonv1.IssueMemberCredentialRequest) { r.GossipAddress = ":4750" }), codes.InvalidArgument, "no host"},
		{"gossip port 0", mod(func(r *vonv1.IssueMemberCredentialRequest) { r.GossipAddress = "h1:0" }), codes.InvalidArgument, "port"},
		{"gossip port not a number", mod(func(r *vonv1.IssueMemberCredentialRequest) { r.GossipAddress = "h1:gossip" }), codes.InvalidArgument, "port"},
		{"negative ttl", mod(func(r *vonv1.IssueMemberCredentialRequest) { r.Ttl = durationpb.New(-time.Second) }), codes.InvalidArgument, "negative"},
		{"no member", mod(func(r *vonv1.IssueMemberCredentialRequest) { r.Member = "" }), codes.InvalidArgument, "member name is empty"},
		{"bad name", mod(func(r *vonv1.IssueMemberCredentialRequest) { r.Name = "a/b" }), codes.InvalidArgument, "not allowed"},
	} {
		_, err := srv.IssueMemberCredential(ctx, c.req)
		if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.msg) {
			t.Errorf("%s: %v; want %v containing %q", c.what, err, c.code, c.msg)
		}
	}
	// An IPv6 gossip address and a host name are fine.
	for _, a := range []string{"[fd00::1]:4750", "h1.example:4750"} {
		if _, err := srv.IssueMemberCredential(ctx, mod(func(r *vonv1.IssueMemberCredentialRequest) { r.GossipAddress = a })); err != nil {
			t.Errorf("gossip address %s: %v", a, err)
		}
	}
	// Nothing was recorded for the refused requests.
	resp, err := cli.Get(ctx, m.store.memberPrefixAll(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil || len(resp.Kvs) != 1 {
		t.Errorf("registry holds %d entries (%v), want 1 (h1 of video)", len(resp.Kvs), err)
	}

	for _, c := range []struct {
		name string
		code codes.Code
	}{{"nosuch", codes.NotFound}, {"setup", codes.FailedPrecondition}} {
		if _, err := srv.ListMembers(ctx, &vonv1.ListMembersRequest{Name: c.name}); status.Code(err) != c.code {
			t.Errorf("ListMembers(%s): %v; want %v", c.name, err, c.code)
		}
	}
}

// The credential expires at now+ttl, but never after the lease; ttl 0 means the lease.
func TestCredentialExpiryCappedAtLease(t *testing.T) {
	_, cli := newEtcd(t)
	m := New(cli, Config{})
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	lease := now.Add(10 * time.Minute)
	putRecord(t, m, committedRecord("video", 7, lease))
	for _, c := range []struct {
		ttl  time.Duration
		want time.Time
	}{{0, lease}, {time.Hour, lease}, {10 * time.Minute, lease}, {time.Minute, now.Add(time.Minute)}} {
		pub, seal := memberKeys(t)
		cred, onID, err := m.issue(ctx, CredentialRequest{Name: "video", Member: "h2", PublicKey: pub, SealPublicKey: seal,
			GossipAddress: "10.77.1.2:4750", TTL: c.ttl}, now)
		if err != nil {
			t.Fatal(err)
		}
		keys, _ := m.VerificationKeys(ctx)
		cl, err := credential.Verify(cred, keys, onID, now)
		if err != nil {
			t.Fatal(err)
		}
		if !cl.GetExpireTime().AsTime().Equal(c.want) || !cl.GetIssueTime().AsTime().Equal(now) {
			t.Errorf("ttl %s: issued %v expires %v, want %v", c.ttl, cl.GetIssueTime().AsTime(), cl.GetExpireTime().AsTime(), c.want)
		}
		_, members, err := m.members(ctx, "video", now)
		if err != nil || len(members) != 1 || !members[0].GetCredentialExpireTime().AsTime().Equal(c.want) {
			t.Errorf("ttl %s: registry %v, %v", c.ttl, members, err)
		}
	}
}

// Two managers on one etcd that both need the first key at once end with one active
// key, and both sign credentials that verify against either's key list.
func TestSigningKeyRace(t *testing.T) {
	_, cli := newEtcd(t)
	ms := []*Manager{New(cli, Config{}), New(cli, Config{})}
	putRecord(t, ms[0], committedRecord("video", 7, time.Now().Add(time.Hour)))
	ctx := context.Background()
	type issued struct {
		cred *vonv1.MemberCredential
		err  error
	}
	out := make(chan issued, 32)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := ms[i%2]
			<-start
			if i%4 < 2 {
				_, err := m.VerificationKeys(ctx)
				out <- issued{err: err}
				return
			}
			pub, seal := memberKeys(t)
			c, _, err := m.IssueMemberCredential(ctx, CredentialRequest{Name: "video", Member: "h1", PublicKey: pub, SealPublicKey: seal, GossipAddress: "10.77.1.1:1"})
			out <- issued{c, err}
		}()
	}
	close(start)
	wg.Wait()
	close(out)
	keys, _, err := ms[0].store.signingKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !keys[0].Active {
		t.Fatalf("%d keys after the race, want one active", len(keys))
	}
	var creds []*vonv1.MemberCredential
	for o := range out {
		if o.err != nil {
			t.Fatal(o.err)
		}
		if o.cred != nil {
			creds = append(creds, o.cred)
		}
	}
	if len(creds) != 16 {
		t.Errorf("%d credentials issued, want 16", len(creds))
	}
	for _, m := range ms {
		vk, err := m.VerificationKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range creds {
			if _, err := credential.Verify(c, vk, 7, time.Now()); err != nil {
				t.Errorf("credential does not verify: %v", err)
			}
		}
	}
	// And both managers keep signing with that key.
	for _, m := range ms {
		pub, seal := memberKeys(t)
		c, _, err := m.IssueMemberCredential(ctx, CredentialRequest{Name: "video", Member: "h2", PublicKey: pub, SealPublicKey: seal, GossipAddress: "10.77.1.2:1"})
		if err != nil {
			t.Fatal(err)
		}
		if c.GetKeyId() != keys[0].ID() {
			t.Errorf("signed with %s, want %s", c.GetKeyId(), keys[0].ID())
		}
	}
}

// Rotation: old credentials keep verifying, new ones are signed by the new key, and
// the retired key goes once nothing it signed can be valid.
func TestRotateSigningKey(t *testing.T) {
	_, cli := newEtcd(t)
	m := New(cli, Config{MaxTTL: 2 * time.Hour})
	other := New(cli, Config{MaxTTL: 2 * time.Hour})
	srv := &server{M: m}
	putRecord(t, m, committedRecord("video", 7, time.Now().Add(time.Hour)))
	ctx := context.Background()
	old, err := srv.IssueMemberCredential(ctx, issueReq(t, "video", "h1"))
	if err != nil {
		t.Fatal(err)
	}
	nk, err := other.RotateSigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := verificationKeys(t, srv)
	if len(keys) != 2 || keys[0].GetKeyId() != nk.GetKeyId() || !keys[0].GetActive() ||
		keys[1].GetKeyId() != old.GetCredential().GetKeyId() || keys[1].GetActive() {
		t.Fatalf("keys after rotation: %v", keys)
	}
	if _, err := credential.Verify(old.GetCredential(), keys, 7, time.Now()); err != nil {
		t.Errorf("credential signed before rotation: %v", err)
	}
	fresh, err := srv.IssueMemberCredential(ctx, issueReq(t, "video", "h2"))
	if err != nil {
		t.Fatal(err)
	}
	if fresh.GetCredential().GetKeyId() != nk.GetKeyId() {
		t.Errorf("signed after rotation by %s, want %s", fresh.GetCredential().GetKeyId(), nk.GetKeyId())
	}
	if _, err := credential.Verify(fresh.GetCredential(), keys, 7, time.Now()); err != nil {
		t.Errorf("credential signed after rotation: %v", err)
	}

	// Rotations racing each other and credentials being issued: one active key at the
	// end, and every credential handed out verifies against the final key list.
	var wg sync.WaitGroup
	creds := make(chan *vonv1.MemberCredential, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mm := []*Manager{m, other}[i%2]
			if i%4 == 0 {
				if _, err := mm.RotateSigningKey(ctx); err != nil {
					t.Error(err)
				}
				return
			}
			pub, seal := memberKeys(t)
			c, _, err := mm.IssueMemberCredential(ctx, CredentialRequest{Name: "video", Member: "h1", PublicKey: pub, SealPublicKey: seal, GossipAddress: "h1:1"})
			if err != nil {
				t.Error(err)
				return
			}
			creds <- c
		}()
	}
	wg.Wait()
	close(creds)
	keys = verificationKeys(t, srv)
	actives := 0
	for _, k := range keys {
		if k.GetActive() {
			actives++
		}
	}
	if actives != 1 || !keys[0].GetActive() || len(keys) != 12 {
		t.Fatalf("%d keys, %d active (first active: %v); want 12 and 1", len(keys), actives, keys[0].GetActive())
	}
	for c := range creds {
		if _, err := credential.Verify(c, keys, 7, time.Now()); err != nil {
			t.Errorf("credential issued during rotations: %v", err)
		}
	}

	// Retired keys stay until MaxTTL (+ slack) after retirement, then go.
	if _, err := m.ReapMembers(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := verificationKeys(t, srv); len(got) != 12 {
		t.Errorf("%d keys an hour after the rotations, want all 12", len(got))
	}
	if _, err := m.ReapMembers(ctx, time.Now().Add(2*time.Hour+retiredKeySlack+time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := verificationKeys(t, srv); len(got) != 1 || got[0].GetKeyId() != keys[0].GetKeyId() || !got[0].GetActive() {
		t.Errorf("keys after the retired ones aged out: %v", got)
	}
}
