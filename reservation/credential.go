package reservation

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vonproject/von/credential"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Member credentials (docs/reservation.md "Member credentials").
//
// Keys under the prefix:
//
//	credkeys/<key id>                     credential signing key (JSON: credential.SigningKey, private part included)
//	members/<name>/<on id hex>/<member>   member registry entry (protobuf von.v1.RegisteredMember)
//	gossipsecret                          32 random bytes every manager derives ONs' gossip keys from
//
// None of this needs the leader: every manager of a cluster reads the same keys from
// etcd, and issuing only reads the reservation and writes its registry, guarded so that
// neither a rotation nor a change of the reservation can slip in between.

// retiredKeySlack is kept on top of MaxTTL before a retired signing key is deleted, for
// clock skew between the managers that issued with it and the one that deletes it.
const retiredKeySlack = time.Hour

func (s *Store) credKeyPrefix() string       { return s.prefix + "/credkeys/" }
func (s *Store) credKeyKey(id string) string { return s.credKeyPrefix() + id }

// storedKey is a signing key and the mod revision of its record.
type storedKey struct {
	*credential.SigningKey
	rev int64
}

// signingKeys reads every signing key and the store revision read.
func (s *Store) signingKeys(ctx context.Context) ([]storedKey, int64, error) {
	resp, err := s.cli.Get(ctx, s.credKeyPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("read signing keys: %w", err)
	}
	out := make([]storedKey, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		k, err := credential.ParseSigningKey(kv.Value)
		if err != nil {
			return nil, 0, fmt.Errorf("corrupt signing key %s: %w", kv.Key, err)
		}
		out = append(out, storedKey{k, kv.ModRevision})
	}
	return out, resp.Header.Revision, nil
}

func (s *Store) putKey(k *credential.SigningKey) (clientv3.Op, error) {
	b, err := k.Marshal()
	if err != nil {
		return clientv3.Op{}, err
	}
	return clientv3.OpPut(s.credKeyKey(k.ID()), string(b)), nil
}

// newActiveKey stores a fresh active key if the key set is still as read at rev (keys
// empty: no key exists at all). Two managers racing both try; one wins, the other
// reads the winner's key on its next attempt.
func (s *Store) newActiveKey(ctx context.Context, keys []storedKey, rev int64, now time.Time) error {
	k, err := credential.GenerateSigningKey(now)
	if err != nil {
		return err
	}
	put, err := s.putKey(k)
	if err != nil {
		return err
	}
	guard := clientv3.Compare(clientv3.CreateRevision(s.credKeyPrefix()), "=", 0).WithPrefix() // no key at all
	if len(keys) > 0 {
		guard = clientv3.Compare(clientv3.ModRevision(s.credKeyPrefix()), "<", rev+1).WithPrefix() // none changed since read
	}
	if _, err := s.cli.Txn(ctx).If(guard).Then(put).Commit(); err != nil {
		return fmt.Errorf("store signing key: %w", err)
	}
	return nil // stored, or lost the race: the caller reads the keys again
}

// activeKey returns the key that signs, creating the first one if there is none.
func (s *Store) activeKey(ctx context.Context, now time.Time) (storedKey, error) {
	for attempt := 0; attempt < 10; attempt++ {
		keys, rev, err := s.signingKeys(ctx)
		if err != nil {
			return storedKey{}, err
		}
		if k, ok := active(keys); ok {
			return k, nil
		}
		if err := s.newActiveKey(ctx, keys, rev, now); err != nil {
			return storedKey{}, err
		}
	}
	return storedKey{}, fmt.Errorf("create signing key: %w", ErrContention)
}

// active picks the active key. There is at most one; should a damaged store hold
// several, the newest signs.
func active(keys []storedKey) (storedKey, bool) {
	var best storedKey
	for _, k := range keys {
		if k.Active && (best.SigningKey == nil || k.Created.After(best.Created)) {
			best = k
		}
	}
	return best, best.SigningKey != nil
}

// VerificationKeys returns every signing key's public half, active first, creating
// the first key if none exists yet (so members can fetch keys before any credential
// is issued).
func (m *Manager) VerificationKeys(ctx context.Context) ([]*vonv1.VerificationKey, error) {
	for attempt := 0; attempt < 10; attempt++ {
		keys, rev, err := m.store.signingKeys(ctx)
		if err != nil {
			return nil, err
		}
		if _, ok := active(keys); !ok {
			if err := m.store.newActiveKey(ctx, keys, rev, time.Now()); err != nil {
				return nil, err
			}
			continue
		}
		out := make([]*vonv1.VerificationKey, 0, len(keys))
		for _, k := range keys {
			out = append(out, k.VerificationKey())
		}
		credential.SortKeys(out)
		return out, nil
	}
	return nil, fmt.Errorf("create signing key: %w", ErrContention)
}

// RotateSigningKey makes a new active signing key and retires the old one in one
// transaction; it returns the new key. Credentials the old key signed keep verifying:
// it stays listed until every credential it signed has expired (see pruneKeys). A
// concurrent rotation makes this one retry, so two rotations retire two keys.
func (m *Manager) RotateSigningKey(ctx context.Context) (*vonv1.VerificationKey, error) {
	return m.rotateSigningKey(ctx, time.Now())
}

func (m *Manager) rotateSigningKey(ctx context.Context, now time.Time) (*vonv1.VerificationKey, error) {
	s := m.store
	for attempt := 0; attempt < 10; attempt++ {
		keys, _, err := s.signingKeys(ctx)
		if err != nil {
			return nil, err
		}
		old, ok := active(keys)
		if !ok {
			// Nothing to retire: the first key is the rotation.
			k, err := s.activeKey(ctx, now)
			if err != nil {
				return nil, err
			}
			return k.VerificationKey(), nil
		}
		nk, err := credential.GenerateSigningKey(now)
		if err != nil {
			return nil, err
		}
		putNew, err := s.putKey(nk)
		if err != nil {
			return nil, err
		}
		// Retire every active key (there is one unless the store was damaged), each
		// guarded on the record read, so a concurrent rotation or issue sees one change.
		ops, cmps := []clientv3.Op{putNew}, []clientv3.Cmp(nil)
		for _, k := range keys {
			if !k.Active {
				continue
			}
			retired := *k.SigningKey
			retired.Active, retired.Retired = false, now
			put, err := s.putKey(&retired)
			if err != nil {
				return nil, err
			}
			ops = append(ops, put)
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.credKeyKey(k.ID())), "=", k.rev))
		}
		tr, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("rotate signing key: %w", err)
		}
		if !tr.Succeeded {
			continue
		}
		m.log.Info("rotated credential signing key", "new", nk.ID(), "retired", old.ID())
		if _, err := m.pruneKeys(ctx, now); err != nil {
			m.log.Warn("prune retired signing keys", "err", err)
		}
		return nk.VerificationKey(), nil
	}
	return nil, fmt.Errorf("rotate signing key: %w", ErrContention)
}

// pruneKeys deletes retired keys no credential they signed can still need: a key
// signs only while it is active (issuing is guarded on its record), and a credential
// expires by the reservation's lease expiry, which is at most MaxTTL after the issue.
// So a key retired more than MaxTTL (plus retiredKeySlack) ago has nothing left valid.
func (m *Manager) pruneKeys(ctx context.Context, now time.Time) (int, error) {
	keys, _, err := m.store.signingKeys(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range keys {
		if k.Active || now.Sub(k.Retired) <= m.cfg.MaxTTL+retiredKeySlack {
			continue
		}
		key := m.store.credKeyKey(k.ID())
		tr, err := m.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", k.rev)).Then(clientv3.OpDelete(key)).Commit()
		if err != nil {
			return n, fmt.Errorf("delete retired signing key %s: %w", k.ID(), err)
		}
		if tr.Succeeded {
			n++
			m.log.Info("deleted retired credential signing key", "key_id", k.ID(), "retired", k.Retired)
		}
	}
	return n, nil
}

// CredentialRequest asks for a member credential (IssueMemberCredentialRequest).
type CredentialRequest struct {
	Name          string // reservation
	Member        string
	PublicKey     []byte // Ed25519, 32 bytes
	SealPublicKey []byte // X25519, 32 bytes
	GossipAddress string // host:port
	TTL           time.Duration
}

func checkCredentialRequest(req CredentialRequest) error {
	if why := checkResName(req.Name); why != "" {
		return fmt.Errorf("%w: reservation name %q: %s", ErrInvalid, req.Name, why)
	}
	if req.Member == "" {
		return fmt.Errorf("%w: member name is empty", ErrInvalid)
	}
	if len(req.PublicKey) != 32 {
		return fmt.Errorf("%w: public_key is %d bytes; an Ed25519 public key is 32", ErrInvalid, len(req.PublicKey))
	}
	if len(req.SealPublicKey) != 32 {
		return fmt.Errorf("%w: seal_public_key is %d bytes; an X25519 public key is 32", ErrInvalid, len(req.SealPublicKey))
	}
	if err := checkHostPort(req.GossipAddress); err != nil {
		return fmt.Errorf("%w: gossip_address %q: %w", ErrInvalid, req.GossipAddress, err)
	}
	if req.TTL < 0 {
		return fmt.Errorf("%w: ttl %s is negative", ErrInvalid, req.TTL)
	}
	return nil
}

// IssueMemberCredential signs a credential for one member of a committed reservation
// and records the member in the reservation's registry. It returns the credential and
// the ON id. Any manager can issue, leader or not.
//
// There is no caller authentication yet: whoever reaches the manager's API can ask for
// a credential for any member (docs/reservation.md, "Member credentials").
func (m *Manager) IssueMemberCredential(ctx context.Context, req CredentialRequest) (*vonv1.MemberCredential, uint32, error) {
	return m.issue(ctx, req, time.Now())
}

func (m *Manager) issue(ctx context.Context, req CredentialRequest, now time.Time) (*vonv1.MemberCredential, uint32, error) {
	if err := checkCredentialRequest(req); err != nil {
		return nil, 0, err
	}
	s := m.store
	// Retries are for a Renew or a key rotation landing between read and write.
	for attempt := 0; attempt < 20; attempt++ {
		rec, rev, err := s.Get(ctx, req.Name)
		if err != nil {
			return nil, 0, err
		}
		if rec.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
			return nil, 0, fmt.Errorf("%w: reservation %q is %s; credentials are issued for committed reservations only",
				ErrNotCommitted, req.Name, stateName(rec.GetState()))
		}
		var mb *vonv1.Member
		for _, x := range rec.GetMembers() {
			if x.GetName() == req.Member {
				mb = x
			}
		}
		if mb == nil {
			return nil, 0, fmt.Errorf("%q is %w of %q", req.Member, ErrNotMember, req.Name)
		}
		lease := rec.GetLeaseExpireTime().AsTime()
		if rec.GetLeaseExpireTime() == nil || !now.Before(lease) {
			return nil, 0, fmt.Errorf("%w: the lease of %q ran out at %s; renew it first", ErrNotCommitted, req.Name, lease.Format(time.RFC3339))
		}
		expire := lease
		if req.TTL > 0 && now.Add(req.TTL).Before(lease) {
			expire = now.Add(req.TTL)
		}
		key, err := s.activeKey(ctx, now)
		if err != nil {
			return nil, 0, err
		}
		claims := &vonv1.MemberCredentialClaims{OnId: rec.GetOnId(), Reservation: rec.GetName(), Member: req.Member,
			PublicKey: req.PublicKey, SealPublicKey: req.SealPublicKey,
			IssueTime: timestamppb.New(now), ExpireTime: timestamppb.New(expire)}
		cred, err := key.Sign(claims)
		if err != nil {
			return nil, 0, err
		}
		entry, err := proto.Marshal(&vonv1.RegisteredMember{Name: req.Member, Address: mb.GetAddress(), GossipAddress: req.GossipAddress,
			PublicKey: req.PublicKey, SealPublicKey: req.SealPublicKey, CredentialExpireTime: claims.ExpireTime})
		if err != nil {
			return nil, 0, fmt.Errorf("encode registry entry: %w", err)
		}
		// The credential counts only if, when the registry entry is written, the
		// reservation is still the committed one read above and the key still active:
		// a release or a rotation in between makes this attempt start over.
		tr, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(s.onKey(req.Name)), "=", rev),
			clientv3.Compare(clientv3.ModRevision(s.credKeyKey(key.ID())), "=", key.rev),
		).Then(clientv3.OpPut(s.memberKey(req.Name, rec.GetOnId(), req.Member), string(entry))).Commit()
		if err != nil {
			return nil, 0, fmt.Errorf("record member %s of %s: %w", req.Member, req.Name, err)
		}
		if tr.Succeeded {
			m.log.Info("issued member credential", "name", req.Name, "on_id", rec.GetOnId(), "member", req.Member,
				"key_id", key.ID(), "expires", expire)
			return cred, rec.GetOnId(), nil
		}
	}
	return nil, 0, fmt.Errorf("issue credential for %s of %s: %w", req.Member, req.Name, ErrContention)
}

// IssueMemberCredential issues a member credential and the VON's gossip key sealed to
// the member; any manager answers.
func (s *server) IssueMemberCredential(ctx context.Context, req *vonv1.IssueMemberCredentialRequest) (*vonv1.IssueMemberCredentialResponse, error) {
	if err := s.checkMember(ctx, req.GetName(), req.GetMember()); err != nil {
		return nil, grpcError(err)
	}
	cred, onID, err := s.M.IssueMemberCredential(ctx, CredentialRequest{Name: req.GetName(), Member: req.GetMember(),
		PublicKey: req.GetPublicKey(), SealPublicKey: req.GetSealPublicKey(), GossipAddress: req.GetGossipAddress(),
		TTL: req.GetTtl().AsDuration()})
	if err != nil {
		return nil, grpcError(err)
	}
	sealed, err := s.M.SealedGossipKey(ctx, req.GetName(), onID, req.GetMember(), req.GetSealPublicKey())
	if err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.IssueMemberCredentialResponse{Credential: cred, OnId: onID, SealedGossipKey: sealed}, nil
}

func (s *Store) gossipSecretKey() string { return s.prefix + "/gossipsecret" }

// gossipSecret returns the cluster's gossip secret, creating it on first use (one
// create-revision guarded put, so racing managers end with one).
func (s *Store) gossipSecret(ctx context.Context) ([]byte, error) {
	for range 3 {
		resp, err := s.cli.Get(ctx, s.gossipSecretKey())
		if err != nil {
			return nil, fmt.Errorf("read gossip secret: %w", err)
		}
		if len(resp.Kvs) == 1 && len(resp.Kvs[0].Value) >= 32 {
			return resp.Kvs[0].Value, nil
		}
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
		if _, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(s.gossipSecretKey()), "=", 0)).
			Then(clientv3.OpPut(s.gossipSecretKey(), string(secret))).Commit(); err != nil {
			return nil, fmt.Errorf("create gossip secret: %w", err)
		}
	}
	return nil, fmt.Errorf("gossip secret: %w", ErrContention)
}

// SealedGossipKey is the ON's gossip key sealed to one member's X25519 key.
func (m *Manager) SealedGossipKey(ctx context.Context, name string, onID uint32, member string, sealPub []byte) ([]byte, error) {
	secret, err := m.store.gossipSecret(ctx)
	if err != nil {
		return nil, err
	}
	key, err := credential.GossipKey(secret, name, onID)
	if err != nil {
		return nil, err
	}
	sealed, err := credential.SealGossipKey(key, sealPub, name, onID, member)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return sealed, nil
}

// GetVerificationKeys lists the credential verification keys, active first.
func (s *server) GetVerificationKeys(ctx context.Context, _ *vonv1.GetVerificationKeysRequest) (*vonv1.GetVerificationKeysResponse, error) {
	keys, err := s.M.VerificationKeys(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.GetVerificationKeysResponse{Keys: keys}, nil
}

// checkHostPort accepts "host:port" with a non-empty host and a port in 1-65535.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("no host")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("port %q is not a number in 1-65535", port)
	}
	return nil
}
