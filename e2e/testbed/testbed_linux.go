//go:build linux

package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vonproject/von/internal/nsexec"
	"github.com/vonproject/von/topology"
)

// NamePrefix starts the name of every namespace a testbed creates. The full prefix of a
// run is NamePrefix + owner pid + "." + random, so Sweep can tell dead runs' leftovers.
const NamePrefix = "vtb"

// netnsDir is where iproute2 keeps named namespaces.
const netnsDir = "/var/run/netns"

// Options tunes a testbed.
type Options struct {
	// Logger receives progress; nil discards.
	Logger *slog.Logger
	// NoShaping leaves the wires unshaped (no TBF), e.g. to measure raw forwarding.
	NoShaping bool
}

// Testbed is a running topology of namespaces. Methods are safe for concurrent use.
type Testbed struct {
	Plan   *Plan
	prefix string
	log    *slog.Logger

	mu     sync.Mutex
	nsList []string // every namespace created, in creation order
	procs  []*exec.Cmd
	closed bool
}

// Start builds topo into namespaces. On error everything built so far is removed.
func Start(ctx context.Context, topo *topology.Topology, opts Options) (*Testbed, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("testbed: needs root (network namespaces, veth, tc)")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("testbed: %s not found: install iproute2", tool)
		}
	}
	plan, err := NewPlan(topo)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	tb := &Testbed{Plan: plan, log: log, prefix: fmt.Sprintf("%s%d.%s", NamePrefix, os.Getpid(), hex.EncodeToString(rnd[:]))}
	if err := tb.build(ctx, opts); err != nil {
		if cerr := tb.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	return tb, nil
}

// Prefix is this run's unique namespace-name prefix.
func (tb *Testbed) Prefix() string { return tb.prefix }

// Namespace is the name of node's namespace (for `ip netns exec`, agents' --netns).
func (tb *Testbed) Namespace(node string) string { return tb.prefix + "-" + node }

// WireNamespace is the name of the namespace holding link's wire.
func (tb *Testbed) WireNamespace(link string) string {
	i, _ := tb.Plan.Topology.LinkIndex(link)
	return fmt.Sprintf("%s-w%d", tb.prefix, i)
}

// Addr is node's own address (hosts always have one).
func (tb *Testbed) Addr(node string) netip.Addr {
	if n, ok := tb.Plan.Node(node); ok {
		return n.Addr
	}
	return netip.Addr{}
}

// End returns node's interface and address on link.
func (tb *Testbed) End(link, node string) (EndPlan, error) {
	l, ok := tb.Plan.Link(link)
	if !ok {
		return EndPlan{}, fmt.Errorf("testbed: no link %q", link)
	}
	switch node {
	case l.A.Node:
		return l.A, nil
	case l.B.Node:
		return l.B, nil
	}
	return EndPlan{}, fmt.Errorf("testbed: node %q is not on link %q", node, link)
}

func (tb *Testbed) addNS(name string) error {
	if _, err := run(context.Background(), nil, "ip", "netns", "add", name); err != nil {
		return err
	}
	tb.mu.Lock()
	tb.nsList = append(tb.nsList, name)
	tb.mu.Unlock()
	return nil
}

func (tb *Testbed) build(ctx context.Context, opts Options) error {
	start := time.Now()
	p := tb.Plan
	for _, n := range p.Nodes {
		ns := tb.Namespace(n.Name)
		if err := tb.addNS(ns); err != nil {
			return err
		}
		fwd := "0"
		if n.Forward {
			fwd = "1"
		}
		// rp_filter off: disjoint paths and pinning make routes asymmetric on purpose.
		if err := tb.sysctls(n.Name, map[string]string{
			"net/ipv4/ip_forward":                fwd,
			"net/ipv4/conf/all/rp_filter":        "0",
			"net/ipv4/conf/default/rp_filter":    "0",
			"net/ipv6/conf/all/disable_ipv6":     "1",
			"net/ipv6/conf/default/disable_ipv6": "1",
		}); err != nil {
			return err
		}
	}
	nodeBatch := map[string]*strings.Builder{}
	for _, n := range p.Nodes {
		b := &strings.Builder{}
		b.WriteString("link set lo up\n")
		if n.Addr.IsValid() {
			fmt.Fprintf(b, "addr add %s/32 dev lo\n", n.Addr)
		}
		nodeBatch[n.Name] = b
	}
	for i, l := range p.Links {
		wire := fmt.Sprintf("%s-w%d", tb.prefix, i)
		if err := tb.addNS(wire); err != nil {
			return err
		}
		w := &strings.Builder{}
		w.WriteString("link set lo up\nlink add name br0 type bridge\n")
		for _, e := range []struct {
			port string
			end  EndPlan
		}{{"pa", l.A}, {"pb", l.B}} {
			fmt.Fprintf(w, "link add name %s type veth peer name %s netns %s\n", e.port, e.end.Iface, tb.Namespace(e.end.Node))
			fmt.Fprintf(w, "link set %s master br0\nlink set %s up\n", e.port, e.port)
			fmt.Fprintf(nodeBatch[e.end.Node], "addr add %s/30 dev %s\nlink set %s up\n", e.end.Addr, e.end.Iface, e.end.Iface)
		}
		w.WriteString("link set br0 up\n")
		if _, err := run(ctx, strings.NewReader(w.String()), "ip", "-n", wire, "-batch", "-"); err != nil {
			return fmt.Errorf("testbed: wire of link %s: %w", l.Name, err)
		}
		if !opts.NoShaping {
			b := &strings.Builder{}
			for _, port := range []string{"pa", "pb"} {
				fmt.Fprintf(b, "qdisc add dev %s root %s\n", port, tbfArgs(l.Capacity))
			}
			if _, err := run(ctx, strings.NewReader(b.String()), "tc", "-n", wire, "-batch", "-"); err != nil {
				return fmt.Errorf("testbed: shaping link %s at %s: %w", l.Name, topology.FormatRate(l.Capacity), err)
			}
		}
	}
	for _, n := range p.Nodes {
		b := nodeBatch[n.Name]
		for _, r := range n.Routes {
			fmt.Fprintf(b, "route add %s\n", r)
		}
		if _, err := run(ctx, strings.NewReader(b.String()), "ip", "-n", tb.Namespace(n.Name), "-batch", "-"); err != nil {
			return fmt.Errorf("testbed: node %s: %w", n.Name, err)
		}
	}
	tb.log.Info("testbed up", "prefix", tb.prefix, "nodes", len(p.Nodes), "links", len(p.Links), "took", time.Since(start))
	return nil
}

// tbfArgs shapes a wire port at rate bit/s: a burst of ~5 ms (at least a few
// full-size frames, so the bucket never starves a 1500-byte packet) and ~50 ms of queue.
func tbfArgs(rate uint64) string {
	burst := max(rate/8/200, 4*1514)
	limit := max(rate/8/20, 3*burst)
	return fmt.Sprintf("tbf rate %dbit burst %d limit %d", rate, burst, limit)
}

// sysctls writes net sysctls inside node's namespace (/proc/sys/net is per namespace
// of the writing thread).
func (tb *Testbed) sysctls(node string, kv map[string]string) error {
	return tb.Do(node, func() error {
		for k, v := range kv {
			if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
				return fmt.Errorf("testbed: sysctl %s=%s in %s: %w", k, v, node, err)
			}
		}
		return nil
	})
}

// Do runs fn on an OS thread switched into node's namespace. Sockets fn opens stay in
// that namespace after Do returns.
func (tb *Testbed) Do(node string, fn func() error) error {
	return InNamespace(tb.Namespace(node), fn)
}

// InNamespace runs fn on an OS thread switched into the named namespace.
func InNamespace(name string, fn func() error) error {
	if err := nsexec.Do(name, fn); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	return nil
}

// Command prepares argv to run inside node's namespace. The testbed kills it on Close
// if it is still running.
func (tb *Testbed) Command(ctx context.Context, node string, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", tb.Namespace(node)}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	tb.mu.Lock()
	tb.procs = append(tb.procs, cmd)
	tb.mu.Unlock()
	return cmd
}

// Exec runs argv inside node's namespace and returns its combined output.
func (tb *Testbed) Exec(ctx context.Context, node string, argv ...string) (string, error) {
	cmd := tb.Command(ctx, node, argv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("testbed: %s on %s: %w: %s", strings.Join(argv, " "), node, err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Cut takes link down: both wire ports go down, both routers see no carrier, and every
// packet routed over the link is lost (base routes do not move).
func (tb *Testbed) Cut(ctx context.Context, link string) error { return tb.setWire(ctx, link, "down") }

// Restore brings a cut link back up.
func (tb *Testbed) Restore(ctx context.Context, link string) error {
	return tb.setWire(ctx, link, "up")
}

func (tb *Testbed) setWire(ctx context.Context, link, state string) error {
	if _, ok := tb.Plan.Link(link); !ok {
		return fmt.Errorf("testbed: no link %q", link)
	}
	b := fmt.Sprintf("link set pa %s\nlink set pb %s\n", state, state)
	_, err := run(ctx, strings.NewReader(b), "ip", "-n", tb.WireNamespace(link), "-batch", "-")
	return err
}

// Close kills the processes the testbed started and deletes its namespaces. It is safe
// to call more than once.
func (tb *Testbed) Close() error {
	tb.mu.Lock()
	if tb.closed {
		tb.mu.Unlock()
		return nil
	}
	tb.closed = true
	procs, nsList := tb.procs, tb.nsList
	tb.mu.Unlock()
	for _, c := range procs {
		if c.Process != nil && c.ProcessState == nil {
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		}
	}
	var errs []error
	for i := len(nsList) - 1; i >= 0; i-- {
		if err := deleteNamespace(nsList[i]); err != nil {
			errs = append(errs, err)
		}
	}
	tb.log.Info("testbed down", "prefix", tb.prefix)
	return errors.Join(errs...)
}

// deleteNamespace kills every process still inside the namespace, then deletes it.
func deleteNamespace(name string) error {
	killInNamespace(name)
	if _, err := os.Stat(filepath.Join(netnsDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := netns.DeleteNamed(name); err != nil {
		return fmt.Errorf("testbed: delete namespace %s: %w", name, err)
	}
	return nil
}

// killInNamespace SIGKILLs processes whose network namespace is the named one.
func killInNamespace(name string) {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, name), &st); err != nil {
		return
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var ps syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &ps) == nil && ps.Ino == st.Ino && ps.Dev == st.Dev {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Sweep removes the namespaces of testbed runs whose owning process is gone (a crashed
// or killed test), and the processes still inside them. It returns what it removed.
func Sweep() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("testbed: sweep: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, NamePrefix) {
			continue
		}
		pidStr, _, ok := strings.Cut(strings.TrimPrefix(name, NamePrefix), ".")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil {
			continue
		}
		if pid != os.Getpid() && processAlive(pid) {
			continue
		}
		if pid == os.Getpid() {
			continue // ours: Close removes them
		}
		if err := deleteNamespace(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// run executes a command, feeding stdin, and returns stdout; the error has stderr.
func run(ctx context.Context, stdin io.Reader, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}
