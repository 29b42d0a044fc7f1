package managerd

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vonproject/von/agent"
	"github.com/vonproject/von/internal/testenv"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/reservation"
)

// h1 — r1 — r2 — h2, and h3 — r3 — r2.
const threeRouters = `nodes:
  - {name: h1, kind: host, address: 10.77.1.1}
  - {name: h2, kind: host, address: 10.77.1.2}
  - {name: h3, kind: host, address: 10.77.1.3}
  - {name: r1, kind: router}
  - {name: r2, kind: router}
  - {name: r3, kind: router}
links:
  - {a: h1:eth0, b: r1:eth0, capacity: 100Mbit}
  - {a: r1:eth1, b: r2:eth0, capacity: 100Mbit, a_addr: 10.77.0.1, b_addr: 10.77.0.2}
  - {a: r2:eth1, b: h2:eth0, capacity: 100Mbit}
  - {a: h3:eth0, b: r3:eth0, capacity: 100Mbit}
  - {a: r3:eth1, b: r2:eth2, capacity: 100Mbit, a_addr: 10.77.0.5, b_addr: 10.77.0.6}
`

var threeRouterIfaces = map[string][]agent.SimulatedInterface{
	"r1": {{Name: "eth0"}, {Name: "eth1", Addrs: []string{"10.77.0.1/30"}}},
	"r2": {{Name: "eth0", Addrs: []string{"10.77.0.2/30"}}, {Name: "eth1"}, {Name: "eth2", Addrs: []string{"10.77.0.6/30"}}},
	"r3": {{Name: "eth0"}, {Name: "eth1", Addrs: []string{"10.77.0.5/30"}}},
}

// A restarted manager tells the agents whose state revision covers their
// router's last change to keep their state, instead of sending all of it
// (a restart then costs heartbeats): r1, whose ON was renewed since (a
// renewal changes no partition), and r2, which applied every change. r3,
// whose agent was down when an ON of it was released, gets its whole state
// and drops the ON. The agents are real agent code with a SIMULATED data
// plane (nothing here is about the kernel: a kept state touches none).
func TestRestartedManagerKeepsCurrentAgents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	listen := testenv.FreeAddr(t)
	stop := startDaemon(t, ctx, dir, listen)
	conn, err := grpc.NewClient(listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := vonv1.NewReservationServiceClient(conn)
	if _, err := api.ApplyTopology(ctx, &vonv1.ApplyTopologyRequest{Source: &vonv1.ApplyTopologyRequest_Yaml{Yaml: threeRouters}}); err != nil {
		t.Fatal(err)
	}
	agents := map[string]*simAgent{}
	for node := range threeRouterIfaces {
		agents[node] = startSimAgent(t, ctx, dir, node, listen)
	}
	defer func() {
		for _, a := range agents {
			a.stop()
		}
	}()
	waitFor(t, 20*time.Second, "every agent live", func() bool {
		resp, err := api.ListAgents(ctx, &vonv1.ListAgentsRequest{})
		live := 0
		for _, a := range resp.GetAgents() {
			if a.GetLive() {
				live++
			}
		}
		return err == nil && live == 3
	})
	for _, r := range []*vonv1.ReserveRequest{
		{Name: "a", Members: []string{"h1", "h2"}, RateBps: 1_000_000, Ttl: durationpb.New(time.Hour)},
		{Name: "b", Members: []string{"h3", "h2"}, RateBps: 1_000_000, Ttl: durationpb.New(time.Hour)},
	} {
		if _, err := api.Reserve(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := api.Renew(ctx, &vonv1.RenewRequest{Name: "a", Ttl: durationpb.New(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// r3 is down while b is released: it misses the Release.
	agents["r3"].stop()
	if _, err := api.Release(ctx, &vonv1.ReleaseRequest{Name: "b"}); err != nil {
		t.Fatal(err)
	}
	if n := agents["r3"].a.Committed(); n != 1 {
		t.Fatalf("r3 holds %d ONs while down, want b still", n)
	}

	for _, node := range []string{"r1", "r2"} {
		agents[node].before = agents[node].answers(t)
	}
	stop()
	time.Sleep(time.Second) // the agents' heartbeats fail meanwhile
	stop = startDaemon(t, ctx, dir, listen)
	defer stop()
	agents["r3"] = startSimAgent(t, ctx, dir, "r3", listen)
	for node, want := range map[string]string{"r1": "kept", "r2": "kept", "r3": "full"} {
		a := agents[node]
		waitFor(t, 20*time.Second, node+" answered after the restart", func() bool {
			return a.answers(t)[want] > a.before[want]
		})
	}
	for node, want := range map[string]int{"r1": 1, "r2": 1, "r3": 0} {
		if n := agents[node].a.Committed(); n != want {
			t.Errorf("%s holds %d ONs after the restart, want %d", node, n, want)
		}
	}
	for _, node := range []string{"r1", "r2"} {
		if got := agents[node].answers(t); got["full"] != agents[node].before["full"] {
			t.Errorf("%s was sent its whole state again after the restart: %v (before %v)", node, got, agents[node].before)
		}
	}
}

// startDaemon runs a manager (embedded etcd in dir) at listen until stop.
func startDaemon(t *testing.T, ctx context.Context, dir, listen string) (stop func()) {
	t.Helper()
	mctx, cancel := context.WithCancel(ctx)
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- Run(mctx, Config{Listen: listen, Insecure: true, DataDir: filepath.Join(dir, "manager"),
			Manager: reservation.Config{ID: "m1", AgentLiveness: 5 * time.Second}, Ready: func(string) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatal(err)
	case <-ctx.Done():
		cancel()
		t.Fatal("the manager did not start")
	}
	stopped := false
	return func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager: %v", err)
			}
		}
	}
}

// simAgent is a real agent with a simulated data plane, and the answers to
// its converging registrations counted before the manager's restart (for r3:
// when it was started again).
type simAgent struct {
	a       *agent.Agent
	metrics string
	before  map[string]float64
	stop    func()
}

func startSimAgent(t *testing.T, ctx context.Context, dir, node, manager string) *simAgent {
	t.Helper()
	s := &simAgent{metrics: testenv.FreeAddr(t)}
	actx, cancel := context.WithCancel(ctx)
	a, err := agent.New(actx, agent.Config{Insecure: true, Node: node, StateDir: filepath.Join(dir, "agent-"+node),
		ManagerAddr: manager, ListenAddr: "127.0.0.1:0", MetricsAddr: s.metrics, RegisterInterval: 200 * time.Millisecond,
		Simulate: threeRouterIfaces[node]})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = a.Run(actx); close(done) }()
	stopped := false
	s.a, s.stop = a, func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	waitFor(t, 10*time.Second, node+"'s metrics", func() bool {
		resp, err := http.Get("http://" + s.metrics + "/metrics")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	s.before = s.answers(t)
	return s
}

// answers reads von_agent_state_answers_total by answer.
func (s *simAgent) answers(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		var answer string
		var n float64
		if _, err := fmt.Sscanf(strings.Replace(line, `"}`, `" `, 1), `von_agent_state_answers_total{answer=%q %g`, &answer, &n); err == nil {
			out[answer] = n
		}
	}
	return out
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
	}
}
