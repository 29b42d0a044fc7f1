package reservation

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vonproject/von/overlay"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Overlay prefixes: each ON takes one block of the pool (package overlay),
// recorded under <prefix>/overlay/<base as 8 hex digits> with the ON's name,
// in the transaction that admits it, and freed by the one that ends it
// (finish).

// claimOverlay is the Admission.Claim of r: a random free block of the pool
// for r's members, written into r (its prefix and each member's address).
func (m *Manager) claimOverlay(r *vonv1.Reservation) func() ([]clientv3.Cmp, []clientv3.Op, error) {
	return func() ([]clientv3.Cmp, []clientv3.Op, error) {
		hb, err := overlay.Bits(len(r.GetMembers()))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		block := m.cfg.OverlayPool.Pick(hb, rand.Uint64())
		r.OverlayPrefix = block.String()
		for i, a := range overlay.Members(block, len(r.GetMembers())) {
			r.Members[i].OverlayAddress = a.String()
		}
		cmps, put := m.store.claimBlock(block, r.GetName())
		return cmps, []clientv3.Op{put}, nil
	}
}

// claimBlock is what a transaction must find for block to be free, and the
// write that takes it for the ON name.
func (s *Store) claimBlock(block netip.Prefix, name string) ([]clientv3.Cmp, clientv3.Op) {
	c := overlay.ClaimOf(block)
	to := clientv3.GetPrefixRangeEnd(s.overlayPrefix())
	if c.To.IsValid() {
		to = s.overlayPrefix() + overlay.KeyFrom(c.To)
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.overlayPrefix()+overlay.KeyFrom(c.From)), "=", 0).WithRange(to)}
	for _, e := range c.Enclosing {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.overlayKey(e)), "=", 0))
	}
	return cmps, clientv3.OpPut(s.overlayKey(block), name)
}

func (s *Store) overlayKey(block netip.Prefix) string { return s.overlayPrefix() + overlay.Key(block) }

// freeOverlay is the write that frees r's block (none if it has none).
func (s *Store) freeOverlay(r *vonv1.Reservation) []clientv3.Op {
	p, err := netip.ParsePrefix(r.GetOverlayPrefix())
	if err != nil {
		return nil
	}
	return []clientv3.Op{clientv3.OpDelete(s.overlayKey(p))}
}
