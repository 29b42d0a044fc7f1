package agent

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Prepare holds without touching the kernel; Commit installs the HTB class and
// ON packets are classified into it, other traffic is not.
func TestPrepareCommitInstallsAndClassifies(t *testing.T) {
	tb := bed(t)
	r := startAgent(t, tb, t.TempDir(), func(c *Config) { c.MetricsAddr = "127.0.0.1:0" })
	const id = 0xA1B2C3D4
	sp := spec(id, 5_000_000, time.Minute)

	if v := prepare(t, r, "t1", 1, sp, 5*time.Second); v.GetVote() != vonv1.Vote_VOTE_PREPARED {
		t.Fatalf("vote %v: %s", v.GetVote(), v.GetReason())
	}
	if _, _, _, ok := htbClass(t, tb, "5Mbit"); ok {
		t.Fatal("Prepare installed a class; it must not change forwarding")
	}
	resp := commit(t, r, "t1", 1, id)
	if resp.GetAlreadyCommitted() || time.Until(resp.GetLeaseExpireTime().AsTime()) < 50*time.Second {
		t.Fatalf("commit response %v", resp)
	}
	handle, b0, _, ok := htbClass(t, tb, "5Mbit")
	if !ok {
		t.Fatalf("no 5Mbit class on r1:eth1 after Commit:\n%s", tcShow(t, tb, "class"))
	}
	if q := tcShow(t, tb, "qdisc"); !strings.Contains(q, "qdisc htb 7656: root") {
		t.Fatalf("no VON root qdisc on eth1:\n%s", q)
	}

	sent := sendON(t, tb, id, 300, 0xB0)
	eventually(t, 3*time.Second, "ON packets counted in the ON class", func() bool {
		_, _, p, _ := htbClass(t, tb, "5Mbit")
		return p >= sent.Packets*9/10
	})
	_, b1, p1, _ := htbClass(t, tb, "5Mbit")
	sendON(t, tb, id, 300, 0) // same payload, no ON codepoint: best effort
	sendON(t, tb, id+1, 300, 0xB0)
	time.Sleep(300 * time.Millisecond)
	h2, b2, p2, _ := htbClass(t, tb, "5Mbit")
	if h2 != handle || b2 < b1 || p2-p1 > 5 {
		t.Fatalf("non-ON traffic reached the ON class (%s: %d→%d pkts); or the class changed (%s→%s)", handle, p1, p2, handle, h2)
	}
	if b1 <= b0 {
		t.Fatalf("ON class byte counter did not grow: %d → %d", b0, b1)
	}

	// Status reports the counters, no drift.
	p, ok := status1(t, r, id)
	if !ok || len(p.GetDrift()) > 0 || len(p.GetCounters()) != 1 || p.GetCounters()[0].GetPackets() < sent.Packets*9/10 {
		t.Fatalf("status: %v", p)
	}
	// Metrics: per-ON counters from Observe and 2PC calls by outcome.
	mresp, err := http.Get("http://" + r.a.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{
		`von_agent_on_bytes_total{interface="eth1",on_id="2712847316"}`,
		`von_agent_on_packets_total{interface="eth1",on_id="2712847316"}`,
		`von_agent_rpc_calls_total{method="Prepare",outcome="prepared"} 1`,
		`von_agent_rpc_calls_total{method="Commit",outcome="ok"} 1`,
		`von_agent_partitions{state="committed"} 1`,
		`von_agent_best_effort_packets_total{interface="eth1"}`,
		`von_agent_rpc_seconds_count{method="Commit"} 1`,
		`von_agent_interface_up{interface="eth1"} 1`,
		`von_agent_partition_lease_remaining_seconds `,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// Retried 2PC calls return their first outcome; presumed abort; fencing.
func TestIdempotencyPresumedAbortAndFencing(t *testing.T) {
	tb := bed(t)
	r := startAgent(t, tb, t.TempDir(), nil)
	ctx := ctxT(t)
	sp := spec(7, 4_000_000, time.Minute)

	for range 2 {
		if v := prepare(t, r, "t7", 3, sp, 5*time.Second); v.GetVote() != vonv1.Vote_VOTE_PREPARED {
			t.Fatalf("vote %v: %s", v.GetVote(), v.GetReason())
		}
	}
	first := commit(t, r, "t7", 3, 7)
	again := commit(t, r, "t7", 3, 7)
	if first.GetAlreadyCommitted() || !again.GetAlreadyCommitted() {
		t.Fatalf("commit, retry: %v, %v", first, again)
	}
	if v := prepare(t, r, "t7", 3, sp, 5*time.Second); v.GetVote() != vonv1.Vote_VOTE_PREPARED {
		t.Fatalf("Prepare retry after commit: %v", v)
	}
	if _, _, _, ok := htbClass(t, tb, "4Mbit"); !ok {
		t.Fatal("class missing")
	}
	_, err := r.c.Abort(ctx, &vonv1.AgentServiceAbortRequest{TxnId: "t7", LeaderEpoch: 3, OnId: 7})
	wantCode(t, err, codes.FailedPrecondition, "committed")
	_, err = r.c.Commit(ctx, &vonv1.AgentServiceCommitRequest{TxnId: "never", LeaderEpoch: 3, OnId: 9})
	wantCode(t, err, codes.NotFound, "Sync")

	// Abort of an unknown txn succeeds; a Prepare arriving after it is refused.
	ab, err := r.c.Abort(ctx, &vonv1.AgentServiceAbortRequest{TxnId: "t8", LeaderEpoch: 3, OnId: 8})
	if err != nil || ab.GetDropped() {
		t.Fatalf("abort unknown: %v %v", ab, err)
	}
	if v := prepare(t, r, "t8", 3, spec(8, 1_000_000, time.Minute), time.Second); v.GetVote() != vonv1.Vote_VOTE_REFUSED {
		t.Fatalf("late Prepare after Abort voted %v", v.GetVote())
	}
	// Prepare → Abort → Abort retry: both say dropped; Commit then conflicts.
	if v := prepare(t, r, "t9", 3, spec(9, 1_000_000, time.Minute), 5*time.Second); v.GetVote() != vonv1.Vote_VOTE_PREPARED {
		t.Fatal(v)
	}
	for range 2 {
		ab, err := r.c.Abort(ctx, &vonv1.AgentServiceAbortRequest{TxnId: "t9", LeaderEpoch: 3, OnId: 9})
		if err != nil || !ab.GetDropped() {
			t.Fatalf("abort t9: %v %v", ab, err)
		}
	}
	_, err = r.c.Commit(ctx, &vonv1.AgentServiceCommitRequest{TxnId: "t9", LeaderEpoch: 3, OnId: 9})
	wantCode(t, err, codes.FailedPrecondition, "abort")

	// Fencing: a lower epoch is refused on every mutating call; nothing changes.
	_, err = r.c.Release(ctx, &vonv1.AgentServiceReleaseRequest{TxnId: "r-old", LeaderEpoch: 2, OnId: 7})
	wantCode(t, err, codes.FailedPrecondition, "leader_epoch 2")
	_, err = r.c.Prepare(ctx, &vonv1.AgentServicePrepareRequest{TxnId: "old", LeaderEpoch: 2, Partition: sp})
	wantCode(t, err, codes.FailedPrecondition, "newer manager leader")
	_, err = r.c.Refresh(ctx, &vonv1.AgentServiceRefreshRequest{LeaderEpoch: 1, OnIds: []uint32{7}})
	wantCode(t, err, codes.FailedPrecondition, "stale")
	_, err = r.c.Sync(ctx, &vonv1.AgentServiceSyncRequest{LeaderEpoch: 0})
	wantCode(t, err, codes.FailedPrecondition, "stale")
	if _, _, _, ok := htbClass(t, tb, "4Mbit"); !ok {
		t.Fatal("a stale leader removed the class")
	}
	// A newer epoch is accepted and becomes the floor.
	if _, err := r.c.Refresh(ctx, &vonv1.AgentServiceRefreshRequest{LeaderEpoch: 5, OnIds: []uint32{7}}); err != nil {
		t.Fatal(err)
	}
	_, err = r.c.Abort(ctx, &vonv1.AgentServiceAbortRequest{TxnId: "x", LeaderEpoch: 4})
	wantCode(t, err, codes.FailedPrecondition, "stale")

	// Release, retried, then a new release of the same ON.
	for range 2 {
		rel, err := r.c.Release(ctx, &vonv1.AgentServiceReleaseRequest{TxnId: "rel-7", LeaderEpoch: 5, OnId: 7})
		if err != nil || !rel.GetRemoved() {
			t.Fatalf("release: %v %v", rel, err)
		}
	}
	rel, err := r.c.Release(ctx, &vonv1.AgentServiceReleaseRequest{TxnId: "rel-7b", LeaderEpoch: 5, OnId: 7})
	if err != nil || rel.GetRemoved() {
		t.Fatalf("second release: %v %v", rel, err)
	}
	if q := tcShow(t, tb, "qdisc"); strings.Contains(q, "htb 7656") {
		t.Fatalf("release left our qdisc:\n%s", q)
	}
	// Malformed input is INVALID_ARGUMENT, never a panic.
	for _, bad := range []*vonv1.AgentServicePrepareRequest{
		{TxnId: "", LeaderEpoch: 5, Partition: sp},
		{TxnId: "b1", LeaderEpoch: 5},
		{TxnId: "b2", LeaderEpoch: 5, Partition: &vonv1.PartitionSpec{OnId: 0}},
		{TxnId: "b3", LeaderEpoch: 5, Partition: &vonv1.PartitionSpec{OnId: 3, Classes: []*vonv1.InterfaceClass{{Interface: "eth1", RateBps: 9e9, CapacityBps: 1e6}}}},
		{TxnId: "b4", LeaderEpoch: 5, Partition: &vonv1.PartitionSpec{OnId: 3, Pins: []*vonv1.PinningEntry{{Destination: "nope", EgressInterface: "eth1"}}}},
		{TxnId: "b5", LeaderEpoch: 5, Partition: sp, HoldTtl: &durationpb.Duration{Seconds: -1}},
	} {
		_, err := r.c.Prepare(ctx, bad)
		wantCode(t, err, codes.InvalidArgument, "")
	}
}

// Prepare refuses what the router cannot enforce, with a reason that says why.
func TestPrepareRefusesWithReason(t *testing.T) {
	tb := bed(t)
	r := startAgent(t, tb, t.TempDir(), func(c *Config) { c.Interfaces = []string{"eth0", "eth1"} })
	install(t, r, "a", 1, spec(1, 15_000_000, time.Minute))

	v := prepare(t, r, "b", 1, spec(2, 10_000_000, time.Minute), time.Second)
	if v.GetVote() != vonv1.Vote_VOTE_REFUSED || v.GetReason() != "eth1: 15Mbit reserved of 20Mbit, cannot add 10Mbit" {
		t.Fatalf("over capacity: %v %q", v.GetVote(), v.GetReason())
	}
	// Held capacity counts too: 4 Mbit fits once, not twice.
	if v := prepare(t, r, "c", 1, spec(3, 4_000_000, time.Minute), 5*time.Second); v.GetVote() != vonv1.Vote_VOTE_PREPARED {
		t.Fatalf("4 Mbit: %v %s", v.GetVote(), v.GetReason())
	}
	if v := prepare(t, r, "d", 1, spec(4, 4_000_000, time.Minute), time.Second); v.GetVote() != vonv1.Vote_VOTE_REFUSED ||
		!strings.Contains(v.GetReason(), "19Mbit reserved of 20Mbit") {
		t.Fatalf("second 4 Mbit: %v %q", v.GetVote(), v.GetReason())
	}
	// A retry of the refused Prepare returns the same refusal.
	if v2 := prepare(t, r, "b", 1, spec(2, 10_000_000, time.Minute), time.Second); v2.GetReason() != "eth1: 15Mbit reserved of 20Mbit, cannot add 10Mbit" {
		t.Fatalf("retry: %q", v2.GetReason())
	}
	missing := spec(5, 1_000_000, time.Minute)
	missing.Classes[0].Interface = "eth9"
	if v := prepare(t, r, "e", 1, missing, time.Second); v.GetVote() != vonv1.Vote_VOTE_REFUSED || v.GetReason() != "eth9: no such interface" {
		t.Fatalf("missing interface: %v %q", v.GetVote(), v.GetReason())
	}
	unmanaged := spec(9, 1_000_000, time.Minute)
	unmanaged.Classes[0].Interface = "lo"
	if v := prepare(t, r, "u", 1, unmanaged, time.Second); v.GetVote() != vonv1.Vote_VOTE_REFUSED || v.GetReason() != "lo is not managed" {
		t.Fatalf("unmanaged interface: %v %q", v.GetVote(), v.GetReason())
	}
	// A foreign root qdisc is not clobbered.
	if _, err := tb.Exec(ctxT(t), "r1", "tc", "qdisc", "add", "dev", "eth0", "root", "handle", "8001:", "tbf", "rate", "100mbit", "burst", "32k", "latency", "50ms"); err != nil {
		t.Fatal(err)
	}
	foreign := spec(6, 1_000_000, time.Minute)
	foreign.Classes[0].Interface = "eth0"
	if v := prepare(t, r, "f", 1, foreign, time.Second); v.GetVote() != vonv1.Vote_VOTE_REFUSED || !strings.Contains(v.GetReason(), "foreign root qdisc tbf 8001: on eth0") {
		t.Fatalf("foreign qdisc: %v %q", v.GetVote(), v.GetReason())
	}
	// A down interface and a mismatched codepoint are refused too.
	if _, err := tb.Exec(ctxT(t), "r1", "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	// The agent learns of the link change from a netlink event (its interface
	// list is cached): a Prepare sent at once may still see eth0 up, so ask
	// again (a fresh ON each time) until the event has arrived.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		down := spec(uint32(70+i), 1_000_000, time.Minute)
		down.Pins = []*vonv1.PinningEntry{{PathIndex: 0, Destination: "10.77.2.1", EgressInterface: "eth0"}}
		v := prepare(t, r, fmt.Sprintf("g%d", i), 1, down, time.Second)
		if v.GetVote() == vonv1.Vote_VOTE_REFUSED && strings.Contains(v.GetReason(), "eth0 is down") {
			break
		}
		if v.GetVote() == vonv1.Vote_VOTE_REFUSED || time.Now().After(deadline) {
			t.Fatalf("down interface: %v %q", v.GetVote(), v.GetReason())
		}
		time.Sleep(50 * time.Millisecond)
	}
	other := spec(8, 1_000_000, time.Minute)
	other.Classification.Dscp = 46
	if v := prepare(t, r, "h", 1, other, time.Second); v.GetVote() != vonv1.Vote_VOTE_REFUSED || !strings.Contains(v.GetReason(), "dscp 46") {
		t.Fatalf("dscp mismatch: %v %q", v.GetVote(), v.GetReason())
	}
}

// A hold without a decision is dropped after hold_ttl (presumed abort).
func TestPreparedHoldExpires(t *testing.T) {
	tb := bed(t)
	r := startAgent(t, tb, t.TempDir(), nil)
	if v := prepare(t, r, "h", 1, spec(11, 15_000_000, time.Minute), 300*time.Millisecond); v.GetVote() != vonv1.Vote_VOTE_PREPARED {
		t.Fatal(v)
	}
	st, err := r.c.Status(ctxT(t), &vonv1.AgentServiceStatusRequest{})
	if err != nil || len(st.GetPartitions()) != 1 || st.GetPartitions()[0].GetState() != vonv1.PartitionState_PARTITION_STATE_PREPARED {
		t.Fatalf("status with a hold: %v %v", st, err)
	}
	eventually(t, 2*time.Second, "hold dropped", func() bool {
		st, err := r.c.Status(ctxT(t), &vonv1.AgentServiceStatusRequest{})
		return err == nil && len(st.GetPartitions()) == 0
	})
	_, err = r.c.Commit(ctxT(t), &vonv1.AgentServiceCommitRequest{TxnId: "h", LeaderEpoch: 1, OnId: 11})
	wantCode(t, err, codes.NotFound, "re-drive")
	// The held capacity is free again.
	if v := prepare(t, r, "h2", 1, spec(12, 15_000_000, time.Minute), time.Second); v.GetVote() != vonv1.Vote_VOTE_PREPARED {
		t.Fatalf("capacity not released: %v", v)
	}
	if v := prepare(t, r, "h", 1, spec(11, 15_000_000, time.Minute), time.Second); v.GetVote() != vonv1.Vote_VOTE_REFUSED {
		t.Fatalf("Prepare retry of an expired hold: %v", v)
	}
}

// The failsafe removes a partition whose lease runs out unrefreshed, but a
// gap shorter than the lease changes nothing.
func TestLeaseFailsafe(t *testing.T) {
	tb := bed(t)
	reg := startRegistry(t)
	r := startAgent(t, tb, t.TempDir(), func(c *Config) { c.ManagerAddr = reg.addr })
	ctx := ctxT(t)
	const lease = 1500 * time.Millisecond
	install(t, r, "l", 1, spec(21, 3_000_000, lease))
	handle, _, _, ok := htbClass(t, tb, "3Mbit")
	if !ok {
		t.Fatal("not installed")
	}
	reg.fail.Store(true) // the manager is down; only Refresh keeps the partition
	for i := range 5 {
		time.Sleep(lease / 2)
		resp, err := r.c.Refresh(ctx, &vonv1.AgentServiceRefreshRequest{LeaderEpoch: 1, OnIds: []uint32{21, 99}, LeaseTtl: durationpb.New(lease)})
		if err != nil || len(resp.GetUnknownOnIds()) != 1 || resp.GetUnknownOnIds()[0] != 99 {
			t.Fatalf("refresh %d: %v %v", i, resp, err)
		}
	}
	if h, _, _, ok := htbClass(t, tb, "3Mbit"); !ok || h != handle {
		t.Fatalf("partition disturbed during refreshed outage: %v %s→%s", ok, handle, h)
	}
	start := time.Now()
	eventually(t, lease+2*time.Second, "expired partition removed", func() bool {
		return !strings.Contains(tcShow(t, tb, "qdisc"), "htb 7656")
	})
	if el := time.Since(start); el < lease/2 {
		t.Fatalf("removed after %v, before the lease (%v) ran out", el, lease)
	}
	if c := tcShow(t, tb, "class"); strings.TrimSpace(c) != "" {
		t.Fatalf("classes left:\n%s", c)
	}
	resp, err := r.c.Refresh(ctx, &vonv1.AgentServiceRefreshRequest{LeaderEpoch: 1, OnIds: []uint32{21}})
	if err != nil || len(resp.GetUnknownOnIds()) != 1 {
		t.Fatalf("refresh after expiry: %v %v", resp, err)
	}
}

// One Refresh naming very many ids (unknown and repeated) is answered at once:
// the agent's lock, which 2PC, the watchdog and heartbeats share, is held for
// one lookup per distinct id.
func TestRefreshManyIDs(t *testing.T) {
	tb := bed(t)
	r := startAgent(t, tb, t.TempDir(), nil)
	install(t, r, "m", 1, spec(21, 3_000_000, 10*time.Second))
	ids := make([]uint32, 0, 600_000)
	for i := range uint32(300_000) {
		ids = append(ids, 1000+i, 1000+i) // every unknown id twice
	}
	ids = append(ids, 21)
	start := time.Now()
	resp, err := r.c.Refresh(ctxT(t), &vonv1.AgentServiceRefreshRequest{LeaderEpoch: 1, OnIds: ids})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetUnknownOnIds()); n != 300_000 {
		t.Fatalf("%d unknown ids, want 300000 (each once)", n)
	}
	if took > 5*time.Second {
		t.Fatalf("Refresh of %d ids took %v", len(ids), took)
	}
	t.Logf("Refresh of %d ids: %v", len(ids), took)
}

// Refused Prepares do not push the outcomes retries rely on out of the bounded
// history: after many refusals a retried Commit still answers already committed.
func TestRefusalsKeepHistory(t *testing.T) {
	tb := bed(t)
	r := startAgent(t, tb, t.TempDir(), func(c *Config) { c.HistorySize = 16 })
	install(t, r, "keep", 1, spec(21, 3_000_000, 30*time.Second))
	bad := spec(22, 3_000_000, 30*time.Second)
	bad.Classes[0].Interface = "eth9"
	for i := range 40 {
		if v := prepare(t, r, fmt.Sprintf("refused-%d", i), 1, bad, time.Second); v.GetVote() != vonv1.Vote_VOTE_REFUSED {
			t.Fatalf("prepare on a missing interface: %v", v)
		}
	}
	if c := commit(t, r, "keep", 1, 21); !c.GetAlreadyCommitted() {
		t.Fatal("a retried commit is not recognised after 40 refusals")
	}
}
