package reservation

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// The member registry: members/<name>/<on id, 8 hex digits>/<member> holds the
// RegisteredMember of each member that was issued a credential. The ON id in the key
// keeps the registry of a released reservation apart from that of a later one with the
// same name (a new ON id), until ReapMembers deletes it.

func (s *Store) memberPrefixAll() string { return s.prefix + "/members/" }

func (s *Store) memberPrefix(name string, onID uint32) string {
	return fmt.Sprintf("%s%s/%08x/", s.memberPrefixAll(), url.PathEscape(name), onID)
}

func (s *Store) memberKey(name string, onID uint32, member string) string {
	return s.memberPrefix(name, onID) + url.PathEscape(member)
}

// parseMemberKey splits a registry key into reservation name and ON id.
func (s *Store) parseMemberKey(key string) (name string, onID uint32, ok bool) {
	parts := strings.Split(strings.TrimPrefix(key, s.memberPrefixAll()), "/")
	if len(parts) != 3 || !strings.HasPrefix(key, s.memberPrefixAll()) {
		return "", 0, false
	}
	name, err := url.PathUnescape(parts[0])
	if err != nil {
		return "", 0, false
	}
	id, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil {
		return "", 0, false
	}
	return name, uint32(id), true
}

// Members returns a committed reservation's ON id and the members holding an
// unexpired credential for it, by name. Any manager answers.
func (m *Manager) Members(ctx context.Context, name string) (uint32, []*vonv1.RegisteredMember, error) {
	return m.members(ctx, name, time.Now())
}

func (m *Manager) members(ctx context.Context, name string, now time.Time) (uint32, []*vonv1.RegisteredMember, error) {
	rec, _, err := m.store.Get(ctx, name)
	if err != nil {
		return 0, nil, err
	}
	if rec.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
		return 0, nil, fmt.Errorf("%w: reservation %q is %s; only committed reservations have members to list",
			ErrNotCommitted, name, stateName(rec.GetState()))
	}
	resp, err := m.cli.Get(ctx, m.store.memberPrefix(name, rec.GetOnId()), clientv3.WithPrefix())
	if err != nil {
		return 0, nil, fmt.Errorf("read members of %s: %w", name, err)
	}
	out := make([]*vonv1.RegisteredMember, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		e := &vonv1.RegisteredMember{}
		if err := proto.Unmarshal(kv.Value, e); err != nil {
			return 0, nil, fmt.Errorf("corrupt registry entry %s: %w", kv.Key, err)
		}
		if e.GetCredentialExpireTime() == nil || !now.Before(e.GetCredentialExpireTime().AsTime()) {
			continue // expired: ReapMembers deletes it
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return rec.GetOnId(), out, nil
}

// ReapMembers deletes registry entries that no longer count — those whose credential
// has expired and those of reservations that are gone, no longer COMMITTED or now
// hold another ON id — and retired signing keys past their keep time (pruneKeys). It
// returns how many registry entries it deleted. The leader calls it periodically; it
// is safe on any manager and concurrently with issuing (every delete is guarded on
// the entry's mod revision, so a credential issued meanwhile keeps its entry).
func (m *Manager) ReapMembers(ctx context.Context, now time.Time) (int, error) {
	var (
		live map[string]uint32
		rev  int64
	)
	if x := m.caughtUp(ctx); x != nil {
		// The leader's index, not a read of every record: at 20,000 ONs
		// the read held 64 MB of the manager's heap each minute.
		live, rev = x.committedIDs()
	} else {
		ons, r, err := m.store.List(ctx)
		if err != nil {
			return 0, err
		}
		rev = r
		live = make(map[string]uint32, len(ons))
		for _, r := range ons {
			if r.GetState() == vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
				live[r.GetName()] = r.GetOnId()
			}
		}
	}
	// Read the registry at the same revision as the reservations: an entry can only
	// exist for a reservation that was committed when it was written, so an entry
	// this snapshot shows beside a reservation that is not committed (or is gone) is
	// dead for good.
	resp, err := m.cli.Get(ctx, m.store.memberPrefixAll(), clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err != nil {
		return 0, fmt.Errorf("read member registry: %w", err)
	}
	n := 0
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		name, onID, ok := m.store.parseMemberKey(key)
		dead := !ok
		if ok {
			id, isLive := live[name]
			dead = !isLive || id != onID
		}
		if !dead {
			e := &vonv1.RegisteredMember{}
			dead = proto.Unmarshal(kv.Value, e) != nil || e.GetCredentialExpireTime() == nil ||
				!now.Before(e.GetCredentialExpireTime().AsTime())
		}
		if !dead {
			continue
		}
		tr, err := m.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(key)).Commit()
		if err != nil {
			return n, fmt.Errorf("delete registry entry %s: %w", key, err)
		}
		if tr.Succeeded {
			n++
		}
	}
	if _, err := m.pruneKeys(ctx, now); err != nil {
		return n, err
	}
	return n, nil
}

// ListMembers returns a committed reservation's member registry; any manager answers.
func (s *server) ListMembers(ctx context.Context, req *vonv1.ListMembersRequest) (*vonv1.ListMembersResponse, error) {
	if err := s.checkMember(ctx, req.GetName(), ""); err != nil {
		return nil, grpcError(err)
	}
	onID, members, err := s.M.Members(ctx, req.GetName())
	if err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.ListMembersResponse{OnId: onID, Members: members}, nil
}
