//go:build linux

// Package cluster runs the real VON binaries on a testbed: a von-manager (embedded
// etcd) in the host namespace and a von-agent per router managing that router's
// namespace with --netns, all talking gRPC over loopback. The end-to-end tests and the
// demo use it.
package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vonproject/von/e2e/testbed"
	"github.com/vonproject/von/topology"
)

// Options tunes a cluster.
type Options struct {
	// BinDir holds von-manager, von-agent and vonctl (see Build).
	BinDir string
	// Dir holds state and logs (default: a new temporary directory).
	Dir string
	// ManagerArgs and AgentArgs are extra flags (e.g. shorter leases for tests).
	ManagerArgs, AgentArgs []string
	Logger                 *slog.Logger
}

// Cluster is a running manager and its agents on a testbed.
type Cluster struct {
	TB          *testbed.Testbed
	ManagerAddr string
	Dir         string
	opts        Options

	mu      sync.Mutex
	manager *proc
	agents  map[string]*proc // nil entry: stopped
	ports   map[string]int
}

// proc is a started process and a channel closed when it exits.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Build compiles the commands into dir (module root found from this file).
func Build(ctx context.Context, dir string) error {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+"/", "./cmd/von-manager", "./cmd/von-agent", "./cmd/vonctl")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build commands: %w\n%s", err, out)
	}
	return nil
}

// Start runs a manager, applies the testbed's topology and starts an agent on every
// router, waiting until each has registered.
func Start(ctx context.Context, tb *testbed.Testbed, opts Options) (*Cluster, error) {
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "von-cluster-")
		if err != nil {
			return nil, err
		}
		opts.Dir = d
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{TB: tb, Dir: opts.Dir, opts: opts, agents: map[string]*proc{}, ports: map[string]int{}}
	if err := c.StartManager(ctx); err != nil {
		c.Close()
		return nil, err
	}
	yaml, err := topology.Marshal(tb.Plan.Topology)
	if err != nil {
		c.Close()
		return nil, err
	}
	topoFile := filepath.Join(c.Dir, "topology.yaml")
	if err := os.WriteFile(topoFile, yaml, 0o644); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.Vonctl(ctx, "topology", "apply", "-f", topoFile); err != nil {
		c.Close()
		return nil, err
	}
	for _, n := range tb.Plan.Nodes {
		if n.Kind == topology.KindRouter {
			if err := c.StartAgent(ctx, n.Name); err != nil {
				c.Close()
				return nil, err
			}
		}
	}
	if err := c.WaitAgents(ctx, 30*time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// StartManager starts (or restarts) von-manager; its etcd data survives restarts.
func (c *Cluster) StartManager(ctx context.Context) error {
	if c.ManagerAddr == "" {
		p, err := freePort()
		if err != nil {
			return err
		}
		c.ManagerAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	args := append([]string{"--listen", c.ManagerAddr, "--data-dir", filepath.Join(c.Dir, "manager"), "--log-format", "json"}, c.opts.ManagerArgs...)
	p, err := c.spawn("manager", filepath.Join(c.opts.BinDir, "von-manager"), args...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.manager = p
	c.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err := net.DialTimeout("tcp", c.ManagerAddr, time.Second); err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("von-manager exited; log:\n%s", c.Log("manager"))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("von-manager did not start; log:\n%s", c.Log("manager"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StopManager kills the manager (SIGKILL: a crash).
func (c *Cluster) StopManager() {
	c.mu.Lock()
	p := c.manager
	c.manager = nil
	c.mu.Unlock()
	c.kill("manager", p, syscall.SIGKILL)
}

// StartAgent starts (or restarts) the agent of router node; its state dir survives.
func (c *Cluster) StartAgent(ctx context.Context, node string) error {
	c.mu.Lock()
	port := c.ports[node]
	c.mu.Unlock()
	if port == 0 {
		p, err := freePort()
		if err != nil {
			return err
		}
		port = p
		c.mu.Lock()
		c.ports[node] = p
		c.mu.Unlock()
	}
	args := append([]string{"--node", node, "--manager", c.ManagerAddr, "--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		"--netns", c.TB.Namespace(node), "--state-dir", filepath.Join(c.Dir, "agent-"+node), "--log-format", "json"}, c.opts.AgentArgs...)
	p, err := c.spawn("agent-"+node, filepath.Join(c.opts.BinDir, "von-agent"), args...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.agents[node] = p
	c.mu.Unlock()
	return nil
}

// StopAgent stops node's agent with sig (SIGTERM: graceful; SIGKILL: a crash).
func (c *Cluster) StopAgent(node string, sig syscall.Signal) {
	c.mu.Lock()
	p := c.agents[node]
	c.agents[node] = nil
	c.mu.Unlock()
	c.kill("agent-"+node, p, sig)
}

// WaitAgents waits until every running agent is listed live by the manager.
func (c *Cluster) WaitAgents(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := c.Vonctl(ctx, "agents")
		live := 0
		c.mu.Lock()
		var nodes []string
		for n, p := range c.agents {
			if p != nil {
				nodes = append(nodes, n)
			}
		}
		want := len(nodes)
		c.mu.Unlock()
		if err == nil {
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if len(f) >= 2 && contains(nodes, f[0]) && strings.Contains(line, "yes") {
					live++
				}
			}
			if live == want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			sort.Strings(nodes)
			return fmt.Errorf("only %d of %d agents live after %s (%v); vonctl agents:\n%s", live, want, timeout, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Vonctl runs vonctl against the manager and returns stdout; the error carries stderr.
func (c *Cluster) Vonctl(ctx context.Context, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, filepath.Join(c.opts.BinDir, "vonctl"), append([]string{"--manager", c.ManagerAddr}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("vonctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Log returns what a process (manager, agent-<node>) wrote.
func (c *Cluster) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, name+".log"))
	return string(b)
}

// Close stops every process (the testbed is closed by its owner).
func (c *Cluster) Close() {
	c.mu.Lock()
	agents, mgr := c.agents, c.manager
	c.agents, c.manager = map[string]*proc{}, nil
	c.mu.Unlock()
	for n, p := range agents {
		c.kill("agent-"+n, p, syscall.SIGKILL)
	}
	c.kill("manager", mgr, syscall.SIGKILL)
}

func (c *Cluster) spawn(name, bin string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(c.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	c.opts.Logger.Info("started", "proc", name, "pid", cmd.Process.Pid)
	return p, nil
}

// kill signals p's process group and waits for it to exit (SIGKILL after 10 s).
func (c *Cluster) kill(name string, p *proc, sig syscall.Signal) {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	c.opts.Logger.Info("stopped", "proc", name, "signal", sig.String())
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
