package agent

import (
	"math"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vonproject/von/internal/rpcconn"
	"github.com/vonproject/von/pki"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

func agentState(t *testing.T, r *running) (cluster string, epoch uint64) {
	t.Helper()
	st, err := r.c.Status(ctxT(t), &vonv1.AgentServiceStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return st.GetClusterId(), st.GetLeaderEpoch()
}

// Epochs are compared within one manager cluster only. An agent follows the
// cluster it registered with and refuses calls from any other, whatever their
// epoch; it moves to a cluster created later (etcd rebuilt from scratch, whose
// revisions start low again) when it registers with one, and never back.
func TestEpochsBelongToOneCluster(t *testing.T) {
	tb := bed(t)
	reg := startRegistry(t)
	t1 := time.Now().Add(-time.Hour)
	reg.set(&vonv1.AgentRegistryServiceRegisterResponse{ClusterId: "old", ClusterCreateTime: timestamppb.New(t1), LeaderEpoch: 1000})
	dir := t.TempDir()
	r := startAgent(t, tb, dir, func(c *Config) { c.ManagerAddr = reg.addr })
	eventually(t, 5*time.Second, "agent follows cluster old", func() bool { c, e := agentState(t, r); return c == "old" && e == 1000 })
	sp := spec(21, 3_000_000, 30*time.Second)
	if v, err := r.c.Prepare(ctxT(t), &vonv1.AgentServicePrepareRequest{TxnId: "t1", ClusterId: "old", LeaderEpoch: 1000, Partition: sp,
		HoldTtl: durationpb.New(5 * time.Second)}); err != nil || v.GetVote() != vonv1.Vote_VOTE_PREPARED {
		t.Fatalf("prepare: %v %v", v, err)
	}
	if _, err := r.c.Commit(ctxT(t), &vonv1.AgentServiceCommitRequest{TxnId: "t1", ClusterId: "old", LeaderEpoch: 1000, OnId: 21}); err != nil {
		t.Fatal(err)
	}
	// Another cluster, or none, cannot raise the floor.
	for _, cl := range []string{"other", ""} {
		_, err := r.c.Refresh(ctxT(t), &vonv1.AgentServiceRefreshRequest{ClusterId: cl, LeaderEpoch: math.MaxUint64})
		wantCode(t, err, codes.FailedPrecondition, "follows cluster old")
	}
	if c, e := agentState(t, r); c != "old" || e != 1000 {
		t.Fatalf("after foreign calls: cluster %s epoch %d", c, e)
	}
	// etcd is rebuilt: a new cluster, created later, whose epochs start at 3.
	reg.set(&vonv1.AgentRegistryServiceRegisterResponse{ClusterId: "new", ClusterCreateTime: timestamppb.Now(), LeaderEpoch: 3,
		Partitions: []*vonv1.PartitionSpec{sp}})
	eventually(t, 5*time.Second, "agent moves to cluster new", func() bool { c, e := agentState(t, r); return c == "new" && e == 3 })
	if _, ok := status1(t, r, 21); !ok {
		t.Fatal("the partition the new cluster lists was dropped")
	}
	if _, err := r.c.Refresh(ctxT(t), &vonv1.AgentServiceRefreshRequest{ClusterId: "new", LeaderEpoch: 3, OnIds: []uint32{21}}); err != nil {
		t.Fatalf("refresh from the new cluster: %v", err)
	}
	_, err := r.c.Refresh(ctxT(t), &vonv1.AgentServiceRefreshRequest{ClusterId: "old", LeaderEpoch: 5000})
	wantCode(t, err, codes.FailedPrecondition, "follows cluster new")
	// The old cluster coming back does not win the agent back.
	reg.set(&vonv1.AgentRegistryServiceRegisterResponse{ClusterId: "old", ClusterCreateTime: timestamppb.New(t1), LeaderEpoch: 9000})
	n := reg.calls.Load()
	eventually(t, 5*time.Second, "agent registered again", func() bool { return reg.calls.Load() > n+2 })
	if c, e := agentState(t, r); c != "new" || e != 3 {
		t.Fatalf("an older cluster took the agent back: %s %d", c, e)
	}
	// The cluster is journaled.
	r.stop(t)
	reg.fail.Store(true)
	r = startAgent(t, tb, dir, func(c *Config) { c.ManagerAddr = reg.addr })
	if c, e := agentState(t, r); c != "new" || e != 3 {
		t.Fatalf("after restart: %s %d", c, e)
	}
}

// With TLS only managers drive an agent: a user's or another agent's
// certificate from the same CA cannot call it, let alone raise its epoch.
func TestOnlyManagersDriveAgent(t *testing.T) {
	tb := bed(t)
	dir := t.TempDir()
	if err := pki.Init(dir); err != nil {
		t.Fatal(err)
	}
	mat := func(id pki.Identity) *pki.Material {
		crt, key, err := pki.Issue(dir, pki.IssueRequest{Identity: id})
		if err != nil {
			t.Fatal(err)
		}
		m, err := pki.Load(pki.Files{CA: filepath.Join(dir, pki.CAFile), Cert: crt, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	r := startAgent(t, tb, t.TempDir(), func(c *Config) { c.Insecure, c.TLS = false, mat(pki.Identity{Kind: pki.KindAgent, Name: "r1"}) })
	client := func(id pki.Identity) vonv1.AgentServiceClient {
		conn, err := rpcconn.Dial(r.a.Addr().String(), mat(id), pki.Expect(pki.KindAgent, "r1"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return vonv1.NewAgentServiceClient(conn)
	}
	attack := &vonv1.AgentServiceRefreshRequest{LeaderEpoch: math.MaxUint64}
	for _, id := range []pki.Identity{{Kind: pki.KindUser, Name: "mallory", Admin: true}, {Kind: pki.KindAgent, Name: "r2"}} {
		_, err := client(id).Refresh(ctxT(t), attack)
		wantCode(t, err, codes.PermissionDenied, "AgentService is for managers")
	}
	// Plaintext cannot even connect.
	_, err := r.c.Refresh(ctxT(t), attack, grpc.WaitForReady(false))
	wantCode(t, err, codes.Unavailable, "")
	mgr := client(pki.Identity{Kind: pki.KindManager, Name: "m1"})
	st, err := mgr.Status(ctxT(t), &vonv1.AgentServiceStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetLeaderEpoch() != 0 {
		t.Fatalf("epoch %d after refused calls", st.GetLeaderEpoch())
	}
	if _, err := mgr.Refresh(ctxT(t), &vonv1.AgentServiceRefreshRequest{LeaderEpoch: 7}); err != nil {
		t.Fatalf("a manager's refresh: %v", err)
	}
}

// A registration answer from a deposed leader (an epoch below one the agent has
// seen) is not adopted: its desired state may predate the successor's commits.
func TestStaleRegistrationIgnored(t *testing.T) {
	tb := bed(t)
	reg := startRegistry(t)
	reg.fail.Store(true)
	r := startAgent(t, tb, t.TempDir(), func(c *Config) { c.ManagerAddr = reg.addr })
	install(t, r, "new", 10, spec(21, 3_000_000, 30*time.Second))        // the successor, epoch 10
	reg.set(&vonv1.AgentRegistryServiceRegisterResponse{LeaderEpoch: 5}) // the old leader: nothing committed
	n := reg.calls.Load()
	reg.fail.Store(false)
	eventually(t, 5*time.Second, "agent registered", func() bool { return reg.calls.Load() > n+3 })
	if _, ok := status1(t, r, 21); !ok {
		t.Fatal("a deposed leader's registration answer removed the successor's partition")
	}
}

// A Sync the manager gave up on (timed out) and that reaches the agent late must
// not undo a Commit or Release applied meanwhile: Syncs carry the revision their
// desired state was read at, and one older than an applied change is refused.
func TestLateSyncDoesNotUndo(t *testing.T) {
	tb := bed(t)
	r := startAgent(t, tb, t.TempDir(), nil)
	sp := spec(21, 3_000_000, 30*time.Second)
	if v := prepare(t, r, "c", 1, sp, 5*time.Second); v.GetVote() != vonv1.Vote_VOTE_PREPARED {
		t.Fatal(v)
	}
	if _, err := r.c.Commit(ctxT(t), &vonv1.AgentServiceCommitRequest{TxnId: "c", LeaderEpoch: 1, OnId: 21, StateRevision: 100}); err != nil {
		t.Fatal(err)
	}
	// The late Sync was read at revision 90, before the commit: it lists nothing.
	_, err := r.c.Sync(ctxT(t), &vonv1.AgentServiceSyncRequest{LeaderEpoch: 1, StateRevision: 90})
	wantCode(t, err, codes.FailedPrecondition, "stale Sync")
	if _, ok := status1(t, r, 21); !ok {
		t.Fatal("a late Sync removed a partition committed after it was read")
	}
	// A current Sync is applied.
	if _, err := r.c.Sync(ctxT(t), &vonv1.AgentServiceSyncRequest{LeaderEpoch: 1, StateRevision: 110}); err != nil {
		t.Fatal(err)
	}
	if _, ok := status1(t, r, 21); ok {
		t.Fatal("a current Sync listing nothing kept the partition")
	}
}

// A registration answer read at a revision before a change the agent has
// applied (the manager's index lagged behind its own commit) is not adopted:
// it would remove the partition committed after it was read.
func TestLateRegistrationAnswerDoesNotUndo(t *testing.T) {
	tb := bed(t)
	reg := startRegistry(t)
	reg.fail.Store(true)
	r := startAgent(t, tb, t.TempDir(), func(c *Config) { c.ManagerAddr = reg.addr })
	sp := spec(21, 3_000_000, 30*time.Second)
	if v := prepare(t, r, "c", 1, sp, 5*time.Second); v.GetVote() != vonv1.Vote_VOTE_PREPARED {
		t.Fatal(v)
	}
	if _, err := r.c.Commit(ctxT(t), &vonv1.AgentServiceCommitRequest{TxnId: "c", LeaderEpoch: 1, OnId: 21, StateRevision: 100}); err != nil {
		t.Fatal(err)
	}
	reg.set(&vonv1.AgentRegistryServiceRegisterResponse{LeaderEpoch: 1, StateRevision: 90}) // read before the commit: lists nothing
	n := reg.calls.Load()
	reg.fail.Store(false)
	eventually(t, 5*time.Second, "agent registered", func() bool { return reg.calls.Load() > n+3 })
	if _, ok := status1(t, r, 21); !ok {
		t.Fatal("a registration answer read before a commit removed the committed partition")
	}
	reg.set(&vonv1.AgentRegistryServiceRegisterResponse{LeaderEpoch: 1, StateRevision: 110}) // current: adopted
	reg.fail.Store(true)
	eventually(t, 5*time.Second, "a failed registration", func() bool { return reg.calls.Load() > n+6 })
	reg.fail.Store(false)
	eventually(t, 5*time.Second, "the current answer adopted", func() bool { _, ok := status1(t, r, 21); return !ok })
}
