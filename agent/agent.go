package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/vonproject/von/internal/rpcconn"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// applyTimeout bounds one convergence of the kernel.
const applyTimeout = 60 * time.Second

// Agent is one router's agent. Build it with New, drive it with Run.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	dp   dataPlane
	lis  net.Listener
	mlis net.Listener
	reg  *prometheus.Registry
	met  *metrics
	ran  atomic.Bool
	// reportRates: the manager's last answer asked for measured rates.
	reportRates atomic.Bool

	mu         sync.Mutex
	jr         *journal
	st         *state
	skipped    map[uint32]string // committed ONs not enforced now, with the reason
	applyErr   error             // last convergence error; nil when converged
	journalErr error             // last journal write error; the watchdog retries
	// Journal seqs of manager pushes that a Register answer computed earlier
	// must not undo: the last Sync, and releases by ON id.
	syncSeq     uint64
	releaseSeq  map[uint32]uint64
	startSeq    uint64    // journal seq when the agent started: older holds survived a restart
	lastRefresh time.Time // when a manager last refreshed the leases
	closed      bool
}

// New loads the journal from cfg.StateDir, opens the data plane of cfg.Netns
// and the listeners. Expired leases and holds found in the journal are
// dropped (the kernel is converged when Run starts). Call Run, or Close if Run
// is never called.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: state dir %s: %w", ErrInvalid, cfg.StateDir, err)
	}
	if err := checkWritable(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("%w: state dir %s is not writable: %w", ErrInvalid, cfg.StateDir, err)
	}
	jr, st, found, err := openJournal(cfg.StateDir, cfg.Node, cfg.HistorySize)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, jr: jr, st: st, skipped: map[uint32]string{}, releaseSeq: map[uint32]uint64{}, startSeq: st.seq}
	ok := false
	defer func() {
		if !ok {
			a.release()
		}
	}()
	if cfg.Simulate != nil {
		a.log.Warn("SIMULATED data plane: partitions are recorded, not installed (scale tests only)", "interfaces", len(cfg.Simulate))
		sp, err := newSimPlane(cfg.Simulate)
		if err != nil {
			return nil, err
		}
		a.dp = sp
	} else {
		kp, err := openKernelPlane(ctx, cfg)
		if err != nil {
			return nil, err // a.dp stays nil (not a nil *kernelPlane)
		}
		a.dp = kp
	}
	if cfg.Listener != nil {
		a.lis = cfg.Listener
	} else if a.lis, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
		return nil, fmt.Errorf("%w: listen on %s: %w", ErrInvalid, cfg.ListenAddr, err)
	}
	if cfg.MetricsAddr != "" {
		if a.mlis, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("%w: metrics listen on %s: %w", ErrInvalid, cfg.MetricsAddr, err)
		}
	}
	a.reg = prometheus.NewRegistry()
	a.met = newMetrics(a.reg, a)
	a.mu.Lock()
	if a.expireLocked(time.Now()) {
		_ = a.persistLocked()
	}
	a.mu.Unlock()
	a.log.Info("agent journal loaded", "found", found, "committed", len(st.committed), "prepared", len(st.holds), "leader_epoch", st.epoch)
	ok = true
	return a, nil
}

func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".probe*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// Addr is the address AgentService listens on.
func (a *Agent) Addr() net.Addr { return a.lis.Addr() }

// MetricsAddr is the address of the metrics server (nil when disabled).
func (a *Agent) MetricsAddr() net.Addr {
	if a.mlis == nil {
		return nil
	}
	return a.mlis.Addr()
}

// Committed is the number of committed partitions the agent holds.
func (a *Agent) Committed() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.st.committed)
}

// RefreshedSince says whether a manager has refreshed the agent's leases
// since t.
func (a *Agent) RefreshedSince(t time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.lastRefresh.Before(t)
}

// Registry is the agent's Prometheus registry (served at /metrics).
func (a *Agent) Registry() *prometheus.Registry { return a.reg }

// Run converges the kernel to the journaled committed state, serves
// AgentService, registers with the manager and runs the lease watchdog until
// ctx ends. It returns nil after a clean stop. Installed partitions stay in
// the kernel; a later agent with the same state dir takes them over.
func (a *Agent) Run(ctx context.Context) error {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	defer a.release()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	a.mu.Lock()
	if err := a.applyLocked(ctx, "start"); err != nil {
		a.log.Error("initial convergence failed; the watchdog retries", "err", err)
	}
	a.mu.Unlock()

	srv := grpc.NewServer(rpcconn.ServerOptions(a.cfg.TLS, grpc.ChainUnaryInterceptor(a.interceptor))...)
	vonv1.RegisterAgentServiceServer(srv, &service{a: a})
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Go(func() {
		if err := srv.Serve(a.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("agent: serve AgentService: %w", err)
			cancel()
		}
	})
	var hs *http.Server
	if a.mlis != nil {
		hs = &http.Server{Handler: a.metricsHandler(), ReadHeaderTimeout: 5 * time.Second}
		wg.Go(func() {
			if err := hs.Serve(a.mlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("agent: serve metrics: %w", err)
				cancel()
			}
		})
	}
	wg.Go(func() { a.registerLoop(ctx) })
	wg.Go(func() { a.watchdog(ctx) })
	a.log.Info("agent running", "node", a.cfg.Node, "listen", a.lis.Addr().String(), "netns", a.cfg.Netns, "manager", a.cfg.ManagerAddr)

	<-ctx.Done()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
		<-stopped
	}
	if hs != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = hs.Shutdown(sctx)
		scancel()
	}
	wg.Wait()
	a.log.Info("agent stopped; partitions stay installed under their leases")
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// Close releases what New opened; for an agent whose Run was never called
// (Run releases everything itself). Kernel state is left as it is.
func (a *Agent) Close() error {
	if a.ran.CompareAndSwap(false, true) {
		a.release()
	}
	return nil
}

func (a *Agent) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.closed = true
	if a.journalErr != nil {
		_ = a.persistLocked()
	}
	a.jr.close()
	if a.dp != nil {
		a.dp.close()
	}
	if a.lis != nil {
		_ = a.lis.Close()
	}
	if a.mlis != nil {
		_ = a.mlis.Close()
	}
}

// applyLocked converges the kernel to the committed partitions, reading and
// repairing everything the agent owns there (start, reconcile, Sync).
func (a *Agent) applyLocked(ctx context.Context, why string) error {
	a.dp.invalidate()
	return a.convergeLocked(ctx, why, true)
}

// updateLocked converges the kernel after a change of the committed
// partitions (Commit, Release, expiry), writing only the difference from
// what the agent installed last; drift is left to the next reconcile.
func (a *Agent) updateLocked(ctx context.Context, why string) error {
	return a.convergeLocked(ctx, why, false)
}

func (a *Agent) convergeLocked(ctx context.Context, why string, full bool) error {
	if a.closed {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), applyTimeout)
	defer cancel()
	ifs, err := a.dp.interfaces()
	if err != nil {
		a.applyErr = err
		return err
	}
	d, skipped := a.cfg.desired(a.st.committed, ifs)
	for id, why := range skipped {
		if a.skipped[id] != why {
			a.log.Warn("committed partition cannot be enforced now; retrying", "on", id, "reason", why)
		}
	}
	a.skipped = skipped
	start := time.Now()
	err = a.dp.apply(ctx, d, full || a.applyErr != nil)
	a.met.applySeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		a.met.applyErrors.Inc()
		a.applyErr = fmt.Errorf("converge (%s): %w", why, err)
		a.log.Error("converging the data plane failed", "why", why, "err", err)
		return a.applyErr
	}
	if a.applyErr != nil {
		a.log.Info("data plane converged again", "why", why)
	}
	a.applyErr = nil
	a.log.Debug("data plane converged", "why", why, "ons", len(d.ONs), "interfaces", len(d.Interfaces), "took", time.Since(start))
	return nil
}

// persistLocked makes the state durable (journal.go, wal.go).
func (a *Agent) persistLocked() error {
	if err := a.jr.persist(a.st, time.Now()); err != nil {
		a.met.journalErrors.Inc()
		a.journalErr = err
		a.log.Error("journal write failed; retrying", "err", err)
		return fmt.Errorf("%w: journal write: %w", ErrUnavailable, err)
	}
	a.journalErr = nil
	return nil
}

// expireLocked drops committed partitions whose lease ran out and prepared
// holds past their deadline. It reports whether anything changed.
func (a *Agent) expireLocked(now time.Time) bool {
	changed := false
	for id, c := range a.st.committed {
		if !now.Before(c.LeaseExpire) {
			delete(a.st.committed, id)
			changed = true
			a.met.leaseExpired.Inc()
			a.log.Warn("partition lease ran out with no refresh; removing it (failsafe)", "on", id, "txn", c.TxnID, "reservation", c.Spec.GetReservation())
		}
	}
	for txn, h := range a.st.holds {
		if !now.Before(h.HoldExpire) {
			delete(a.st.holds, txn)
			changed = true
			a.met.holdExpired.Inc()
			a.st.hist.put(outcome{Op: opEnd, TxnID: txn, OnID: h.Spec.GetOnId(), Reason: "expired", Time: now})
			a.log.Warn("prepared hold got no decision in time; dropped (presumed abort)", "on", h.Spec.GetOnId(), "txn", txn)
		}
	}
	return changed
}

// watchdog enforces leases and hold deadlines and repairs drift.
func (a *Agent) watchdog(ctx context.Context) {
	t := time.NewTicker(a.cfg.WatchInterval)
	defer t.Stop()
	lastReconcile := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			reconcile := now.Sub(lastReconcile) >= a.cfg.ReconcileInterval
			if reconcile {
				lastReconcile = now
			}
			a.tick(ctx, time.Now(), reconcile)
		}
	}
}

func (a *Agent) tick(ctx context.Context, now time.Time, reconcile bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	changed := a.expireLocked(now)
	switch {
	case reconcile || a.applyErr != nil:
		_ = a.applyLocked(ctx, "reconcile")
	case changed:
		_ = a.updateLocked(ctx, "expiry")
	}
	if changed || a.journalErr != nil {
		_ = a.persistLocked()
	}
}
