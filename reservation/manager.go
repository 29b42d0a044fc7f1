package reservation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Config tunes a Manager. Zero durations take the defaults shown.
type Config struct {
	Prefix string // etcd key prefix (DefaultPrefix)
	Logger *slog.Logger
	// ID names this manager in the leader election. A restarted manager with the same
	// ID takes over its earlier incarnation's session at once; two live managers must
	// not share one. Default: a random id.
	ID string

	DefaultTTL time.Duration // reservation lease when the request gives none (1h)
	MaxTTL     time.Duration // longest lease a request may ask for (720h)
	// PartitionLease is the lease agents hold partitions under (30s); the manager
	// refreshes it every PartitionLease/3, so agents ride out shorter outages.
	PartitionLease    time.Duration
	HoldTTL           time.Duration // how long agents hold a prepared partition (30s)
	CallTimeout       time.Duration // per agent RPC (5s)
	AgentLiveness     time.Duration // an agent is live if it registered this recently (15s)
	ExpiryInterval    time.Duration // how often expired reservations are looked for (1s)
	ReconcileInterval time.Duration // full Sync of every live agent (30s)
	Quarantine        time.Duration // an ON id stays unused after release (10m)
	Retention         time.Duration // released, expired and failed records stay visible (1h)

	DSCP uint32 // ON codepoint (44)
	Port uint32 // ON UDP port (4750)

	Metrics *Metrics // nil: metrics are not collected
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ID == "" {
		c.ID = "manager-" + randomHex(4)
	}
	def(&c.DefaultTTL, time.Hour)
	def(&c.MaxTTL, 720*time.Hour)
	def(&c.PartitionLease, 30*time.Second)
	def(&c.HoldTTL, 30*time.Second)
	def(&c.CallTimeout, 5*time.Second)
	def(&c.AgentLiveness, 15*time.Second)
	def(&c.ExpiryInterval, time.Second)
	def(&c.ReconcileInterval, 30*time.Second)
	def(&c.Quarantine, 10*time.Minute)
	def(&c.Retention, time.Hour)
	if c.DSCP == 0 {
		c.DSCP = 44
	}
	if c.Port == 0 {
		c.Port = 4750
	}
}

// Manager is the reservation service: it serves ReservationService and
// AgentRegistryService, and while it leads, coordinates 2PC, expires leases, refreshes
// and reconciles agents.
type Manager struct {
	cfg   Config
	cli   *clientv3.Client
	store *Store
	log   *slog.Logger
	m     *Metrics

	epoch  atomic.Uint64 // leader epoch; 0 while not leading
	leader chan struct{} // closed when this manager becomes leader

	connMu sync.Mutex
	conns  map[string]*grpc.ClientConn // by agent endpoint

	// locks serialises operations on one reservation name inside this manager;
	// entries live while someone holds or waits for them.
	lockMu sync.Mutex
	locks  map[string]*nameLock
	// routerLocks orders what is sent to one router: a full Sync (desired state read
	// and sent under the lock) never overtakes a Commit, Abort or Release.
	routerLocks sync.Map // node → *sync.Mutex
}

// New creates a manager on an etcd client.
func New(cli *clientv3.Client, cfg Config) *Manager {
	cfg.defaults()
	st := NewStore(cli, cfg.Prefix)
	st.Ledger.Quarantine = cfg.Quarantine
	return &Manager{cfg: cfg, cli: cli, store: st, log: cfg.Logger, m: cfg.Metrics,
		leader: make(chan struct{}), conns: map[string]*grpc.ClientConn{}, locks: map[string]*nameLock{}}
}

// Store exposes the manager's etcd view (tests and tools).
func (m *Manager) Store() *Store { return m.store }

// Epoch is the leader epoch, 0 while not leading.
func (m *Manager) Epoch() uint64 { return m.epoch.Load() }

// Leading is closed once this manager leads and has finished the rounds its
// predecessor left.
func (m *Manager) Leading() <-chan struct{} { return m.leader }

// Run campaigns for leadership and, once leader, recovers unfinished transactions and
// runs the lease, refresh and reconcile loops until ctx ends or leadership is lost.
func (m *Manager) Run(ctx context.Context) error {
	// The session outlives ctx so that Close can revoke it: a standby then leads at
	// once instead of waiting for the TTL.
	sess, err := concurrency.NewSession(m.cli, concurrency.WithTTL(10), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return fmt.Errorf("election session: %w", err)
	}
	defer sess.Close()
	m.revokeStale(ctx, sess.Lease())
	el := concurrency.NewElection(sess, m.store.electionPrefix())
	if err := el.Campaign(ctx, m.cfg.ID); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("campaign: %w", err)
	}
	// Every write the leader makes is fenced on its election key: a deposed leader's
	// late writes fail instead of undoing its successor's work.
	m.store.setFence(clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev()))
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	m.epoch.Store(uint64(el.Rev()))
	m.log.Info("leading", "id", m.cfg.ID, "epoch", el.Rev())
	lost := make(chan struct{})
	go func() {
		select {
		case <-sess.Done():
			m.epoch.Store(0) // stop accepting work at once
			close(lost)
			lcancel()
		case <-lctx.Done():
		}
	}()
	defer func() {
		m.epoch.Store(0)
		m.closeConns()
	}()
	if err := m.recover(lctx); err != nil && lctx.Err() == nil {
		m.log.Error("recovery", "err", err)
	}
	close(m.leader)
	var wg sync.WaitGroup
	loop := func(every time.Duration, fn func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-lctx.Done():
					return
				case <-t.C:
					fn(lctx)
				}
			}
		}()
	}
	loop(m.cfg.ExpiryInterval, m.expireOnce)
	loop(m.cfg.PartitionLease/3, m.refreshOnce)
	loop(m.cfg.ReconcileInterval, m.reconcileOnce)
	loop(time.Minute, func(ctx context.Context) {
		if _, err := m.store.Ledger.ReapQuarantine(ctx, time.Now()); err != nil {
			m.log.Warn("reap quarantined ids", "err", err)
		}
	})
	<-lctx.Done()
	wg.Wait()
	select {
	case <-lost:
		m.log.Error("lost leadership: etcd session ended")
		return errors.New("lost leadership")
	default:
		return nil
	}
}

// revokeStale ends the election sessions of earlier incarnations of this manager (same
// ID: a crashed process restarted), so it need not wait for their TTL to lead again.
func (m *Manager) revokeStale(ctx context.Context, mine clientv3.LeaseID) {
	resp, err := m.cli.Get(ctx, m.store.electionPrefix()+"/", clientv3.WithPrefix())
	if err != nil {
		return
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) == m.cfg.ID && clientv3.LeaseID(kv.Lease) != mine && kv.Lease != 0 {
			if _, err := m.cli.Revoke(ctx, clientv3.LeaseID(kv.Lease)); err == nil {
				m.log.Info("ended the election session of an earlier incarnation", "id", m.cfg.ID)
			}
		}
	}
}

func (m *Manager) requireLeader() (uint64, error) {
	e := m.epoch.Load()
	if e == 0 {
		return 0, ErrNotLeader
	}
	return e, nil
}

type nameLock struct {
	mu   sync.Mutex
	refs int
}

// lock serialises work on one reservation name inside this manager.
func (m *Manager) lock(name string) func() {
	m.lockMu.Lock()
	l := m.locks[name]
	if l == nil {
		l = &nameLock{}
		m.locks[name] = l
	}
	l.refs++
	m.lockMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		m.lockMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(m.locks, name)
		}
		m.lockMu.Unlock()
	}
}

// routerLock serialises state changes sent to one router.
func (m *Manager) routerLock(node string) func() {
	v, _ := m.routerLocks.LoadOrStore(node, &sync.Mutex{})
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// agentClient returns a client for node's agent, or ErrAgentDown.
func (m *Manager) agentClient(ctx context.Context, node string) (vonv1.AgentServiceClient, error) {
	agents, err := m.store.Agents(ctx)
	if err != nil {
		return nil, err
	}
	a := agents[node]
	if !m.live(a) {
		return nil, fmt.Errorf("%w: no live von-agent on router %s", ErrAgentDown, node)
	}
	return m.client(a.GetEndpoint())
}

func (m *Manager) live(a *vonv1.Agent) bool {
	return a != nil && a.GetEndpoint() != "" && a.GetLastSeenTime() != nil &&
		time.Since(a.GetLastSeenTime().AsTime()) <= m.cfg.AgentLiveness
}

func (m *Manager) client(endpoint string) (vonv1.AgentServiceClient, error) {
	m.connMu.Lock()
	defer m.connMu.Unlock()
	if c := m.conns[endpoint]; c != nil {
		return vonv1.NewAgentServiceClient(c), nil
	}
	c, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("%w: agent endpoint %s: %w", ErrAgentDown, endpoint, err)
	}
	m.conns[endpoint] = c
	return vonv1.NewAgentServiceClient(c), nil
}

func (m *Manager) closeConns() {
	m.connMu.Lock()
	defer m.connMu.Unlock()
	for k, c := range m.conns {
		_ = c.Close()
		delete(m.conns, k)
	}
}

// Close releases agent connections.
func (m *Manager) Close() { m.closeConns() }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
