package reservation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/vonproject/von/disjoint"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// DefaultPrefix is where a manager keeps its keys in etcd.
const DefaultPrefix = "/von/v1"

// Store is the manager's typed view of etcd. Key layout under the prefix:
//
//	topology             the topology file as applied (YAML)
//	ons/<name>           Reservation (protobuf)
//	txns/<txn id>        2PC transaction record (JSON)
//	agents/<node>        Agent registration (protobuf)
//	links/<link>/<ab|ba> bit/s reserved on a link direction (decimal)
//	ids/<hex id>         ON id in use or in quarantine (JSON)
//	election/            leader election
type Store struct {
	cli    *clientv3.Client
	prefix string
	Ledger *Ledger

	mu    sync.Mutex
	topo  *TopologyState
	fence []clientv3.Cmp // leader fencing, added to every guarded write
	// parseMu makes callers that miss the cached topology parse it once
	// between them (a restarted manager meets a thousand heartbeats at once);
	// parses counts the parses (tests).
	parseMu sync.Mutex
	parses  atomic.Int64
	lists   atomic.Int64 // full reads of every record (tests)
}

// NewStore uses keys under prefix.
func NewStore(cli *clientv3.Client, prefix string) *Store {
	s := &Store{cli: cli, prefix: prefix}
	s.Ledger = NewLedger(cli, prefix)
	s.Ledger.Fence = s.fenced
	return s
}

// setFence makes every guarded write also require cmp (the leader's election key).
func (s *Store) setFence(cmp clientv3.Cmp) {
	s.mu.Lock()
	s.fence = []clientv3.Cmp{cmp}
	s.mu.Unlock()
}

// fenced returns cmps plus the leader fence, if any.
func (s *Store) fenced(cmps ...clientv3.Cmp) []clientv3.Cmp {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(append([]clientv3.Cmp(nil), cmps...), s.fence...)
}

func (s *Store) topologyKey() string         { return s.prefix + "/topology" }
func (s *Store) onKey(name string) string    { return s.prefix + "/ons/" + url.PathEscape(name) }
func (s *Store) onPrefix() string            { return s.prefix + "/ons/" }
func (s *Store) txnKey(id string) string     { return s.prefix + "/txns/" + id }
func (s *Store) overlayPrefix() string       { return s.prefix + "/overlay/" }
func (s *Store) txnPrefix() string           { return s.prefix + "/txns/" }
func (s *Store) agentKey(node string) string { return s.prefix + "/agents/" + url.PathEscape(node) }
func (s *Store) agentPrefix() string         { return s.prefix + "/agents/" }
func (s *Store) electionPrefix() string      { return s.prefix + "/election" }

// TopologyState is the applied topology with what planning needs, cached per revision.
type TopologyState struct {
	Topo     *topology.Topology
	Graph    *disjoint.Graph
	YAML     string
	Revision int64 // mod revision of the topology key
}

// lastTopology is the topology Topology parsed last (nil if none), without
// checking that it is still the stored one.
func (s *Store) lastTopology() *TopologyState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.topo
}

// Topology returns the applied topology, or ErrNoTopology.
func (s *Store) Topology(ctx context.Context) (*TopologyState, error) {
	// The file can be megabytes: ask for its revision first, and for the file
	// only when it is not the one parsed last.
	resp, err := s.cli.Get(ctx, s.topologyKey(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, ErrNoTopology
	}
	want := resp.Kvs[0].ModRevision
	cachedAt := func() *TopologyState {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.topo != nil && s.topo.Revision >= want {
			return s.topo
		}
		return nil
	}
	if st := cachedAt(); st != nil {
		return st, nil
	}
	s.parseMu.Lock()
	defer s.parseMu.Unlock()
	if st := cachedAt(); st != nil { // parsed by the caller we waited for
		return st, nil
	}
	if resp, err = s.cli.Get(ctx, s.topologyKey()); err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, ErrNoTopology
	}
	kv := resp.Kvs[0]
	s.parses.Add(1)
	st, err := newTopologyState(string(kv.Value))
	if err != nil {
		return nil, fmt.Errorf("stored topology: %w", err)
	}
	st.Revision = kv.ModRevision
	s.mu.Lock()
	s.topo = st
	s.mu.Unlock()
	return st, nil
}

func newTopologyState(yaml string) (*TopologyState, error) {
	t, err := topology.Parse([]byte(yaml))
	if err != nil {
		return nil, err
	}
	g, err := disjoint.FromTopology(t)
	if err != nil {
		return nil, err
	}
	return &TopologyState{Topo: t, Graph: g, YAML: yaml}, nil
}

// PutTopology replaces the topology. It refuses a topology that would strand a live
// reservation: a link it uses gone or moved, or less reservable capacity than is
// reserved on it.
func (s *Store) PutTopology(ctx context.Context, yaml string) (*TopologyState, error) {
	st, err := newTopologyState(yaml)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	for attempt := 0; attempt < 20; attempt++ {
		ons, rev, err := s.List(ctx)
		if err != nil {
			return nil, err
		}
		old, err := s.Topology(ctx)
		if err != nil && err != ErrNoTopology {
			return nil, err
		}
		reserved, err := s.Ledger.Reserved(ctx)
		if err != nil {
			return nil, err
		}
		if err := compatible(old, st.Topo, ons, reserved); err != nil {
			return nil, err
		}
		var oldRev int64
		if old != nil {
			oldRev = old.Revision
		}
		tr, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(s.topologyKey()), "=", oldRev),
			clientv3.Compare(clientv3.ModRevision(s.onPrefix()), "<", rev+1).WithPrefix(),
		).Then(clientv3.OpPut(s.topologyKey(), yaml)).Commit()
		if err != nil {
			return nil, fmt.Errorf("store topology: %w", err)
		}
		if tr.Succeeded {
			st.Revision = tr.Header.Revision
			s.mu.Lock()
			s.topo = st
			s.mu.Unlock()
			return st, nil
		}
	}
	return nil, fmt.Errorf("apply topology: %w", ErrContention)
}

// compatible checks that every live reservation still fits the new topology.
func compatible(old *TopologyState, nt *topology.Topology, ons []*vonv1.Reservation, reserved map[Charge]uint64) error {
	for _, on := range ons {
		if terminal(on.GetState()) {
			continue // ended: its record stays for a while, but nothing of it is on the network
		}
		for _, m := range on.GetMembers() {
			n, ok := nt.Node(m.GetName())
			if !ok || n.Kind != topology.KindHost || n.Address.String() != m.GetAddress() {
				return fmt.Errorf("%w: reservation %q has member %s at %s, which the new topology removes or changes; release it first",
					ErrInUse, on.GetName(), m.GetName(), m.GetAddress())
			}
		}
		for _, cl := range on.GetLinks() {
			nl, ok := nt.Link(cl.GetLink())
			if !ok {
				return fmt.Errorf("%w: reservation %q uses link %s, which the new topology removes; release it first", ErrInUse, on.GetName(), cl.GetLink())
			}
			if old != nil {
				if ol, ok := old.Topo.Link(cl.GetLink()); ok && (ol.A.Node != nl.A.Node || ol.B.Node != nl.B.Node || ol.A.Interface != nl.A.Interface || ol.B.Interface != nl.B.Interface) {
					return fmt.Errorf("%w: reservation %q uses link %s, whose ends the new topology changes; release it first", ErrInUse, on.GetName(), cl.GetLink())
				}
			}
		}
	}
	for c, r := range reserved {
		if l, ok := nt.Link(c.Link); ok && r > l.ReservableRate() {
			return fmt.Errorf("%w: link %s (%s) has %s reserved, more than the %s the new topology makes reservable",
				ErrInUse, c.Link, c.Dir, topology.FormatRate(r), topology.FormatRate(l.ReservableRate()))
		}
	}
	return nil
}

// Get returns a reservation and the mod revision of its record.
func (s *Store) Get(ctx context.Context, name string) (*vonv1.Reservation, int64, error) {
	resp, err := s.cli.Get(ctx, s.onKey(name))
	if err != nil {
		return nil, 0, fmt.Errorf("read reservation %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	r := &vonv1.Reservation{}
	if err := proto.Unmarshal(resp.Kvs[0].Value, r); err != nil {
		return nil, 0, fmt.Errorf("corrupt reservation %s: %w", name, err)
	}
	r.Revision = uint64(resp.Kvs[0].ModRevision)
	return r, resp.Kvs[0].ModRevision, nil
}

// List returns every reservation (in name order) and the store revision read.
func (s *Store) List(ctx context.Context) ([]*vonv1.Reservation, int64, error) {
	s.lists.Add(1)
	resp, err := s.cli.Get(ctx, s.onPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("list reservations: %w", err)
	}
	out := make([]*vonv1.Reservation, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		r := &vonv1.Reservation{}
		if err := proto.Unmarshal(kv.Value, r); err != nil {
			return nil, 0, fmt.Errorf("corrupt reservation %s: %w", kv.Key, err)
		}
		r.Revision = uint64(kv.ModRevision)
		out = append(out, r)
	}
	return out, resp.Header.Revision, nil
}

// ListAfter returns up to limit reservations whose names sort after after (all
// from the first when after is empty), in name order, and whether more follow.
// It reads only those records: a page costs the same however many ONs exist.
func (s *Store) ListAfter(ctx context.Context, after string, limit int64) ([]*vonv1.Reservation, bool, error) {
	from := s.onPrefix()
	if after != "" {
		from = s.onKey(after) + "\x00"
	}
	resp, err := s.cli.Get(ctx, from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.onPrefix())), clientv3.WithLimit(limit))
	if err != nil {
		return nil, false, fmt.Errorf("list reservations: %w", err)
	}
	out := make([]*vonv1.Reservation, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		r := &vonv1.Reservation{}
		if err := proto.Unmarshal(kv.Value, r); err != nil {
			return nil, false, fmt.Errorf("corrupt reservation %s: %w", kv.Key, err)
		}
		r.Revision = uint64(kv.ModRevision)
		out = append(out, r)
	}
	return out, resp.More, nil
}

func (s *Store) putOn(r *vonv1.Reservation) (clientv3.Op, error) {
	b, err := proto.Marshal(r)
	if err != nil {
		return clientv3.Op{}, fmt.Errorf("encode reservation: %w", err)
	}
	return clientv3.OpPut(s.onKey(r.GetName()), string(b)), nil
}

// Update writes r if its record is still at modRev; it returns the new revision or
// ErrGuard if someone else changed it first. The write counts as a change of
// r's partitions (paths_revision is cleared): see UpdateSamePaths.
func (s *Store) Update(ctx context.Context, r *vonv1.Reservation, modRev int64, extra ...clientv3.Op) (int64, error) {
	r.PathsRevision = 0
	return s.update(ctx, r, modRev, extra...)
}

// UpdateSamePaths is Update for a record rewritten with the partitions it had
// at modRev (a renewal, a note of where it is not enforced or why it is
// degraded): a committed record keeps the revision at which its partitions
// last changed, so that a restarted manager's index knows each router's last
// change (index.put). Any other record is written as by Update.
func (s *Store) UpdateSamePaths(ctx context.Context, r *vonv1.Reservation, modRev int64) (int64, error) {
	if r.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
		return s.Update(ctx, r, modRev)
	}
	if r.PathsRevision == 0 {
		r.PathsRevision = uint64(modRev)
	}
	return s.update(ctx, r, modRev)
}

func (s *Store) update(ctx context.Context, r *vonv1.Reservation, modRev int64, extra ...clientv3.Op) (int64, error) {
	op, err := s.putOn(r)
	if err != nil {
		return 0, err
	}
	tr, err := s.cli.Txn(ctx).If(s.fenced(clientv3.Compare(clientv3.ModRevision(s.onKey(r.GetName())), "=", modRev))...).
		Then(append([]clientv3.Op{op}, extra...)...).Commit()
	if err != nil {
		return 0, fmt.Errorf("update reservation %s: %w", r.GetName(), err)
	}
	if !tr.Succeeded {
		return 0, ErrGuard
	}
	return tr.Header.Revision, nil
}

// txnRecord is the durable state of one two-phase commit round.
type txnRecord struct {
	ID           string   `json:"id"`
	Kind         string   `json:"kind"` // "reserve" or "release"
	Name         string   `json:"name"`
	OnID         uint32   `json:"on_id"`
	Decision     string   `json:"decision,omitempty"` // "", "commit", "abort"
	Participants []string `json:"participants"`
	// Released lists, for a "reroute", the routers the ON leaves (Release once committed).
	Released []string `json:"released,omitempty"`
}

func (s *Store) putTxn(t txnRecord) clientv3.Op {
	b, _ := json.Marshal(t)
	return clientv3.OpPut(s.txnKey(t.ID), string(b))
}

// Txns lists the 2PC records still present (rounds not finished).
func (s *Store) Txns(ctx context.Context) ([]txnRecord, error) {
	resp, err := s.cli.Get(ctx, s.txnPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list transactions: %w", err)
	}
	var out []txnRecord
	for _, kv := range resp.Kvs {
		var t txnRecord
		if err := json.Unmarshal(kv.Value, &t); err != nil {
			return nil, fmt.Errorf("corrupt transaction %s: %w", kv.Key, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// PutAgent records an agent's registration.
func (s *Store) PutAgent(ctx context.Context, a *vonv1.Agent) error {
	b, err := proto.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode agent: %w", err)
	}
	if _, err := s.cli.Put(ctx, s.agentKey(a.GetNode()), string(b)); err != nil {
		return fmt.Errorf("store agent %s: %w", a.GetNode(), err)
	}
	return nil
}

// Agents returns every registered agent by node.
func (s *Store) Agents(ctx context.Context) (map[string]*vonv1.Agent, error) {
	resp, err := s.cli.Get(ctx, s.agentPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	out := make(map[string]*vonv1.Agent, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		a := &vonv1.Agent{}
		if err := proto.Unmarshal(kv.Value, a); err != nil {
			return nil, fmt.Errorf("corrupt agent %s: %w", kv.Key, err)
		}
		out[a.GetNode()] = a
	}
	return out, nil
}
