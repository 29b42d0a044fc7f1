//go:build linux

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vonproject/von/pki"
	"github.com/vonproject/von/reservation"
)

// initManagers picks the managers' addresses (ManagerAddr lists them all) and,
// for more than one, starts their shared etcd.
func (c *Cluster) initManagers(ctx context.Context) error {
	n := max(c.opts.Managers, 1)
	for range n {
		p, err := freePort()
		if err != nil {
			return err
		}
		c.managerAddrs = append(c.managerAddrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	}
	c.managers = make([]*proc, n)
	c.ManagerAddr = strings.Join(c.managerAddrs, ",")
	if n == 1 {
		return nil
	}
	members := max(c.opts.EtcdMembers, 1)
	var clients, peers []string
	for range members {
		cp, err := freePort()
		if err != nil {
			return err
		}
		pp, err := freePort()
		if err != nil {
			return err
		}
		clients = append(clients, "http://127.0.0.1:"+strconv.Itoa(cp))
		peers = append(peers, "http://127.0.0.1:"+strconv.Itoa(pp))
	}
	var initial []string
	for i, p := range peers {
		initial = append(initial, "e"+strconv.Itoa(i)+"="+p)
	}
	c.etcdURL = strings.Join(clients, ",")
	c.etcd = make([]*proc, members)
	for i := range members {
		c.etcdArgs = append(c.etcdArgs, []string{"--name", "e" + strconv.Itoa(i), "--data-dir", filepath.Join(c.Dir, "etcd"+strconv.Itoa(i)),
			"--listen-client-urls", clients[i], "--advertise-client-urls", clients[i], "--listen-peer-urls", peers[i],
			"--initial-advertise-peer-urls", peers[i], "--initial-cluster", strings.Join(initial, ","), "--log-level", "warn"})
		if err := c.startEtcd(i); err != nil {
			return err
		}
	}
	for i, cl := range clients {
		if err := waitPort(ctx, strings.TrimPrefix(cl, "http://"), c.etcd[i], func() string { return c.Log("etcd" + strconv.Itoa(i)) }); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startEtcd(i int) error {
	p, err := c.spawn("etcd"+strconv.Itoa(i), filepath.Join(c.opts.BinDir, "etcd"), c.etcdArgs[i]...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.etcd[i] = p
	c.mu.Unlock()
	return nil
}

// StopEtcd kills member i of the managers' etcd cluster (SIGKILL).
func (c *Cluster) StopEtcd(i int) {
	c.mu.Lock()
	p := c.etcd[i]
	c.etcd[i] = nil
	c.mu.Unlock()
	c.kill("etcd"+strconv.Itoa(i), p, syscall.SIGKILL)
}

// StartEtcd restarts member i (its data survives).
func (c *Cluster) StartEtcd(ctx context.Context, i int) error {
	if err := c.startEtcd(i); err != nil {
		return err
	}
	u := strings.Split(c.etcdURL, ",")[i]
	return waitPort(ctx, strings.TrimPrefix(u, "http://"), c.etcd[i], func() string { return c.Log("etcd" + strconv.Itoa(i)) })
}

func managerName(i int) string {
	if i == 0 {
		return "manager"
	}
	return "manager" + strconv.Itoa(i)
}

// StartManager starts every manager that is not running (never started,
// stopped, or exited); their etcd data survives restarts.
func (c *Cluster) StartManager(ctx context.Context) error {
	for i := range c.managers {
		c.mu.Lock()
		p := c.managers[i]
		c.mu.Unlock()
		running := p != nil
		if running {
			select {
			case <-p.done: // crashed (a failpoint): start it again
				running = false
			default:
			}
		}
		if !running {
			if err := c.StartManagerN(ctx, i); err != nil {
				return err
			}
		}
	}
	return nil
}

// StartManagerN starts (or restarts) manager i.
func (c *Cluster) StartManagerN(ctx context.Context, i int) error {
	creds, err := c.Creds(pki.Identity{Kind: pki.KindManager, Name: "m" + strconv.Itoa(i)})
	if err != nil {
		return err
	}
	addr := c.managerAddrs[i]
	args := []string{"--listen", addr, "--id", "m" + strconv.Itoa(i), "--log-format", "json"}
	if c.etcdURL != "" {
		args = append(args, "--etcd-endpoints", c.etcdURL)
	} else {
		args = append(args, "--data-dir", filepath.Join(c.Dir, "manager"))
	}
	args = append(append(args, creds...), c.opts.ManagerArgs...)
	name := managerName(i)
	p, err := c.spawn(name, filepath.Join(c.opts.BinDir, "von-manager"), args...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.managers[i] = p
	c.mu.Unlock()
	return waitPort(ctx, addr, p, func() string { return c.Log(name) })
}

// SetManagerEnv sets extra environment (NAME=value) for manager i's next starts;
// none clears it.
func (c *Cluster) SetManagerEnv(i int, env ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.env == nil {
		c.env = map[string][]string{}
	}
	c.env[managerName(i)] = env
}

// EtcdEndpoint is the shared etcd of several managers, its client URLs
// comma-separated ("" for one manager).
func (c *Cluster) EtcdEndpoint() string { return c.etcdURL }

// ManagersRunning counts the manager processes alive now.
func (c *Cluster) ManagersRunning() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range c.managers {
		if p == nil {
			continue
		}
		select {
		case <-p.done:
		default:
			n++
		}
	}
	return n
}

// StopManager kills every manager (SIGKILL: a crash).
func (c *Cluster) StopManager() {
	for i := range c.managers {
		c.StopManagerN(i, syscall.SIGKILL)
	}
}

// StopManagerN stops manager i with sig.
func (c *Cluster) StopManagerN(i int, sig syscall.Signal) {
	c.mu.Lock()
	p := c.managers[i]
	c.managers[i] = nil
	c.mu.Unlock()
	c.kill(managerName(i), p, sig)
}

// Leader is the index of the manager that leads now (from the election in
// etcd); for several managers only.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	if c.etcdURL == "" {
		return 0, errors.New("one manager: it leads whenever it runs")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(c.etcdURL, ","), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := cli.Get(cctx, reservation.DefaultPrefix+"/election/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) == 0 {
		return 0, errors.New("no leader")
	}
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &v); err != nil || !strings.HasPrefix(v.ID, "m") {
		return 0, fmt.Errorf("election value %q", resp.Kvs[0].Value)
	}
	return strconv.Atoi(strings.TrimPrefix(v.ID, "m"))
}

// waitPort waits until addr accepts connections, or p exits.
func waitPort(ctx context.Context, addr string, p *proc, log func() string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited; log:\n%s", filepath.Base(p.cmd.Path), log())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not start; log:\n%s", filepath.Base(p.cmd.Path), log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
