package reservation

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Agent liveness. An agent's record carries the time the manager that took its
// registration wrote it — on that manager's clock. The leader does not trust
// other managers' clocks: it watches the agent records and takes an agent as
// live for AgentLiveness after it saw one of them written, on its own clock.
// When it starts leading, every registered agent counts as just seen (a dead
// one then costs a failed call, not a missed refresh of a live one).

// watchAgents records, until ctx ends, when the leader saw each agent's record
// written. It returns once the current records are counted, with a channel
// closed when the watch has stopped.
func (m *Manager) watchAgents(ctx context.Context) <-chan struct{} {
	resp, err := m.cli.Get(ctx, m.store.agentPrefix(), clientv3.WithPrefix())
	now := time.Now()
	m.seenMu.Lock()
	m.seen, m.seenRev = map[string]time.Time{}, map[string]int64{}
	m.agents = nil
	if err == nil {
		m.agents = map[string]*vonv1.Agent{}
		for _, kv := range resp.Kvs {
			m.seen[m.store.agentNode(kv.Key)] = now
			m.seenRev[m.store.agentNode(kv.Key)] = kv.ModRevision
			m.cacheAgentLocked(kv.Key, kv.Value)
		}
	}
	m.seenMu.Unlock()
	rev := int64(0)
	if err == nil {
		rev = resp.Header.Revision + 1
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			m.seenMu.Lock()
			m.agents = nil // the records are read from etcd again
			m.seenMu.Unlock()
		}()
		// A watch ends when its etcd member loses the raft leader (it requires
		// one) or dies; liveness must not end with it. Resume from the last
		// revision seen; after a compaction, count every record as just seen.
		for ctx.Err() == nil {
			for wr := range m.cli.Watch(clientv3.WithRequireLeader(ctx), m.store.agentPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev)) {
				now := time.Now()
				m.seenMu.Lock()
				if wr.CompactRevision != 0 {
					for n := range m.seen {
						m.seen[n] = now
					}
					rev = wr.CompactRevision
				}
				if wr.Err() != nil || wr.Canceled {
					m.agents = nil
				}
				for _, ev := range wr.Events {
					switch {
					case ev.Type == clientv3.EventTypePut && m.seen != nil:
						m.sawLocked(m.store.agentNode(ev.Kv.Key), ev.Kv.ModRevision, now)
						m.cacheAgentLocked(ev.Kv.Key, ev.Kv.Value)
					case ev.Type == clientv3.EventTypeDelete && m.agents != nil:
						delete(m.agents, m.store.agentNode(ev.Kv.Key))
					}
					rev = max(rev, ev.Kv.ModRevision+1)
				}
				m.seenMu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			m.log.Warn("agent records' watch ended; resuming", "revision", rev)
			resp, err := m.cli.Get(ctx, m.store.agentPrefix(), clientv3.WithPrefix())
			if err != nil {
				continue // watch from rev again
			}
			now := time.Now()
			m.seenMu.Lock()
			m.agents = map[string]*vonv1.Agent{}
			for _, kv := range resp.Kvs {
				m.sawLocked(m.store.agentNode(kv.Key), kv.ModRevision, now) // written while not watched
				m.cacheAgentLocked(kv.Key, kv.Value)
			}
			rev = resp.Header.Revision + 1
			m.seenMu.Unlock()
		}
	}()
	return done
}

// cacheAgentLocked records one agent record in the leader's copy; a record
// that does not parse stops the copy (reads go to etcd, which report it).
func (m *Manager) cacheAgentLocked(key, value []byte) {
	if m.agents == nil {
		return
	}
	a := &vonv1.Agent{}
	if err := proto.Unmarshal(value, a); err != nil {
		m.agents = nil
		return
	}
	m.putAgentLocked(a)
}

// noteAgent puts a record this manager wrote into its copy at once, ahead of
// the watch (a reservation right after a registration must see it).
func (m *Manager) noteAgent(a *vonv1.Agent) {
	m.seenMu.Lock()
	defer m.seenMu.Unlock()
	m.putAgentLocked(a)
	if m.seen != nil {
		m.seen[a.GetNode()] = time.Now()
	}
}

// putAgentLocked puts a into the copy; a change of its interfaces (whose
// addresses can be pin next hops) makes derived partitions stale.
func (m *Manager) putAgentLocked(a *vonv1.Agent) {
	if m.agents == nil {
		return
	}
	if old := m.agents[a.GetNode()]; old == nil || !sameInterfaces(old, a) {
		m.agentAddrs.Add(1)
	}
	m.agents[a.GetNode()] = a
}

func sameInterfaces(a, b *vonv1.Agent) bool {
	if len(a.GetInterfaces()) != len(b.GetInterfaces()) {
		return false
	}
	for i := range a.GetInterfaces() {
		if !proto.Equal(a.GetInterfaces()[i], b.GetInterfaces()[i]) {
			return false
		}
	}
	return true
}

// agentRecords returns every registered agent: from the leader's copy, kept
// by watchAgents, or read from etcd. The records are shared: do not change
// them.
func (m *Manager) agentRecords(ctx context.Context) (map[string]*vonv1.Agent, error) {
	m.seenMu.Lock()
	if m.agents != nil {
		out := make(map[string]*vonv1.Agent, len(m.agents))
		for n, a := range m.agents {
			out[n] = a
		}
		m.seenMu.Unlock()
		return out, nil
	}
	m.seenMu.Unlock()
	return m.store.Agents(ctx)
}

// agentRecord returns node's agent record (nil if none), as agentRecords. A
// record the copy lacks or holds as not live is read from etcd: the watch may
// not have delivered a registration another manager just wrote, or may be
// stalled (an etcd member lost). A record written since the one the leader
// last saw counts as seen now — by its revision, on no one's clock.
func (m *Manager) agentRecord(ctx context.Context, node string) (*vonv1.Agent, error) {
	m.seenMu.Lock()
	if m.agents != nil {
		a := m.agents[node]
		m.seenMu.Unlock()
		if m.live(a) {
			return a, nil
		}
	} else {
		m.seenMu.Unlock()
	}
	resp, err := m.cli.Get(ctx, m.store.agentKey(node))
	if err != nil {
		return nil, fmt.Errorf("read agent %s: %w", node, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	kv := resp.Kvs[0]
	a := &vonv1.Agent{}
	if err := proto.Unmarshal(kv.Value, a); err != nil {
		return nil, fmt.Errorf("corrupt agent %s: %w", kv.Key, err)
	}
	m.seenMu.Lock()
	m.sawLocked(node, kv.ModRevision, time.Now())
	m.putAgentLocked(a)
	m.seenMu.Unlock()
	return a, nil
}

// sawLocked records that node's record was seen at revision rev (at now), if
// that is a later write than the last one seen.
func (m *Manager) sawLocked(node string, rev int64, now time.Time) {
	if m.seen == nil {
		return
	}
	if m.seenRev == nil {
		m.seenRev = map[string]int64{}
	}
	if rev > m.seenRev[node] {
		m.seen[node], m.seenRev[node] = now, rev
	}
}

// live says whether a's agent has registered within AgentLiveness: as the
// leader saw it, or (not leading) by the record's own time.
func (m *Manager) live(a *vonv1.Agent) bool {
	if a == nil || a.GetEndpoint() == "" {
		return false
	}
	m.seenMu.Lock()
	t, ok := m.seen[a.GetNode()]
	m.seenMu.Unlock()
	if ok {
		return time.Since(t) <= m.cfg.AgentLiveness
	}
	return a.GetLastSeenTime() != nil && time.Since(a.GetLastSeenTime().AsTime()) <= m.cfg.AgentLiveness
}

func (s *Store) agentNode(key []byte) string {
	n := strings.TrimPrefix(string(key), s.agentPrefix())
	if u, err := url.PathUnescape(n); err == nil {
		return u
	}
	return n
}
