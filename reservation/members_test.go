package reservation

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

func memberNames(ms []*vonv1.RegisteredMember) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.GetName())
	}
	return out
}

func registrySize(t *testing.T, m *Manager) int {
	t.Helper()
	resp, err := m.cli.Get(context.Background(), m.store.memberPrefixAll(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Kvs)
}

// ListMembers lists members with unexpired credentials in name order; the reaper
// deletes expired entries and the registry of a reservation that ended, was deleted or
// now holds another ON id.
func TestListMembersAndReap(t *testing.T) {
	_, cli := newEtcd(t)
	m := New(cli, Config{})
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	rec := committedRecord("video", 7, now.Add(time.Hour))
	rec.Members = append(rec.Members, &vonv1.Member{Name: "a0", Address: "10.77.1.3"})
	putRecord(t, m, rec)
	putRecord(t, m, committedRecord("other", 8, now.Add(time.Hour)))
	issue := func(name, member string, ttl time.Duration) {
		t.Helper()
		pub, seal := memberKeys(t)
		if _, _, err := m.issue(ctx, CredentialRequest{Name: name, Member: member, PublicKey: pub, SealPublicKey: seal,
			GossipAddress: "192.0.2.1:4750", TTL: ttl}, now); err != nil {
			t.Fatal(err)
		}
	}
	issue("video", "h2", 10*time.Minute)
	issue("video", "h1", time.Minute)
	issue("video", "a0", 10*time.Minute)
	issue("other", "h1", 10*time.Minute)

	onID, ms, err := m.members(ctx, "video", now)
	if err != nil || onID != 7 {
		t.Fatalf("members = %d, %v", onID, err)
	}
	if got := memberNames(ms); len(got) != 3 || got[0] != "a0" || got[1] != "h1" || got[2] != "h2" {
		t.Fatalf("members %v, want [a0 h1 h2]", got)
	}
	// h1's credential has expired two minutes on: it is no longer listed.
	later := now.Add(2 * time.Minute)
	if _, ms, _ = m.members(ctx, "video", later); len(ms) != 2 || ms[0].GetName() != "a0" || ms[1].GetName() != "h2" {
		t.Fatalf("members after h1 expired: %v", memberNames(ms))
	}
	if n, err := m.ReapMembers(ctx, later); err != nil || n != 1 {
		t.Fatalf("ReapMembers = %d, %v; want 1 (h1 of video)", n, err)
	}
	if got := registrySize(t, m); got != 3 {
		t.Fatalf("registry has %d entries, want 3", got)
	}
	// A renewed credential replaces the entry: h1 is back.
	issue("video", "h1", 10*time.Minute)
	if _, ms, _ = m.members(ctx, "video", now); len(ms) != 3 {
		t.Fatalf("members after h1 renewed: %v", memberNames(ms))
	}

	// The name reserved again (a new ON id): the old registry is not the new one's.
	putRecord(t, m, committedRecord("video", 9, now.Add(time.Hour)))
	if onID, ms, err = m.members(ctx, "video", now); err != nil || onID != 9 || len(ms) != 0 {
		t.Fatalf("members of the new incarnation: %d %v %v", onID, memberNames(ms), err)
	}
	if n, err := m.ReapMembers(ctx, now); err != nil || n != 3 {
		t.Fatalf("ReapMembers after re-reserve = %d, %v; want 3", n, err)
	}

	// other ends: not listed, and reaped. A deleted record's registry is reaped too.
	ended := committedRecord("other", 8, now.Add(time.Hour))
	ended.State = vonv1.ReservationState_RESERVATION_STATE_EXPIRED
	putRecord(t, m, ended)
	if _, err := (&server{M: m}).ListMembers(ctx, &vonv1.ListMembersRequest{Name: "other"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("ListMembers of an expired reservation: %v", err)
	}
	issue("video", "h2", 10*time.Minute)
	if _, err := cli.Delete(ctx, m.store.onKey("video")); err != nil {
		t.Fatal(err)
	}
	if _, err := (&server{M: m}).ListMembers(ctx, &vonv1.ListMembersRequest{Name: "video"}); status.Code(err) != codes.NotFound {
		t.Errorf("ListMembers of a deleted reservation: %v", err)
	}
	if n, err := m.ReapMembers(ctx, now); err != nil || n != 2 {
		t.Fatalf("ReapMembers after end and delete = %d, %v; want 2", n, err)
	}
	if got := registrySize(t, m); got != 0 {
		t.Fatalf("registry has %d entries, want 0", got)
	}
}

// Members and registry keys with characters that need escaping stay apart.
func TestMemberKeyRoundTrip(t *testing.T) {
	s := NewStore(nil, DefaultPrefix)
	for _, c := range []struct {
		name, member string
		id           uint32
	}{{"video", "h1", 7}, {"a.b_c-d", "x/y", 0xffffffff}, {"r", "m%2F", 1}} {
		key := s.memberKey(c.name, c.id, c.member)
		name, id, ok := s.parseMemberKey(key)
		if !ok || name != c.name || id != c.id {
			t.Errorf("%s: parsed %q %d %v", key, name, id, ok)
		}
	}
	if _, _, ok := s.parseMemberKey(DefaultPrefix + "/members/video/zz/h1"); ok {
		t.Error("parsed a key with a bad ON id")
	}
}
