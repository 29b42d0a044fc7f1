package framework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vonproject/von/agent"
	"github.com/vonproject/von/apierr"
	"github.com/vonproject/von/dashboard"
	"github.com/vonproject/von/e2e/testbed"
	"github.com/vonproject/von/internal/testenv"
	"github.com/vonproject/von/managerd"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/reservation"
	"github.com/vonproject/von/sdk"
	"github.com/vonproject/von/topology"
)

// InProcess is the harness that runs managerd (with its embedded etcd) and an
// agent per router as goroutines of the test, in plaintext.
var InProcess = Harness{Name: "inprocess", Start: func(t *testing.T, tb *testbed.Testbed, cfg Config) Cluster {
	t.Helper()
	c, err := startInProcess(t, tb, cfg, testenv.FreeAddr(t), testenv.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}}

type inProcess struct {
	tb               *testbed.Testbed
	cfg              Config
	dir              string
	listen, httpAddr string
	conn             *grpc.ClientConn
	rs               vonv1.ReservationServiceClient

	mu      sync.Mutex
	manager *running            // nil: stopped
	agents  map[string]*running // nil entry: stopped
}

// running is a goroutine-run component and how to stop it.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func (r *running) stop() error {
	r.cancel()
	return <-r.done
}

func startInProcess(t *testing.T, tb *testbed.Testbed, cfg Config, listen, httpAddr string) (*inProcess, error) {
	c := &inProcess{tb: tb, cfg: cfg, dir: t.TempDir(), listen: listen, httpAddr: httpAddr, agents: map[string]*running{}}
	var err error
	t.Cleanup(c.close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.StartManager(ctx); err != nil {
		return nil, err
	}
	if c.conn, err = grpc.NewClient(c.listen, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return nil, err
	}
	c.rs = vonv1.NewReservationServiceClient(c.conn)
	y, err := topology.Marshal(tb.Plan.Topology)
	if err != nil {
		return nil, err
	}
	if _, err := c.rs.ApplyTopology(ctx, &vonv1.ApplyTopologyRequest{Source: &vonv1.ApplyTopologyRequest_Yaml{Yaml: string(y)}}); err != nil {
		return nil, fmt.Errorf("apply topology: %w", err)
	}
	for _, n := range tb.Plan.Nodes {
		if n.Kind == topology.KindRouter {
			if err := c.StartAgent(ctx, n.Name); err != nil {
				return nil, err
			}
		}
	}
	return c, c.WaitAgents(ctx, 30*time.Second)
}

func (c *inProcess) Testbed() *testbed.Testbed { return c.tb }

func (c *inProcess) SDK(member string) (sdk.Config, error) {
	return sdk.Config{Manager: c.listen, Insecure: true, Member: member, Netns: c.tb.Namespace(member)}, nil
}

func (c *inProcess) StartManager(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.manager != nil {
		return nil
	}
	ready := make(chan struct{})
	mctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	mcfg := managerd.Config{Listen: c.listen, HTTPAddr: c.httpAddr, DataDir: filepath.Join(c.dir, "manager"), Insecure: true,
		Ready: func(string) { close(ready) },
		Manager: reservation.Config{ID: "m0", PartitionLease: c.cfg.PartitionLease, HoldTTL: c.cfg.HoldTTL,
			AgentLiveness: c.cfg.AgentLiveness, ReconcileInterval: c.cfg.Reconcile}}
	go func() { r.done <- managerd.Run(mctx, mcfg) }()
	select {
	case <-ready:
		c.manager = r
		return nil
	case err := <-r.done:
		cancel()
		return fmt.Errorf("manager: %w", err)
	case <-ctx.Done():
		_ = r.stop()
		return ctx.Err()
	}
}

func (c *inProcess) StopManager() {
	c.mu.Lock()
	r := c.manager
	c.manager = nil
	c.mu.Unlock()
	if r != nil {
		_ = r.stop()
	}
}

func (c *inProcess) StartAgent(ctx context.Context, node string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.agents[node] != nil {
		return nil
	}
	actx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(actx, agent.Config{Insecure: true, Node: node, Netns: c.tb.Namespace(node),
		StateDir: filepath.Join(c.dir, "agent-"+node), ManagerAddr: c.listen, ListenAddr: "127.0.0.1:0",
		RegisterInterval: AgentRegisterInterval})
	if err != nil {
		cancel()
		return fmt.Errorf("agent %s: %w", node, err)
	}
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(actx) }()
	c.agents[node] = r
	return nil
}

func (c *inProcess) StopAgent(node string) {
	c.mu.Lock()
	r := c.agents[node]
	c.agents[node] = nil
	c.mu.Unlock()
	if r != nil {
		_ = r.stop()
	}
}

func (c *inProcess) WaitAgents(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		var want []string
		for n, r := range c.agents {
			if r != nil {
				want = append(want, n)
			}
		}
		c.mu.Unlock()
		live := 0
		resp, err := c.rs.ListAgents(ctx, &vonv1.ListAgentsRequest{})
		if err == nil {
			for _, a := range resp.GetAgents() {
				if a.GetLive() && slices.Contains(want, a.GetNode()) {
					live++
				}
			}
			if live == len(want) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d agents live after %s (%v)", live, len(want), timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *inProcess) Reserve(ctx context.Context, o ReserveOptions) (Reservation, error) {
	req := &vonv1.ReserveRequest{Name: o.Name, Members: o.Members, RateBps: o.Rate, Redundant: o.Redundant}
	if o.TTL != 0 {
		req.Ttl = durationpb.New(o.TTL)
	}
	resp, err := c.rs.Reserve(ctx, req)
	if err != nil {
		return Reservation{}, apierr.FromStatus(err)
	}
	return fromProto(resp.GetReservation()), nil
}

func (c *inProcess) Get(ctx context.Context, name string) (Reservation, error) {
	resp, err := c.rs.Get(ctx, &vonv1.GetRequest{Name: name})
	if err != nil {
		return Reservation{}, apierr.FromStatus(err)
	}
	return fromProto(resp.GetReservation()), nil
}

func (c *inProcess) Release(ctx context.Context, name string) error {
	_, err := c.rs.Release(ctx, &vonv1.ReleaseRequest{Name: name})
	return apierr.FromStatus(err)
}

func (c *inProcess) Metrics(ctx context.Context) (string, error) {
	return scrape(ctx, "http://"+c.httpAddr+"/metrics")
}

func (c *inProcess) State(ctx context.Context) (*dashboard.Snapshot, error) {
	return state(ctx, c.httpAddr)
}

func (c *inProcess) close() {
	c.mu.Lock()
	agents := c.agents
	c.agents = map[string]*running{}
	c.mu.Unlock()
	for _, r := range agents {
		if r != nil {
			_ = r.stop()
		}
	}
	if c.conn != nil {
		_ = c.conn.Close()
	}
	c.StopManager()
}

// state reads the dashboard's snapshot from the manager's HTTP listener.
func state(ctx context.Context, addr string) (*dashboard.Snapshot, error) {
	b, err := scrape(ctx, "http://"+addr+"/api/state")
	if err != nil {
		return nil, err
	}
	var s dashboard.Snapshot
	if err := json.Unmarshal([]byte(b), &s); err != nil {
		return nil, fmt.Errorf("/api/state: %w", err)
	}
	return &s, nil
}

// scrape GETs url and returns the body of a 200 answer.
func scrape(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	return string(b), err
}
