//go:build linux

package vonlink

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vonproject/von/apierr"
	"github.com/vonproject/von/e2e/framework"
	"github.com/vonproject/von/e2e/testbed"
	"github.com/vonproject/von/internal/testenv"
	"github.com/vonproject/von/topology"
)

func TestMain(m *testing.M) {
	testenv.RootMain("vonlink", "TUN interfaces and network namespaces")
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("go.etcd.io/etcd/client/pkg/v3/logutil.(*MergeLogger).outputLoop"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc.(*serverWatchStream).recvLoop"),
	)
}

// Two hosts on one link, no routers: the VON needs no agent.
const hosts = `nodes:
  - {name: h1, kind: host, address: 10.77.9.1}
  - {name: h2, kind: host, address: 10.77.9.2}
links:
  - {a: h1, b: h2, capacity: 100Mbit}
`

func linkUp(t *testing.T, c framework.Cluster, on, member string) *Link {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := c.SDK(member)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ON = on
	l, err := Up(ctx, Config{SDK: cfg})
	if err != nil {
		t.Fatalf("vonlink up %s: %v", member, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// TCP and UDP from ordinary sockets cross the VON between members' overlay
// addresses; a broadcast reaches every member; the interface has the address and
// MTU it should; Close removes interface and guard.
func TestLinkCarriesIP(t *testing.T) {
	topo, err := topology.Parse([]byte(hosts))
	if err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t, topo, testbed.Options{})
	c := framework.InProcess.Start(t, tb, framework.Config{})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, err = c.Reserve(context.Background(), framework.ReserveOptions{Name: "ip", Members: []string{"h1", "h2"}, Rate: 20_000_000})
		if err == nil {
			break
		}
		if !errors.Is(err, apierr.ErrNotLeader) || time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	links := map[string]*Link{}
	for _, m := range []string{"h1", "h2"} {
		links[m] = linkUp(t, c, "ip", m)
	}
	addr := links["h1"].ov.Members // as the manager assigned them
	deadline := time.Now().Add(10 * time.Second)
	for !(links["h1"].v.Ready("h2") && links["h2"].v.Ready("h1")) {
		if time.Now().After(deadline) {
			t.Fatal("members never keyed one another")
		}
		time.Sleep(20 * time.Millisecond)
	}

	out, err := tb.Exec(context.Background(), "h2", "ip", "-o", "-4", "addr", "show", "dev", DefaultDev)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.PrefixFrom(addr["h2"], links["h2"].ov.Prefix.Bits()).String(); !strings.Contains(out, want) {
		t.Errorf("h2's %s: %q, want address %s", DefaultDev, out, want)
	}
	if got := links["h2"].Status().MTU; got != 1500-underlayOverhead {
		t.Errorf("MTU %d, want %d (1500 less the VON's headers)", got, 1500-underlayOverhead)
	}

	// TCP: 4 MB from h1 to a listener on h2's overlay address.
	var lis net.Listener
	if err := tb.Do("h2", func() error {
		var err error
		lis, err = net.Listen("tcp4", netip.AddrPortFrom(addr["h2"], 5201).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	got := make(chan int64, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		n, _ := io.Copy(io.Discard, conn)
		got <- n
	}()
	const size = 4 << 20
	if err := tb.Do("h1", func() error {
		conn, err := net.DialTimeout("tcp4", netip.AddrPortFrom(addr["h2"], 5201).String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		_, err = io.CopyN(conn, zeros{}, size)
		return err
	}); err != nil {
		t.Fatalf("TCP h1 → h2's overlay address: %v", err)
	}
	if n := <-got; n != size {
		t.Fatalf("h2 received %d of %d bytes", n, size)
	}

	// UDP broadcast to the ON's broadcast address reaches h2.
	bcast := netip.MustParseAddr("0.0.0.0")
	for _, l := range links {
		bcast = l.bcast
	}
	recv := map[string]*net.UDPConn{}
	for _, m := range []string{"h2"} {
		if err := tb.Do(m, func() error {
			pc, err := net.ListenUDP("udp4", &net.UDPAddr{Port: 6000})
			recv[m] = pc
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer recv[m].Close()
	}
	if err := tb.Do("h1", func() error {
		s, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(bcast, 6000)))
		if err != nil {
			return err
		}
		defer s.Close()
		if err := setBroadcast(s); err != nil {
			return err
		}
		_, err = s.Write([]byte("to all"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for m, pc := range recv {
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 100)
		n, from, err := pc.ReadFromUDP(b)
		if err != nil || string(b[:n]) != "to all" || from.AddrPort().Addr() != addr["h1"] {
			t.Errorf("%s: broadcast %q from %v: %v", m, b[:n], from, err)
		}
	}
	st := links["h1"].Status()
	if st.Counters.TxPackets < size/1500 || len(st.Members) != 2 || !st.Members[1].Ready {
		t.Errorf("h1 status %+v", st)
	}

	// Close removes the interface and the guard table.
	if err := links["h1"].Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := tb.Exec(context.Background(), "h1", "ip", "link", "show", DefaultDev); err == nil {
		t.Errorf("h1's %s still there after Close: %s", DefaultDev, out)
	}
	if out, _ := tb.Exec(context.Background(), "h1", "nft", "list", "tables"); strings.Contains(out, "vonlink_") {
		t.Errorf("h1's guard table still there: %s", out)
	}
}

// A bad name is refused before anything is joined; a second link on a taken
// name says so.
func TestUpErrors(t *testing.T) {
	_, err := Up(context.Background(), Config{Dev: "no/slash"})
	if !errors.Is(err, ErrConfig) {
		t.Errorf("bad dev: %v", err)
	}
	_, err = Up(context.Background(), Config{MTU: 9000})
	if !errors.Is(err, ErrConfig) {
		t.Errorf("bad mtu: %v", err)
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip")
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }

func setBroadcast(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) { serr = setsockoptBroadcast(int(fd)) })
	return errors.Join(err, serr)
}
