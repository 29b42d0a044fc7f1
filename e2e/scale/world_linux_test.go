//go:build linux

// Package scale measures the control plane at size: a real etcd process, a
// real von-manager process, and up to a thousand SIMULATED agents in the test
// process (the real agent code over a data plane that installs nothing, see
// agent.Config.Simulate). The kernel path is tested on the testbed (e2e/).
package scale

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/vonproject/von/agent"
	"github.com/vonproject/von/e2e/cluster"
	"github.com/vonproject/von/internal/testenv"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/reservation"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "von-scale-bin")
	if err != nil {
		panic(err)
	}
	if err := cluster.Build(context.Background(), dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// network is a generated topology: routers on a ring with random chords
// (average degree 4), one host on each router, every link end addressed.
type network struct {
	yaml   string
	hosts  []string
	ifaces map[string][]agent.SimulatedInterface // by router
}

func genNetwork(routers int, seed uint64) network {
	rng := rand.New(rand.NewPCG(seed, 1))
	n := network{ifaces: map[string][]agent.SimulatedInterface{}}
	var nodes, links strings.Builder
	nextIf := map[string]int{}
	sub := 0
	addr := func() (string, string) { // a /30 per link in 10.77.0.0/16
		a, b := 4*sub+1, 4*sub+2
		sub++
		return fmt.Sprintf("10.77.%d.%d", a/256, a%256), fmt.Sprintf("10.77.%d.%d", b/256, b%256)
	}
	end := func(node string, ip string, router bool) string {
		i := nextIf[node]
		nextIf[node]++
		name := "eth" + strconv.Itoa(i)
		if router {
			n.ifaces[node] = append(n.ifaces[node], agent.SimulatedInterface{Name: name, Addrs: []string{ip + "/30"}, Speed: 10e9})
		}
		return node + ":" + name
	}
	link := func(a, b string, bHost bool) {
		ia, ib := addr()
		fmt.Fprintf(&links, "  - {a: %s, b: %s, a_addr: %s, b_addr: %s, capacity: 10Gbit}\n", end(a, ia, true), end(b, ib, !bHost), ia, ib)
	}
	r := func(i int) string { return "r" + strconv.Itoa(i) }
	for i := range routers {
		fmt.Fprintf(&nodes, "  - {name: %s, kind: router}\n", r(i))
	}
	for i := range routers {
		link(r(i), r((i+1)%routers), false)
	}
	seen := map[[2]int]bool{}
	for c := 0; c < routers; {
		a, b := rng.IntN(routers), rng.IntN(routers)
		if a == b || (a+1)%routers == b || (b+1)%routers == a || seen[[2]int{min(a, b), max(a, b)}] {
			continue
		}
		seen[[2]int{min(a, b), max(a, b)}] = true
		link(r(a), r(b), false)
		c++
	}
	for i := range routers {
		h := "h" + strconv.Itoa(i)
		n.hosts = append(n.hosts, h)
		ia, ib := addr()
		_ = ia
		fmt.Fprintf(&nodes, "  - {name: %s, kind: host, address: %s}\n", h, ib)
		fmt.Fprintf(&links, "  - {a: %s, b: %s, a_addr: %s, b_addr: %s, capacity: 10Gbit}\n", end(r(i), ia, true), h+":eth0", ia, ib)
	}
	n.yaml = "nodes:\n" + nodes.String() + "links:\n" + links.String()
	return n
}

// world is the running system.
type world struct {
	t           testing.TB
	dir         string
	net         network
	etcd        *exec.Cmd
	etcdURL     string
	cli         *clientv3.Client
	mgr         *exec.Cmd
	mgrAddr     string
	metricsAddr string
	mgrArgs     []string
	conn        *grpc.ClientConn
	api         vonv1.ReservationServiceClient

	mu      sync.Mutex
	agents  []*agent.Agent
	stop    context.CancelFunc
	stopped chan struct{}
	running int
}

func spawn(t testing.TB, dir, name, bin string, args ...string) *exec.Cmd {
	logf, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if v := os.Getenv("VON_SCALE_MANAGER_GOMEMLIMIT"); v != "" && name == "manager" {
		// The Go runtime's soft memory limit, as an operator sets it for the
		// manager's unit (docs/scale.md); not for this process, which holds
		// the simulated agents.
		cmd.Env = append(os.Environ(), "GOMEMLIMIT="+v)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func kill(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
}

// newWorld starts etcd and the manager, applies a generated topology of the
// given size and starts one simulated agent per router.
func newWorld(t testing.TB, routers int, managerArgs ...string) *world {
	w := &world{t: t, dir: t.TempDir(), net: genNetwork(routers, 42)}
	t.Cleanup(w.close)
	c, p := testenv.FreeAddr(t), testenv.FreeAddr(t)
	w.etcdURL = "http://" + c
	w.etcd = spawn(t, w.dir, "etcd", filepath.Join(binDir, "etcd"), "--name", "e0", "--data-dir", filepath.Join(w.dir, "etcd"),
		"--listen-client-urls", w.etcdURL, "--advertise-client-urls", w.etcdURL, "--listen-peer-urls", "http://"+p,
		"--initial-advertise-peer-urls", "http://"+p, "--initial-cluster", "e0=http://"+p, "--log-level", "warn",
		"--quota-backend-bytes", strconv.Itoa(8<<30))
	var err error
	if w.cli, err = clientv3.New(clientv3.Config{Endpoints: []string{w.etcdURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}); err != nil {
		t.Fatal(err)
	}
	w.waitEtcd()
	w.mgrAddr, w.metricsAddr, w.mgrArgs = testenv.FreeAddr(t), testenv.FreeAddr(t), managerArgs
	w.startManager()
	if w.conn, err = grpc.NewClient(w.mgrAddr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	w.api = vonv1.NewReservationServiceClient(w.conn)
	ctx := context.Background()
	if _, err := w.api.ApplyTopology(ctx, &vonv1.ApplyTopologyRequest{Source: &vonv1.ApplyTopologyRequest_Yaml{Yaml: w.net.yaml}}); err != nil {
		t.Fatal(err)
	}
	w.startAgents(routers)
	return w
}

func (w *world) waitEtcd() {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := w.cli.Get(ctx, "x")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("etcd not up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startManager starts von-manager and waits until it leads.
func (w *world) startManager() time.Duration {
	t0 := time.Now()
	w.mgr = spawn(w.t, w.dir, "manager", filepath.Join(binDir, "von-manager"), append([]string{"--listen", w.mgrAddr,
		"--etcd-endpoints", w.etcdURL, "--insecure", "--id", "m0", "--log-level", "warn", "--metrics", w.metricsAddr}, w.mgrArgs...)...)
	w.waitLeader()
	return time.Since(t0)
}

// waitLeader waits until the manager answers as leader.
func (w *world) waitLeader() {
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := grpc.NewClient(w.mgrAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = vonv1.NewReservationServiceClient(conn).Release(ctx, &vonv1.ReleaseRequest{Name: "no-such-reservation"})
			cancel()
			conn.Close()
			if err != nil && !strings.Contains(err.Error(), "leader") && !strings.Contains(err.Error(), "connect") {
				return // NOT_FOUND: it leads and serves
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("manager does not lead: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *world) startAgents(n int) {
	ctx, cancel := context.WithCancel(context.Background())
	w.stop, w.stopped = cancel, make(chan struct{}, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		node := "r" + strconv.Itoa(i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			a, err := agent.New(ctx, agent.Config{Insecure: true, Node: node, StateDir: filepath.Join(w.dir, "agents", node),
				ManagerAddr: w.mgrAddr, ListenAddr: "127.0.0.1:0", Simulate: w.net.ifaces[node]})
			if err != nil {
				w.t.Error(err)
				return
			}
			w.mu.Lock()
			w.agents = append(w.agents, a)
			w.running++
			w.mu.Unlock()
			go func() { _ = a.Run(ctx); w.stopped <- struct{}{} }()
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := w.api.ListAgents(context.Background(), &vonv1.ListAgentsRequest{})
		live := 0
		if err == nil {
			for _, a := range resp.GetAgents() {
				if a.GetLive() {
					live++
				}
			}
		}
		if live == n {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%d of %d agents live: %v", live, n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (w *world) close() {
	if keep := os.Getenv("VON_SCALE_LOG"); keep != "" {
		if b, err := os.ReadFile(filepath.Join(w.dir, "manager.log")); err == nil {
			_ = os.WriteFile(keep, b, 0o644)
		}
	}
	if b, err := os.ReadFile(filepath.Join(w.dir, "manager.log")); err == nil && len(b) > 0 {
		ls := strings.Split(strings.TrimSpace(string(b)), "\n")
		w.t.Logf("manager log: %d lines; last:\n%s", len(ls), strings.Join(ls[max(0, len(ls)-10):], "\n"))
	}
	if w.stop != nil {
		w.stop()
		for range w.running {
			<-w.stopped
		}
	}
	if w.conn != nil {
		w.conn.Close()
	}
	kill(w.mgr)
	if w.cli != nil {
		w.cli.Close()
	}
	kill(w.etcd)
}

// cpu is a process's CPU time so far (user + system).
func cpu(t testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// rss is a process's resident memory in bytes.
func rss(t testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// clone copies the committed reservation name, n times, straight into etcd
// (new names and ON ids, same paths): a way to reach 100,000 committed ONs
// without 100,000 two-phase commits. The leader's index picks them up; its
// refresh finds the agents do not know them and pushes each router's state.
func (w *world) clone(name string, n int, from int) {
	ctx := context.Background()
	r, err := w.api.Get(ctx, &vonv1.GetRequest{Name: name})
	if err != nil {
		w.t.Fatal(err)
	}
	base := r.GetReservation()
	prefix := reservation.DefaultPrefix
	var ops []clientv3.Op
	flush := func() {
		if len(ops) == 0 {
			return
		}
		if _, err := w.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			w.t.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := range n {
		c := proto.Clone(base).(*vonv1.Reservation)
		c.Name = fmt.Sprintf("%s-c%d", name, from+i)
		c.OnId = uint32(1<<31 + from + i) // admissions draw ids at random; the id keys below keep them off these
		c.Revision = 0
		// A clone takes no overlay block (admission claims those): it must
		// not carry, and on its end free, its original's.
		c.OverlayPrefix = ""
		for _, m := range c.GetMembers() {
			m.OverlayAddress = ""
		}
		b, err := proto.Marshal(c)
		if err != nil {
			w.t.Fatal(err)
		}
		ops = append(ops, clientv3.OpPut(prefix+"/ons/"+url.PathEscape(c.Name), string(b)),
			clientv3.OpPut(fmt.Sprintf("%s/ids/%08x", prefix, c.OnId), fmt.Sprintf(`{"owner":%q}`, c.Name)))
		if len(ops) >= 100 {
			flush()
		}
	}
	flush()
}
