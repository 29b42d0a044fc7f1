package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"

	"github.com/vonproject/von/internal/rpcconn"
	"github.com/vonproject/von/pki"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// endpoint is the AgentService address reported to the manager.
func (a *Agent) endpoint() string {
	if a.cfg.Endpoint != "" {
		return a.cfg.Endpoint
	}
	addr := a.lis.Addr().String()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			return net.JoinHostPort(h, port)
		}
	}
	return addr
}

// registerLoop registers with the manager until ctx ends: with exponential
// backoff while the manager is unreachable, then every RegisterInterval as a
// liveness heartbeat. The first success after start or after a failure
// converges to the desired state the manager returns.
func (a *Agent) registerLoop(ctx context.Context) {
	if a.cfg.ManagerAddr == "" {
		a.log.Warn("no manager address: the agent will not register (it still serves AgentService)")
		return
	}
	conn, err := rpcconn.Dial(a.cfg.ManagerAddr, a.cfg.TLS, pki.Expect(pki.KindManager, ""),
		grpc.WithDisableRetry()) // registerLoop retries (and logs) by itself
	if err != nil {
		a.log.Error("bad manager address; not registering", "manager", a.cfg.ManagerAddr, "err", err)
		return
	}
	defer conn.Close()
	client := vonv1.NewAgentRegistryServiceClient(conn)
	converge, failures := true, 0
	const minBackoff = 200 * time.Millisecond
	backoff := minBackoff
	var meter rateMeter
	for {
		var rates []*vonv1.OnRate
		if a.reportRates.Load() {
			rates = a.measure(ctx, &meter)
		} else {
			meter = rateMeter{} // the next report starts from a fresh baseline
		}
		mode := heartbeat
		if converge {
			mode = keepIfCurrent
		}
		err := a.registerOnce(ctx, client, mode, rates)
		wait := a.cfg.RegisterInterval
		if err == nil {
			if failures > 0 {
				a.log.Info("manager reachable again", "manager", a.cfg.ManagerAddr, "failed_attempts", failures)
			}
			converge, failures, backoff = false, 0, minBackoff
		} else {
			if ctx.Err() != nil {
				return
			}
			failures++
			if failures == 1 || failures%10 == 0 {
				a.log.Warn("register with the manager failed; retrying", "manager", a.cfg.ManagerAddr, "attempt", failures, "err", err)
			}
			converge = true
			wait = backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, a.cfg.RegisterInterval)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// registerMode is what a registration asks of the manager.
type registerMode int

const (
	heartbeat     registerMode = iota // keep my state; I will not converge to the answer
	keepIfCurrent                     // converge, unless my state revision shows I hold my router's state
	fullState                         // converge to the desired state, whatever my revision
)

// registerOnce registers (unless a heartbeat, converging to the desired state
// the answer carries) and reports what each ON carried since the previous
// registration. After a failed call the agent registers with keepIfCurrent:
// when it holds no prepared partition and its state revision covers every
// change of its router's desired state, the manager answers keep_state
// instead of sending that state (a manager restart then costs heartbeats, not
// every router's whole state).
func (a *Agent) registerOnce(ctx context.Context, client vonv1.AgentRegistryServiceClient, mode registerMode, rates []*vonv1.OnRate) error {
	ifs, err := a.dp.interfaces()
	if err != nil {
		return err
	}
	req := &vonv1.AgentRegistryServiceRegisterRequest{Node: a.cfg.Node, Endpoint: a.endpoint(),
		Interfaces: a.cfg.protoIfaces(ifs), Version: a.cfg.Version, Heartbeat: mode == heartbeat, OnRates: rates}
	a.mu.Lock()
	sentSeq := a.st.seq
	req.StateRevision = a.st.stateRev
	// In-doubt holds are resolved by a converging answer only.
	req.KeepIfCurrent = mode == keepIfCurrent && len(a.st.holds) == 0 && a.st.stateRev != 0 && a.st.cluster != ""
	a.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, a.cfg.RegisterTimeout)
	resp, err := client.Register(cctx, req)
	cancel()
	if err != nil {
		a.met.register.WithLabelValues("error").Inc()
		return err
	}
	a.met.register.WithLabelValues("ok").Inc()
	a.reportRates.Store(resp.GetReportRates())
	kept := mode == heartbeat || req.KeepIfCurrent && resp.GetKeepState()
	if mode != heartbeat {
		a.met.keptState(kept)
	}
	a.mu.Lock()
	if kept && resp.GetClusterId() != a.st.cluster {
		// An answer without a desired state, and moving to another
		// cluster means converging to its state: ask for it.
		a.mu.Unlock()
		return a.registerOnce(ctx, client, fullState, nil)
	}
	defer a.mu.Unlock()
	defer func() {
		for id, seq := range a.releaseSeq {
			if seq <= sentSeq {
				delete(a.releaseSeq, id) // every later registration is sent after it
			}
		}
	}()
	if a.closed {
		return ErrClosed
	}
	before := a.st.epoch
	moved, err := a.followLocked(resp)
	if err != nil {
		return err
	}
	if kept && !moved {
		if a.st.epoch != before {
			_ = a.persistLocked()
		}
		return nil
	}
	return a.adoptLocked(ctx, resp, sentSeq, moved)
}

// adoptLocked converges to the desired state a registration returned and
// resolves in-doubt holds. A hold is in doubt when it was prepared before the
// Register request was sent and either survived a restart of the agent or was
// prepared under a lower leader epoch than the answer's (a new leader aborts
// its predecessor's undecided rounds). An in-doubt hold whose ON is listed
// with the same spec is committed; any other in-doubt hold is aborted. Other
// holds belong to a round the current leader may still decide and are left to
// their decision or their hold_ttl. Holds, commits, releases and Syncs newer
// than the Register request (journal seq > sentSeq) raced with it and win
// over the answer. When the agent moved to a new manager cluster, every older
// hold is in doubt (the new cluster's epochs say nothing about the old one's).
func (a *Agent) adoptLocked(ctx context.Context, resp *vonv1.AgentRegistryServiceRegisterResponse, sentSeq uint64, moved bool) error {
	if a.syncSeq > sentSeq {
		a.log.Info("a Sync arrived while registering; keeping its state")
		return nil
	}
	if r := resp.GetStateRevision(); !moved && r != 0 && r < a.st.stateRev {
		return fmt.Errorf("%w: the registration's desired state was read at revision %d, before a change (revision %d) this agent already applied; not adopted, registering again",
			ErrStaleEpoch, r, a.st.stateRev)
	}
	a.st.stateRev = max(a.st.stateRev, resp.GetStateRevision())
	var specs []*vonv1.PartitionSpec
	listed := map[uint32]*vonv1.PartitionSpec{}
	for _, sp := range resp.GetPartitions() {
		if a.releaseSeq[sp.GetOnId()] > sentSeq {
			continue // released after the manager computed this answer
		}
		if err := checkSpec(sp, a.cfg.MaxTTL); err != nil {
			a.log.Error("manager sent an invalid partition; ignoring it", "err", err)
			continue
		}
		if listed[sp.GetOnId()] != nil {
			a.log.Error("manager listed an ON twice; using the first", "on", sp.GetOnId())
			continue
		}
		listed[sp.GetOnId()] = sp
		specs = append(specs, sp)
	}
	now := time.Now()
	for txn, h := range a.st.holds {
		if h.Seq > sentSeq || (!moved && h.Seq > a.startSeq && h.Epoch >= resp.GetLeaderEpoch()) {
			continue
		}
		id := h.Spec.GetOnId()
		delete(a.st.holds, txn)
		if sp := listed[id]; sp != nil && sameSpec(sp, h.Spec) {
			a.st.hist.put(outcome{Op: opCommit, TxnID: txn, OnID: id, Time: now})
			a.log.Info("in-doubt hold resolved as committed by registration", "txn", txn, "on", id)
		} else {
			a.st.hist.put(outcome{Op: opEnd, TxnID: txn, OnID: id, Reason: "been aborted (not committed per registration)", Time: now})
			a.log.Info("in-doubt hold resolved as aborted by registration", "txn", txn, "on", id)
		}
	}
	epoch := a.st.epoch
	_, err := a.replaceCommittedLocked(ctx, specs, fmt.Sprintf("register@%d", epoch), epoch,
		func(c *committedON) bool { return c.Seq > sentSeq })
	if perr := a.persistLocked(); err == nil {
		err = perr
	}
	return err
}
