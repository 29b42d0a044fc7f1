package reservation

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Leader election. Candidates put their candidate value under the election
// prefix with their session's lease; the oldest key leads. A crashed leader's
// key lives until its session's TTL runs out, during which nobody leads, so
// standbys probe the leader's advertised address: connection refused three
// times in a row means no process listens there any more, and the standby ends
// the dead leader's session at once. A leader that is alive but unreachable
// from a standby (a partition, a timeout) is never revoked this way.

// candidateValue is what a candidate writes under the election prefix.
type candidateValue struct {
	ID   string `json:"id"`
	Addr string `json:"addr,omitempty"`
}

func (m *Manager) candidate() string {
	b, _ := json.Marshal(candidateValue{ID: m.cfg.ID, Addr: m.cfg.Advertise})
	return string(b)
}

func parseCandidate(v []byte) candidateValue {
	var c candidateValue
	if json.Unmarshal(v, &c) != nil || c.ID == "" {
		return candidateValue{ID: string(v)} // a value written before candidates were JSON
	}
	return c
}

// Probing the leader.
const (
	probeInterval = 300 * time.Millisecond
	probeTimeout  = 300 * time.Millisecond
	probeStrikes  = 3
)

// revokeStale ends the election sessions of earlier incarnations of this manager (same
// ID: a crashed process restarted), so it need not wait for their TTL to lead again.
func (m *Manager) revokeStale(ctx context.Context, mine clientv3.LeaseID) {
	resp, err := m.cli.Get(ctx, m.store.electionPrefix()+"/", clientv3.WithPrefix())
	if err != nil {
		return
	}
	for _, kv := range resp.Kvs {
		if parseCandidate(kv.Value).ID == m.cfg.ID && clientv3.LeaseID(kv.Lease) != mine && kv.Lease != 0 {
			if _, err := m.cli.Revoke(ctx, clientv3.LeaseID(kv.Lease)); err == nil {
				m.log.Info("ended the election session of an earlier incarnation", "id", m.cfg.ID)
			}
		}
	}
}

// probeLeader runs while this manager campaigns: it ends the session of a
// leader whose advertised address refuses connections.
func (m *Manager) probeLeader(ctx context.Context, el *concurrency.Election) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	var lease int64
	strikes := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		resp, err := el.Leader(ctx)
		if err != nil || len(resp.Kvs) == 0 {
			strikes = 0
			continue
		}
		kv := resp.Kvs[0]
		c := parseCandidate(kv.Value)
		if c.ID == m.cfg.ID || c.Addr == "" || kv.Lease == 0 {
			strikes = 0
			continue
		}
		if kv.Lease != lease {
			lease, strikes = kv.Lease, 0
		}
		if !refused(ctx, c.Addr) {
			strikes = 0
			continue
		}
		if strikes++; strikes < probeStrikes {
			continue
		}
		if _, err := m.cli.Revoke(ctx, clientv3.LeaseID(kv.Lease)); err == nil {
			m.log.Warn("the leader's address refuses connections: its process is gone; ended its election session",
				"leader", c.ID, "addr", c.Addr)
		}
		strikes = 0
	}
}

// refused says whether a TCP connection to addr is actively refused (nothing
// listens there); timeouts and other errors are not taken for a crash.
func refused(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: probeTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		conn.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
