package cli

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vonproject/von/etcdembed"
	"github.com/vonproject/von/managerd"
	"github.com/vonproject/von/reservation"
)

const directTopology = `nodes:
  - {name: h1, kind: host, address: 10.77.1.1}
  - {name: h2, kind: host, address: 10.77.1.2}
links:
  - {a: h1, b: h2, capacity: 100Mbit}
`

// manager runs von-manager's daemon on addr over an etcd that outlives it.
type manager struct {
	t         *testing.T
	addr      string
	endpoints []string
	cancel    context.CancelFunc
	done      chan error
}

func (m *manager) start() {
	m.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	m.cancel, m.done = cancel, make(chan error, 1)
	go func() {
		m.done <- managerd.Run(ctx, managerd.Config{Listen: m.addr, EtcdEndpoints: m.endpoints,
			Insecure: true, Manager: reservation.Config{ExpiryInterval: 100 * time.Millisecond}, Ready: func(a string) { ready <- a }})
	}()
	select {
	case <-ready:
	case err := <-m.done:
		m.t.Fatalf("manager: %v", err)
	case <-time.After(20 * time.Second):
		m.t.Fatal("manager not ready")
	}
}

func (m *manager) stop() {
	if m.cancel != nil {
		m.cancel()
		if err := <-m.done; err != nil {
			m.t.Errorf("manager: %v", err)
		}
		m.cancel = nil
	}
}

func startManager(t *testing.T) *manager {
	t.Helper()
	e, err := etcdembed.Start(context.Background(), etcdembed.Options{Dir: t.TempDir(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	m := &manager{t: t, addr: addr, endpoints: e.Endpoints}
	m.start()
	t.Cleanup(m.stop)
	return m
}

// waitLeader waits until the manager at m leads (a reservation succeeds).
func waitLeader(t *testing.T, m *manager) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _, errs := run(t, "--manager", m.addr, "--insecure", "reserve", "probe", "--members", "h1,h2", "--rate", "1kbit")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("manager does not lead: %s", errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, _, errs := run(t, "--manager", m.addr, "--insecure", "release", "probe"); code != 0 {
		t.Fatal(errs)
	}
}

// vonctl reserve --keepalive rides out a manager restart: it reconnects and keeps
// renewing, so the lease does not run out however long after the restart it is checked.
func TestKeepaliveSurvivesManagerRestart(t *testing.T) {
	m := startManager(t)
	dir := t.TempDir()
	topo := dir + "/direct.yaml"
	if err := os.WriteFile(topo, []byte(directTopology), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := run(t, "--manager", m.addr, "--insecure", "topology", "apply", "-f", topo); code != 0 {
		t.Fatalf("topology apply: %s", errs)
	}
	waitLeader(t, m)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var code int
	var stderr strings.Builder
	wg.Go(func() {
		var out strings.Builder
		code = Main(ctx, []string{"--manager", m.addr, "--insecure", "reserve", "ka", "--members", "h1,h2", "--rate", "1Mbit", "--ttl", "5s", "--keepalive"}, &out, &stderr)
	})
	defer func() { cancel(); wg.Wait() }()
	state := func() string {
		c, out, errs := run(t, "--manager", m.addr, "--insecure", "get", "ka", "-o", "json")
		if c != 0 {
			return "error: " + errs
		}
		var r struct {
			State string `json:"state"`
		}
		_ = json.Unmarshal([]byte(out), &r)
		return r.State
	}
	deadline := time.Now().Add(10 * time.Second)
	for state() != "committed" {
		if time.Now().After(deadline) {
			t.Fatalf("not committed: %s", state())
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.stop()
	time.Sleep(1500 * time.Millisecond)
	m.start()
	waitLeader(t, m)
	time.Sleep(6 * time.Second) // past the 5 s lease
	if s := state(); s != "committed" {
		cancel()
		wg.Wait()
		t.Fatalf("after a manager restart the keepalive let the lease go: %s (vonctl exit %d)\n%s", s, code, stderr.String())
	}
	cancel()
	wg.Wait()
	if code != 0 {
		t.Fatalf("keepalive exit %d:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "retrying") {
		t.Errorf("stderr does not say it reconnected:\n%s", stderr.String())
	}
}
