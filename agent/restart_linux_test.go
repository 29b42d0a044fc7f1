package agent

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// A restarted agent (same state dir) leaves installed partitions untouched:
// the ON's HTB class is not re-created, its counters keep growing. Leases
// that ran out while it was down are removed; holds survive.
func TestRestartKeepsPartitionsUntouched(t *testing.T) {
	tb := bed(t)
	dir := t.TempDir()
	r := startAgent(t, tb, dir, nil)
	install(t, r, "keep", 4, spec(31, 5_000_000, time.Minute))
	sent := sendON(t, tb, 31, 200, 0xB0)
	handle, b1, p1, ok := htbClass(t, tb, "5Mbit")
	if !ok || p1 < sent.Packets*9/10 {
		t.Fatalf("before restart: class %v, %d of %d packets", ok, p1, sent.Packets)
	}
	if v := prepare(t, r, "hold", 4, spec(33, 1_000_000, time.Minute), 20*time.Second); v.GetVote() != vonv1.Vote_VOTE_PREPARED {
		t.Fatal(v)
	}
	install(t, r, "short", 4, spec(32, 2_000_000, 700*time.Millisecond))
	r.stop(t)
	stopped := time.Now()

	if h, b, _, ok := htbClass(t, tb, "5Mbit"); !ok || h != handle || b < b1 {
		t.Fatalf("stopping the agent disturbed the partition: %v %s→%s %d→%d", ok, handle, h, b1, b)
	}
	time.Sleep(time.Second - time.Since(stopped)) // ON 32's lease runs out while the agent is down

	r2 := startAgent(t, tb, dir, nil)
	st, err := r2.c.Status(ctxT(t), &vonv1.AgentServiceStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetLeaderEpoch() != 4 {
		t.Fatalf("epoch after restart %d, want 4", st.GetLeaderEpoch())
	}
	var got []string
	for _, p := range st.GetPartitions() {
		got = append(got, p.GetState().String()+":"+p.GetTxnId())
	}
	if !slices.Equal(got, []string{"PARTITION_STATE_COMMITTED:keep", "PARTITION_STATE_PREPARED:hold"}) {
		t.Fatalf("partitions after restart: %v", got)
	}
	if _, _, _, ok := htbClass(t, tb, "2Mbit"); ok {
		t.Fatal("partition whose lease ran out during the restart is still installed")
	}
	h2, b2, p2, ok := htbClass(t, tb, "5Mbit")
	if !ok || h2 != handle || b2 < b1 || p2 < p1 {
		t.Fatalf("restart re-created or reset the class: %s→%s bytes %d→%d", handle, h2, b1, b2)
	}
	sent2 := sendON(t, tb, 31, 200, 0xB0)
	eventually(t, 3*time.Second, "counter keeps growing across the restart", func() bool {
		h, _, p, ok := htbClass(t, tb, "5Mbit")
		return ok && h == handle && p >= p2+sent2.Packets*9/10
	})
	// The journal carried the txn outcomes, the epoch and the hold.
	if c := commit(t, r2, "keep", 4, 31); !c.GetAlreadyCommitted() {
		t.Fatalf("commit retry after restart: %v", c)
	}
	_, err = r2.c.Commit(ctxT(t), &vonv1.AgentServiceCommitRequest{TxnId: "keep", LeaderEpoch: 3, OnId: 31})
	wantCode(t, err, codes.FailedPrecondition, "stale")
	if c := commit(t, r2, "hold", 4, 33); c.GetAlreadyCommitted() {
		t.Fatalf("commit of a hold made before the restart: %v", c)
	}
	if _, _, _, ok := htbClass(t, tb, "1Mbit"); !ok {
		t.Fatal("hold prepared before the restart did not install on commit")
	}
}

// The agent registers with its interfaces and addresses, converges to the
// desired state Register returns, heartbeats, and after a manager outage
// resolves in-doubt holds and removes orphans from the answer.
func TestRegisterConvergesAndResolvesHolds(t *testing.T) {
	tb := bed(t)
	reg := startRegistry(t)
	reg.set(&vonv1.AgentRegistryServiceRegisterResponse{LeaderEpoch: 9, Partitions: []*vonv1.PartitionSpec{spec(41, 2_000_000, time.Minute)}})
	r := startAgent(t, tb, t.TempDir(), func(c *Config) { c.ManagerAddr = reg.addr })

	eventually(t, 5*time.Second, "desired partition from Register installed", func() bool {
		_, _, _, ok := htbClass(t, tb, "2Mbit")
		return ok
	})
	req := reg.requests()[0]
	if req.GetNode() != "r1" || req.GetEndpoint() != r.a.Addr().String() || req.GetVersion() != "test" {
		t.Fatalf("register request: %v", req)
	}
	names := map[string]*vonv1.Interface{}
	for _, i := range req.GetInterfaces() {
		names[i.GetName()] = i
	}
	for _, n := range []string{"eth0", "eth1"} {
		i := names[n]
		if i == nil || !i.GetUp() || !i.GetManaged() || i.GetMtu() == 0 || len(i.GetAddresses()) == 0 {
			t.Fatalf("interface %s in register request: %v", n, i)
		}
		p, err := netip.ParsePrefix(i.GetAddresses()[0])
		if err != nil || !netip.MustParsePrefix("10.77.128.0/17").Contains(p.Addr()) {
			t.Fatalf("%s address %v", n, i.GetAddresses())
		}
	}
	if _, ok := names["lo"]; ok {
		t.Fatal("loopback reported")
	}
	_, err := r.c.Prepare(ctxT(t), &vonv1.AgentServicePrepareRequest{TxnId: "x", LeaderEpoch: 8, Partition: spec(40, 1e6, time.Minute)})
	wantCode(t, err, codes.FailedPrecondition, "leader_epoch 8")
	n := reg.calls.Load()
	eventually(t, 3*time.Second, "heartbeat registrations", func() bool { return reg.calls.Load() >= n+3 })

	// Manager outage: the agent keeps serving; meanwhile the (new) leader
	// commits 42 here, and 43 and 44 end up prepared but undecided.
	reg.fail.Store(true)
	n = reg.calls.Load()
	eventually(t, 3*time.Second, "failed registrations", func() bool { return reg.calls.Load() >= n+2 })
	install(t, r, "t42", 9, spec(42, 1_000_000, time.Minute))
	for _, h := range []struct {
		txn string
		id  uint32
	}{{"t43", 43}, {"t44", 44}} {
		if v := prepare(t, r, h.txn, 9, spec(h.id, uint64(h.id-40)*1_000_000, time.Minute), time.Minute); v.GetVote() != vonv1.Vote_VOTE_PREPARED {
			t.Fatal(v)
		}
	}
	// Back: the committed state lists 41 and 43 (committed by the manager while
	// the agent was unreachable); 42 is an orphan, 44 was never committed.
	reg.set(&vonv1.AgentRegistryServiceRegisterResponse{LeaderEpoch: 10, Partitions: []*vonv1.PartitionSpec{
		spec(41, 2_000_000, time.Minute), spec(43, 3_000_000, time.Minute)}})
	reg.fail.Store(false)
	eventually(t, 5*time.Second, "converged after the outage", func() bool {
		_, _, _, has42 := htbClass(t, tb, "1Mbit")
		_, _, _, has43 := htbClass(t, tb, "3Mbit")
		return !has42 && has43
	})
	if c := commit(t, r, "t43", 10, 43); !c.GetAlreadyCommitted() {
		t.Fatalf("hold listed as committed by Register: commit says %v", c)
	}
	_, err = r.c.Commit(ctxT(t), &vonv1.AgentServiceCommitRequest{TxnId: "t44", LeaderEpoch: 10, OnId: 44})
	wantCode(t, err, codes.FailedPrecondition, "aborted")
	_, err = r.c.Refresh(ctxT(t), &vonv1.AgentServiceRefreshRequest{LeaderEpoch: 9})
	wantCode(t, err, codes.FailedPrecondition, "stale")
}

// Sync converges to the complete list: installs, updates and removes.
func TestSyncConverges(t *testing.T) {
	tb := bed(t)
	r := startAgent(t, tb, t.TempDir(), func(c *Config) { c.ReconcileInterval = 500 * time.Millisecond })
	ctx := ctxT(t)
	install(t, r, "a", 1, spec(51, 2_000_000, time.Minute))
	install(t, r, "b", 1, spec(52, 3_000_000, time.Minute))
	handle52, _, _, _ := htbClass(t, tb, "3Mbit")

	resp, err := r.c.Sync(ctx, &vonv1.AgentServiceSyncRequest{LeaderEpoch: 2, Partitions: []*vonv1.PartitionSpec{
		spec(52, 6_000_000, time.Minute), spec(53, 1_000_000, time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.GetInstalledOnIds(), []uint32{53}) || !slices.Equal(resp.GetUpdatedOnIds(), []uint32{52}) ||
		!slices.Equal(resp.GetRemovedOnIds(), []uint32{51}) {
		t.Fatalf("sync: %v", resp)
	}
	h, _, _, ok := htbClass(t, tb, "6Mbit")
	if !ok || h != handle52 {
		t.Fatalf("updated ON 52 should keep its class %s, got %v %s", handle52, ok, h)
	}
	if _, _, _, ok := htbClass(t, tb, "2Mbit"); ok {
		t.Fatal("orphan 51 still installed")
	}
	resp, err = r.c.Sync(ctx, &vonv1.AgentServiceSyncRequest{LeaderEpoch: 2, Partitions: []*vonv1.PartitionSpec{
		spec(52, 6_000_000, time.Minute), spec(53, 1_000_000, time.Minute)}})
	if err != nil || len(resp.GetInstalledOnIds())+len(resp.GetUpdatedOnIds())+len(resp.GetRemovedOnIds()) != 0 {
		t.Fatalf("repeated sync changed something: %v %v", resp, err)
	}
	_, err = r.c.Sync(ctx, &vonv1.AgentServiceSyncRequest{LeaderEpoch: 2, Partitions: []*vonv1.PartitionSpec{
		spec(52, 6_000_000, time.Minute), spec(52, 1_000_000, time.Minute)}})
	wantCode(t, err, codes.InvalidArgument, "twice")

	// An ON the router cannot enforce does not block the others; Status says why.
	bad := spec(54, 1_000_000, time.Minute)
	bad.Classes[0].Interface = "eth9"
	resp, err = r.c.Sync(ctx, &vonv1.AgentServiceSyncRequest{LeaderEpoch: 2, Partitions: []*vonv1.PartitionSpec{
		spec(52, 6_000_000, time.Minute), bad, spec(55, 1_500_000, time.Minute)}})
	if err != nil || !slices.Equal(resp.GetInstalledOnIds(), []uint32{55}) || !slices.Equal(resp.GetRemovedOnIds(), []uint32{53}) {
		t.Fatalf("sync with an unenforceable ON: %v %v", resp, err)
	}
	if _, _, _, ok := htbClass(t, tb, "1500Kbit"); !ok {
		t.Fatalf("ON 55 not installed:\n%s", tcShow(t, tb, "class"))
	}
	p, ok := status1(t, r, 54)
	if !ok || len(p.GetDrift()) == 0 || !strings.Contains(p.GetDrift()[0], "eth9: no such interface") {
		t.Fatalf("status of an unenforceable ON: %v", p)
	}
	// Drift made by hand is repaired by the reconciler.
	if _, err := tb.Exec(ctx, "r1", "tc", "class", "change", "dev", "eth1", "parent", "7656:1", "classid", handle52, "htb", "rate", "1mbit", "ceil", "1mbit"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, ok := htbClass(t, tb, "6Mbit"); ok {
		t.Fatal("hand-made drift did not take")
	}
	eventually(t, 3*time.Second, "drift repaired", func() bool {
		_, _, _, ok := htbClass(t, tb, "6Mbit")
		return ok
	})
}
