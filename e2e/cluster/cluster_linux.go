//go:build linux

// Package cluster runs the real VON binaries on a testbed: a von-manager (embedded
// etcd) in the host namespace and a von-agent per router managing that router's
// namespace with --netns, all talking gRPC over loopback. The end-to-end tests and the
// demo use it.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
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

	"google.golang.org/grpc"

	"github.com/vonproject/von/e2e/testbed"
	"github.com/vonproject/von/internal/rpcconn"
	"github.com/vonproject/von/pki"
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
	// Managers is how many von-managers run (default 1, with its embedded
	// etcd); with more, they share real etcd processes and clients get them all.
	Managers int
	// EtcdMembers is the size of that etcd cluster (default 1).
	EtcdMembers int
	// CuttableAgents puts a TCP proxy on both directions between the managers
	// and each agent, so that CutAgent can partition them.
	CuttableAgents bool
	Logger         *slog.Logger
}

// Cluster is a running manager and its agents on a testbed.
type Cluster struct {
	TB          *testbed.Testbed
	ManagerAddr string
	Dir         string
	opts        Options

	pkiDir string // the cluster's CA and every certificate it issued

	mu           sync.Mutex
	managers     []*proc // nil entry: stopped
	managerAddrs []string
	etcd         []*proc // the shared etcd cluster of several managers
	etcdURL      string  // its client URLs, comma-separated
	etcdArgs     [][]string
	env          map[string][]string  // extra environment by process name
	proxies      map[string][2]*proxy // by node: to the agent, to the managers
	agents       map[string]*proc     // nil entry: stopped
	ports        map[string]int
}

// proc is a started process and a channel closed when it exits.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // what Wait returned, once done is closed
}

// Build compiles the commands into dir (module root found from this file).
func Build(ctx context.Context, dir string) error {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	for _, args := range [][]string{
		// With the failpoints tag: chaos tests crash managers at named 2PC steps
		// ($VON_FAILPOINTS, package internal/failpoint); unset, nothing changes.
		{"build", "-tags", "failpoints", "-o", dir + "/", "./cmd/von-manager", "./cmd/von-agent", "./cmd/vonctl", "./cmd/vonperf", "./cmd/vonlink"},
		{"build", "-o", filepath.Join(dir, "etcd"), "go.etcd.io/etcd/server/v3"}, // for Options.Managers > 1
	} {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
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
	c := &Cluster{TB: tb, Dir: opts.Dir, opts: opts, agents: map[string]*proc{}, ports: map[string]int{},
		pkiDir: filepath.Join(opts.Dir, "pki")}
	if err := c.initManagers(ctx); err != nil {
		c.Close()
		return nil, err
	}
	if err := pki.Init(c.pkiDir); err != nil {
		return nil, err
	}
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
	creds, err := c.Creds(pki.Identity{Kind: pki.KindAgent, Name: node})
	if err != nil {
		return err
	}
	listen, manager := net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), c.ManagerAddr
	var extra []string
	if c.opts.CuttableAgents {
		px, err := c.agentProxies(node, listen)
		if err != nil {
			return err
		}
		manager = px[1].addr()
		extra = []string{"--endpoint", px[0].addr()}
	}
	args := append(append(append([]string{"--node", node, "--manager", manager, "--listen", listen,
		"--netns", c.TB.Namespace(node), "--state-dir", filepath.Join(c.Dir, "agent-"+node), "--log-format", "json"}, creds...),
		extra...), c.opts.AgentArgs...)
	p, err := c.spawn("agent-"+node, filepath.Join(c.opts.BinDir, "von-agent"), args...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.agents[node] = p
	c.mu.Unlock()
	return nil
}

// agentProxies returns node's proxies (made on first use): one to its
// AgentService at listen, one to the (first) manager.
func (c *Cluster) agentProxies(node, listen string) ([2]*proxy, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if px, ok := c.proxies[node]; ok {
		return px, nil
	}
	to, err := newProxy(listen)
	if err != nil {
		return [2]*proxy{}, err
	}
	from, err := newProxy(c.managerAddrs[0])
	if err != nil {
		to.close()
		return [2]*proxy{}, err
	}
	if c.proxies == nil {
		c.proxies = map[string][2]*proxy{}
	}
	c.proxies[node] = [2]*proxy{to, from}
	return c.proxies[node], nil
}

// CutAgent partitions node's agent from the managers (cut) or heals it; the
// cluster must run with CuttableAgents.
func (c *Cluster) CutAgent(node string, cut bool) {
	c.mu.Lock()
	px, ok := c.proxies[node]
	c.mu.Unlock()
	if ok {
		px[0].setCut(cut)
		px[1].setCut(cut)
	}
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

// Admin is the user identity Vonctl runs as.
var Admin = pki.Identity{Kind: pki.KindUser, Name: "admin", Admin: true}

// Creds returns the --ca, --cert and --key flags for id, issuing its certificate
// from the cluster's CA on first use.
func (c *Cluster) Creds(id pki.Identity) ([]string, error) {
	f := c.files(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := os.Stat(f.Cert); err != nil {
		if _, _, err = pki.Issue(c.pkiDir, pki.IssueRequest{Identity: id, Out: filepath.Dir(f.Cert)}); err != nil {
			return nil, err
		}
	}
	return []string{"--ca", f.CA, "--cert", f.Cert, "--key", f.Key}, nil
}

// Material is id's certificate (issued as Creds does), loaded for an in-process
// client such as the SDK.
func (c *Cluster) Material(id pki.Identity) (*pki.Material, error) {
	if _, err := c.Creds(id); err != nil {
		return nil, err
	}
	return pki.Load(c.files(id))
}

// files are where id's certificate lives: one directory per kind (an agent and
// a user may share a name).
func (c *Cluster) files(id pki.Identity) pki.Files {
	k := string(id.Kind)
	if id.Admin {
		k = "admin"
	}
	dir := filepath.Join(c.pkiDir, k)
	return pki.Files{CA: filepath.Join(c.pkiDir, pki.CAFile), Cert: filepath.Join(dir, id.Name+".crt"), Key: filepath.Join(dir, id.Name+".key")}
}

// Vonctl runs vonctl as Admin against the manager and returns stdout; the error
// carries stderr.
func (c *Cluster) Vonctl(ctx context.Context, args ...string) (string, error) {
	return c.VonctlAs(ctx, Admin, args...)
}

// VonctlAs is Vonctl with the certificate of id.
func (c *Cluster) VonctlAs(ctx context.Context, id pki.Identity, args ...string) (string, error) {
	creds, err := c.Creds(id)
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, filepath.Join(c.opts.BinDir, "vonctl"), append(append([]string{"--manager", c.ManagerAddr}, creds...), args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("vonctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// VonctlCmd is a vonctl command as Admin against the manager, for a test to
// start and read itself.
func (c *Cluster) VonctlCmd(ctx context.Context, args ...string) (*exec.Cmd, error) {
	creds, err := c.Creds(Admin)
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, filepath.Join(c.opts.BinDir, "vonctl"), append(append([]string{"--manager", c.ManagerAddr}, creds...), args...)...), nil
}

// Dial connects to the manager with id's certificate.
func (c *Cluster) Dial(id pki.Identity) (*grpc.ClientConn, error) {
	if _, err := c.Creds(id); err != nil {
		return nil, err
	}
	m, err := pki.Load(c.files(id))
	if err != nil {
		return nil, err
	}
	return rpcconn.DialManagers(c.ManagerAddr, m)
}

// Log returns what a process (manager, agent-<node>) wrote.
func (c *Cluster) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, name+".log"))
	return string(b)
}

// Close stops every process (the testbed is closed by its owner).
func (c *Cluster) Close() {
	c.mu.Lock()
	agents := c.agents
	c.agents = map[string]*proc{}
	c.mu.Unlock()
	for n, p := range agents {
		c.kill("agent-"+n, p, syscall.SIGKILL)
	}
	c.StopManager()
	c.mu.Lock()
	proxies := c.proxies
	c.proxies = nil
	c.mu.Unlock()
	for _, px := range proxies {
		px[0].close()
		px[1].close()
	}
	for i := range c.etcd {
		c.StopEtcd(i)
	}
}

func (c *Cluster) spawn(name, bin string, args ...string) (*proc, error) {
	return c.spawnTo(name, nil, bin, args...)
}

// spawnTo starts bin in its own process group, killed with the test process; stderr
// (and stdout, unless given) goes to name.log in the cluster directory.
func (c *Cluster) spawnTo(name string, stdout io.Writer, bin string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(c.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	c.mu.Lock()
	if env := c.env[name]; len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	c.mu.Unlock()
	cmd.Stdout, cmd.Stderr = logf, logf
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); logf.Close(); close(p.done) }()
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

// freePort picks a free loopback port below the kernel's ephemeral range
// (32768–60999 by default), so no outgoing connection can take it between
// the pick and the bind of the etcd, manager or agent process that gets it,
// and never the same port twice in one test binary (two picks, both free
// until their processes bind, must not collide).
func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for i := 0; i < 1000; i++ {
		p := 20000 + rand.IntN(12000)
		if portsUsed[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		portsUsed[p] = true
		return p, nil
	}
	return 0, errors.New("no free loopback port below 32000")
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)
