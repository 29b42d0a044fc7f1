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

	"github.com/vonproject/von/internal/rpcconn"
	"github.com/vonproject/von/overlay"
	"github.com/vonproject/von/pki"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/wire"
)

// Config tunes a Manager. Zero durations take the defaults shown.
type Config struct {
	Prefix string // etcd key prefix (DefaultPrefix)
	Logger *slog.Logger
	// ID names this manager in the leader election. A restarted manager with the same
	// ID takes over its earlier incarnation's session at once; two live managers must
	// not share one. Default: a random id.
	ID string
	// Advertise is the address other managers can reach this one's gRPC server
	// at. Standbys probe the leader there: a leader whose address refuses
	// connections has crashed, and its session is ended at once instead of after
	// its TTL. Empty: no probing of this manager.
	Advertise string

	DefaultTTL time.Duration // reservation lease when the request gives none (1h)
	MaxTTL     time.Duration // longest lease a request may ask for (720h)
	// PartitionLease is the lease agents hold partitions under (30s); the manager
	// refreshes it every PartitionLease/3, so agents ride out shorter outages.
	PartitionLease time.Duration
	HoldTTL        time.Duration // how long agents hold a prepared partition (30s)
	// SessionTTL is the leader's election session: a crashed leader's successor
	// takes over within it (PartitionLease/3, at most 10s, at least 1s; whole seconds).
	SessionTTL        time.Duration
	CallTimeout       time.Duration // per agent RPC (5s)
	AgentLiveness     time.Duration // an agent is live if it registered this recently (15s)
	ExpiryInterval    time.Duration // how often expired reservations are looked for (1s)
	ReconcileInterval time.Duration // full Sync of every live agent (30s)
	Quarantine        time.Duration // an ON id stays unused after release (10m)
	Retention         time.Duration // released, expired and failed records stay visible (1h)

	DSCP uint32 // ON codepoint (wire.DefaultDSCP)
	Port uint32 // ON UDP port (wire.DefaultPort)
	// OverlayPool is where ONs' overlay prefixes come from (overlay.DefaultPool).
	OverlayPool overlay.Pool

	Metrics *Metrics // nil: metrics are not collected
	// TLS is this manager's certificate for calling agents, each of which must
	// present an agent certificate naming its router. nil: plaintext.
	TLS *pki.Material
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
	def(&c.SessionTTL, min(max(c.PartitionLease/3, time.Second), 10*time.Second))
	c.SessionTTL = max(c.SessionTTL.Round(time.Second), time.Second)
	def(&c.CallTimeout, 5*time.Second)
	def(&c.AgentLiveness, 15*time.Second)
	def(&c.ExpiryInterval, time.Second)
	def(&c.ReconcileInterval, 30*time.Second)
	def(&c.Quarantine, 10*time.Minute)
	def(&c.Retention, time.Hour)
	if c.DSCP == 0 {
		c.DSCP = wire.DefaultDSCP
	}
	if c.Port == 0 {
		c.Port = wire.DefaultPort
	}
	if !c.OverlayPool.Prefix().IsValid() {
		c.OverlayPool, _ = overlay.NewPool(overlay.DefaultPool)
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
	rates measuredRates // what agents report each ON carried (the dashboard's)

	epoch   atomic.Uint64           // leader epoch; 0 while not leading
	cluster atomic.Pointer[Cluster] // read (or created) when Run starts
	leader  chan struct{}           // closed when this manager becomes leader

	connMu sync.Mutex
	conns  map[string]agentConn // by router

	// locks serialises operations on one reservation name inside this manager;
	// entries live while someone holds or waits for them.
	lockMu sync.Mutex
	locks  map[string]*nameLock
	// routerLocks orders what is sent to one router: a full Sync (desired state read
	// and sent under the lock) never overtakes a Commit, Abort or Release.
	routerLocks sync.Map // node → *sync.RWMutex

	idx        atomic.Pointer[index] // leader only: the reservation index (index.go)
	idxLoading atomic.Bool           // a new leader is loading its index (readers wait: committedOn)
	syncCh     chan string           // leader only: routers whose agent missed a change (Register)
	reconciles atomic.Uint64         // reconcile rounds run (every reconcileFullEvery-th syncs everyone)
	// refreshing marks the routers whose refresh is running (refreshRound);
	// refreshWG tracks those goroutines, refreshSem bounds them.
	refreshMu  sync.Mutex
	refreshing map[string]bool
	refreshWG  sync.WaitGroup
	refreshSem chan struct{}
	// desiredSem bounds the routers' desired states computed at once
	// (desired): each holds a router's thousands of partitions.
	desiredSem chan struct{}
	specs      specCache     // partitions derived from records (specFor)
	agentAddrs atomic.Uint64 // bumped when an agent's registered interfaces change (specKey)

	seenMu  sync.Mutex
	seen    map[string]time.Time    // leader only: when each agent's record was last written (liveness.go)
	agents  map[string]*vonv1.Agent // leader only: the agent records, kept by a watch (nil: read etcd)
	seenRev map[string]int64        // leader only: revision of each agent record when last seen
}

// New creates a manager on an etcd client.
func New(cli *clientv3.Client, cfg Config) *Manager {
	cfg.defaults()
	st := NewStore(cli, cfg.Prefix)
	st.Ledger.Quarantine = cfg.Quarantine
	st.Ledger.OnConflict = cfg.Metrics.conflict
	return &Manager{cfg: cfg, cli: cli, store: st, log: cfg.Logger, m: cfg.Metrics,
		leader: make(chan struct{}), conns: map[string]agentConn{}, locks: map[string]*nameLock{},
		syncCh: make(chan string, 1024), refreshSem: make(chan struct{}, routerParallelism),
		desiredSem: make(chan struct{}, desiredParallelism)}
}

// Logger is the manager's logger.
func (m *Manager) Logger() *slog.Logger { return m.log }

// Store exposes the manager's etcd view (tests and tools).
func (m *Manager) Store() *Store { return m.store }

// clusterID names the manager cluster in every call to an agent.
func (m *Manager) clusterID() string {
	if c := m.cluster.Load(); c != nil {
		return c.ID
	}
	return ""
}

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
	cl, err := m.store.Cluster(ctx)
	if err != nil {
		return err
	}
	m.cluster.Store(cl)
	sess, err := concurrency.NewSession(m.cli, concurrency.WithTTL(int(m.cfg.SessionTTL/time.Second)), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return fmt.Errorf("election session: %w", err)
	}
	defer sess.Close()
	m.revokeStale(ctx, sess.Lease())
	el := concurrency.NewElection(sess, m.store.electionPrefix())
	pctx, pcancel := context.WithCancel(ctx)
	probed := make(chan struct{})
	go func() { defer close(probed); m.probeLeader(pctx, el) }()
	err = el.Campaign(ctx, m.candidate())
	pcancel()
	<-probed
	if err != nil {
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
		m.seenMu.Lock()
		m.seen, m.seenRev, m.agents = nil, nil, nil
		m.seenMu.Unlock()
	}()
	// Partition leases first: the predecessor's last refresh may be up to a
	// third of a lease old, and recovering its unfinished rounds can take
	// several call timeouts per hung router. The loops start before recovery.
	watched := m.watchAgents(lctx)
	defer func() { lcancel(); <-watched }()
	m.idxLoading.Store(true)
	x, indexed, err := m.loadIndex(lctx)
	if err != nil {
		m.log.Warn("reservation index not loaded; reading the store instead", "err", err)
	} else {
		m.idx.Store(x)
		defer func() { m.idx.Store(nil); lcancel(); <-indexed }()
	}
	m.idxLoading.Store(false)
	m.refreshRound(lctx, true)
	defer func() { lcancel(); m.refreshWG.Wait() }()
	var wg sync.WaitGroup
	loop := func(every time.Duration, fn func(context.Context)) {
		wg.Go(func() {
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
		})
	}
	loop(m.cfg.PartitionLease/3, m.refreshOnce)
	wg.Go(func() { m.syncMissed(lctx) })
	loop(m.cfg.ExpiryInterval, m.expireOnce)
	if err := m.recover(lctx); err != nil && lctx.Err() == nil {
		m.log.Error("recovery", "err", err)
	}
	close(m.leader)
	loop(m.cfg.ReconcileInterval, m.reconcileOnce)
	loop(m.cfg.ExpiryInterval, m.checkDegraded)
	loop(time.Minute, func(ctx context.Context) {
		if _, err := m.store.Ledger.ReapQuarantine(ctx, time.Now()); err != nil {
			m.log.Warn("reap quarantined ids", "err", err)
		}
	})
	loop(time.Minute, func(ctx context.Context) {
		if _, err := m.ReapMembers(ctx, time.Now()); err != nil {
			m.log.Warn("reap member registry", "err", err)
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

func (m *Manager) requireLeader() (uint64, error) {
	e := m.epoch.Load()
	if e == 0 {
		return 0, ErrNotLeader
	}
	return e, nil
}

// agentConn is the connection to one router's agent.
type agentConn struct {
	endpoint string
	cc       *grpc.ClientConn
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

// routerLock orders what is sent to one router: a full Sync (exclusive)
// never overlaps a Commit, Abort or Release (shared: calls about different
// ONs, which the agent orders by their state revisions).
func (m *Manager) routerLock(node string, exclusive bool) func() {
	v, _ := m.routerLocks.LoadOrStore(node, &sync.RWMutex{})
	mu := v.(*sync.RWMutex)
	if exclusive {
		mu.Lock()
		return mu.Unlock
	}
	mu.RLock()
	return mu.RUnlock
}

// agentClient returns a client for node's agent, or ErrAgentDown.
func (m *Manager) agentClient(ctx context.Context, node string) (vonv1.AgentServiceClient, error) {
	a, err := m.agentRecord(ctx, node)
	if err != nil {
		return nil, err
	}
	if !m.live(a) {
		return nil, fmt.Errorf("%w: no live von-agent on router %s", ErrAgentDown, node)
	}
	return m.client(node, a.GetEndpoint())
}

// client returns a client for node's agent at endpoint. One connection per
// router: when the agent registers a new endpoint, the old one is closed.
func (m *Manager) client(node, endpoint string) (vonv1.AgentServiceClient, error) {
	m.connMu.Lock()
	defer m.connMu.Unlock()
	if c, ok := m.conns[node]; ok {
		if c.endpoint == endpoint {
			return vonv1.NewAgentServiceClient(c.cc), nil
		}
		_ = c.cc.Close()
		delete(m.conns, node)
	}
	cc, err := rpcconn.Dial(endpoint, m.cfg.TLS, pki.Expect(pki.KindAgent, node))
	if err != nil {
		return nil, fmt.Errorf("%w: agent endpoint %s: %w", ErrAgentDown, endpoint, err)
	}
	m.conns[node] = agentConn{endpoint: endpoint, cc: cc}
	return vonv1.NewAgentServiceClient(cc), nil
}

func (m *Manager) closeConns() {
	m.connMu.Lock()
	defer m.connMu.Unlock()
	for k, c := range m.conns {
		_ = c.cc.Close()
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
