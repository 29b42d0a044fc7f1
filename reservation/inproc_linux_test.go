//go:build linux

package reservation

import (
	"context"
	"net"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/vonproject/von/agent"
	"github.com/vonproject/von/e2e/testbed"
)

// inproc is a manager's gRPC server and real agents (real partition on testbed
// namespaces) in this process.
type inproc struct {
	tb     *testbed.Testbed
	m      *Manager
	addr   string
	agents map[string]*agent.Agent
}

// startInproc serves m (which need not be running) and starts an agent for every
// router of tb, waiting until all have registered.
func startInproc(t testing.TB, cli *clientv3.Client, tb *testbed.Testbed, m *Manager) *inproc {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	registerServices(gs, &server{M: m})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	p := &inproc{tb: tb, m: m, addr: lis.Addr().String(), agents: map[string]*agent.Agent{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n := 0
	for _, node := range tb.Plan.Nodes {
		if !node.Forward {
			continue
		}
		a, err := agent.New(ctx, agent.Config{Insecure: true, Node: node.Name, Netns: tb.Namespace(node.Name), StateDir: t.TempDir(),
			ManagerAddr: p.addr, ListenAddr: "127.0.0.1:0", RegisterInterval: time.Second})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		p.agents[node.Name] = a
		n++
		go func() { _ = a.Run(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		cancel()
		for range n {
			<-done
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		agents, err := m.store.Agents(context.Background())
		if err == nil && len(agents) == n {
			live := 0
			for _, a := range agents {
				if m.live(a) {
					live++
				}
			}
			if live == n {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("agents did not register: %v %v", agents, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
