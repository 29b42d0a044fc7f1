package agent

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vonproject/von/e2e/testbed"
	"github.com/vonproject/von/internal/testenv"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var h2Addr = netip.MustParseAddr("10.77.2.2")

// bed builds the h1 — r1 ══ r2 — h2 testbed; it is removed when the test ends.
func bed(t *testing.T) *testbed.Testbed {
	t.Helper()
	testenv.RequireRoot(t, "CAP_NET_ADMIN, to build the testbed's network namespaces")
	return testbed.New(t, testbed.Load(t, "testdata/line.yaml"), testbed.Options{})
}

// registry is an in-test AgentRegistryService: it records registrations and
// answers with a configurable desired state.
type registry struct {
	vonv1.UnimplementedAgentRegistryServiceServer
	mu    sync.Mutex
	reqs  []*vonv1.AgentRegistryServiceRegisterRequest
	resp  *vonv1.AgentRegistryServiceRegisterResponse
	fail  atomic.Bool
	addr  string
	calls atomic.Int64
}

func (r *registry) Register(ctx context.Context, req *vonv1.AgentRegistryServiceRegisterRequest) (*vonv1.AgentRegistryServiceRegisterResponse, error) {
	r.calls.Add(1)
	if r.fail.Load() {
		return nil, status.Error(codes.Unavailable, "test manager is down")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, proto.Clone(req).(*vonv1.AgentRegistryServiceRegisterRequest))
	if r.resp == nil {
		return &vonv1.AgentRegistryServiceRegisterResponse{}, nil
	}
	return proto.Clone(r.resp).(*vonv1.AgentRegistryServiceRegisterResponse), nil
}

func (r *registry) set(resp *vonv1.AgentRegistryServiceRegisterResponse) {
	r.mu.Lock()
	r.resp = resp
	r.mu.Unlock()
}

func (r *registry) requests() []*vonv1.AgentRegistryServiceRegisterRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*vonv1.AgentRegistryServiceRegisterRequest(nil), r.reqs...)
}

func startRegistry(t *testing.T) *registry {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &registry{addr: lis.Addr().String()}
	srv := grpc.NewServer()
	vonv1.RegisterAgentRegistryServiceServer(srv, r)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return r
}

// running is an agent started in-process for r1 plus a client to it.
type running struct {
	a      *Agent
	c      vonv1.AgentServiceClient
	cancel context.CancelFunc
	done   chan error
	conn   *grpc.ClientConn
	once   sync.Once
}

// stop ends Run (partitions stay installed) and closes the client.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("agent did not stop within 15 s")
		}
		r.conn.Close()
	})
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return nil
}

// startAgent runs an agent for r1 of tb with state in dir. mod adjusts the config.
func startAgent(t *testing.T, tb *testbed.Testbed, dir string, mod func(*Config)) *running {
	t.Helper()
	ns := ""
	if tb != nil {
		ns = tb.Namespace("r1")
	}
	cfg := Config{
		Insecure: true,
		Node:     "r1", Netns: ns, StateDir: dir, ListenAddr: "127.0.0.1:0",
		Logger: testLogger(t), Version: "test",
		WatchInterval: 100 * time.Millisecond, RegisterInterval: 200 * time.Millisecond, RegisterTimeout: time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	r.conn, err = grpc.NewClient(a.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	r.c = vonv1.NewAgentServiceClient(r.conn)
	t.Cleanup(func() { r.stop(t) })
	return r
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func prepare(t *testing.T, r *running, txn string, epoch uint64, sp *vonv1.PartitionSpec, hold time.Duration) *vonv1.AgentServicePrepareResponse {
	t.Helper()
	resp, err := r.c.Prepare(ctxT(t), &vonv1.AgentServicePrepareRequest{TxnId: txn, LeaderEpoch: epoch, Partition: sp, HoldTtl: durationpb.New(hold)})
	if err != nil {
		t.Fatalf("Prepare %s: %v", txn, err)
	}
	return resp
}

func commit(t *testing.T, r *running, txn string, epoch uint64, id uint32) *vonv1.AgentServiceCommitResponse {
	t.Helper()
	resp, err := r.c.Commit(ctxT(t), &vonv1.AgentServiceCommitRequest{TxnId: txn, LeaderEpoch: epoch, OnId: id})
	if err != nil {
		t.Fatalf("Commit %s: %v", txn, err)
	}
	return resp
}

// install prepares and commits sp under txn.
func install(t *testing.T, r *running, txn string, epoch uint64, sp *vonv1.PartitionSpec) {
	t.Helper()
	if v := prepare(t, r, txn, epoch, sp, 5*time.Second); v.GetVote() != vonv1.Vote_VOTE_PREPARED {
		t.Fatalf("Prepare %s: %v %s", txn, v.GetVote(), v.GetReason())
	}
	commit(t, r, txn, epoch, sp.GetOnId())
}

func wantCode(t *testing.T, err error, code codes.Code, contains string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	if !strings.Contains(status.Convert(err).Message(), contains) {
		t.Fatalf("error %q does not say %q", status.Convert(err).Message(), contains)
	}
}

func tcShow(t *testing.T, tb *testbed.Testbed, what string) string {
	t.Helper()
	out, err := tb.Exec(ctxT(t), "r1", "tc", "-s", what, "show", "dev", "eth1")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var classRE = regexp.MustCompile(`(?m)^class htb (\S+) .*rate (\S+) ceil (\S+).*\n\s*Sent (\d+) bytes (\d+) pkt`)

// htbClass finds the HTB class on r1:eth1 with rate = ceil = rate and returns
// its handle and its byte and packet counters.
func htbClass(t *testing.T, tb *testbed.Testbed, rate string) (handle string, bytes, pkts uint64, ok bool) {
	t.Helper()
	for _, m := range classRE.FindAllStringSubmatch(tcShow(t, tb, "class"), -1) {
		if m[2] == rate && m[3] == rate {
			b, _ := strconv.ParseUint(m[4], 10, 64)
			p, _ := strconv.ParseUint(m[5], 10, 64)
			return m[1], b, p, true
		}
	}
	return "", 0, 0, false
}

// sendON sends n ON packets of on id from h1 to h2 (DSCP 44, port 4750); tos
// 0 sends the same payload as best effort.
func sendON(t *testing.T, tb *testbed.Testbed, id uint32, n int, tos int) testbed.SendStats {
	t.Helper()
	st, err := tb.Send(ctxT(t), "h1", testbed.Flow{
		Dst: netip.AddrPortFrom(h2Addr, onPort), Rate: 2_000_000, Size: 200, MaxPackets: n, Duration: 5 * time.Second, TOS: tos,
		Fill: func(seq uint64, buf []byte) {
			binary.BigEndian.PutUint32(buf, id)
			buf[4] = 0x10 // version 1
			binary.BigEndian.PutUint64(buf[8:], seq)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// eventually polls cond every 50 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func status1(t *testing.T, r *running, id uint32) (*vonv1.PartitionStatus, bool) {
	t.Helper()
	st, err := r.c.Status(ctxT(t), &vonv1.AgentServiceStatusRequest{OnIds: []uint32{id}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.GetPartitions() {
		if p.GetOnId() == id && p.GetState() == vonv1.PartitionState_PARTITION_STATE_COMMITTED {
			return p, true
		}
	}
	return nil, false
}
