package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// etcd's and grpc's background goroutines outlive a test's cleanup briefly.
		goleak.IgnoreTopFunction("go.etcd.io/etcd/client/pkg/v3/logutil.(*MergeLogger).outputLoop"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc.(*serverWatchStream).recvLoop"),
	)
}

// Each message is delivered once though both copies arrive, whichever comes first; a
// broadcast reaches every other member; the members agree on the epoch.
func TestSendRecvTwiceDeliveredOnce(t *testing.T) {
	addr, c := startManager(t)
	r := reserve(t, c, "video", true, "h1", "h2", "h3")
	vs := joinAll(t, addr, "video", "h1", "h2", "h3")
	if !vs["h1"].Redundant() || vs["h1"].ONID() != r.GetOnId() {
		t.Fatalf("redundant %v, on id %d (want %d)", vs["h1"].Redundant(), vs["h1"].ONID(), r.GetOnId())
	}
	// Every member sees the overlay addressing the manager gave the ON.
	ov, err := vs["h2"].Overlay()
	if err != nil || ov.Prefix.String() != r.GetOverlayPrefix() || len(ov.Members) != 3 {
		t.Fatalf("overlay %+v, %v; reservation has %q", ov, err, r.GetOverlayPrefix())
	}
	for _, m := range r.GetMembers() {
		if a := ov.Members[m.GetName()]; a.String() != m.GetOverlayAddress() {
			t.Errorf("overlay address of %s: %s, manager says %s", m.GetName(), a, m.GetOverlayAddress())
		}
	}
	waitFor(t, 5*time.Second, "one epoch", func() bool {
		e := vs["h1"].Epoch()
		return e != 0 && vs["h2"].Epoch() == e && vs["h3"].Epoch() == e
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 500
	for i := range n {
		if err := vs["h1"].Send(ctx, "h2", []byte(fmt.Sprintf("msg %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		m, err := vs["h2"].Recv(ctx)
		if err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if m.From != "h1" || !bytes.Equal(m.Data, []byte(fmt.Sprintf("msg %d", i))) || m.Seq == 0 {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	waitFor(t, 2*time.Second, "every second copy counted", func() bool { return vs["h2"].Stats().Duplicates >= n })
	st := vs["h2"].Stats()
	if st.Delivered != n || st.PerPath[0]+st.PerPath[1] != 2*n || st.Rejected != 0 {
		t.Errorf("stats %+v: want %d delivered, %d copies", st, n, 2*n)
	}
	select {
	case m := <-vs["h2"].inbox:
		t.Fatalf("a message was delivered twice: %+v", m)
	case <-time.After(100 * time.Millisecond):
	}
	if err := vs["h2"].Broadcast(ctx, []byte("all")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"h1", "h3"} {
		m, err := vs[name].Recv(ctx)
		if err != nil || string(m.Data) != "all" || m.From != "h2" {
			t.Fatalf("%s broadcast: %+v %v", name, m, err)
		}
	}
	if err := vs["h1"].Send(ctx, "h9", []byte("x")); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("send to a stranger: %v", err)
	}
	if err := vs["h1"].SendNow(ctx, "h9", []byte("x")); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("send now to a stranger: %v", err)
	}
	if err := vs["h1"].SendNow(ctx, "h2", []byte("now")); err != nil {
		t.Fatal(err)
	}
	if m, err := vs["h2"].Recv(ctx); err != nil || string(m.Data) != "now" {
		t.Fatalf("send now: %+v %v", m, err)
	}
	if err := vs["h1"].Send(ctx, "h2", make([]byte, MaxMessage+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
}

// A member that leaves is out of the next epoch, which every survivor switches to.
func TestLeaveRekeys(t *testing.T) {
	addr, c := startManager(t)
	reserve(t, c, "leave", true, "h1", "h2", "h3")
	vs := joinAll(t, addr, "leave", "h1", "h2", "h3")
	before := vs["h1"].Epoch()
	if err := vs["h3"].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "survivors rekey without h3", func() bool {
		return vs["h1"].Epoch() > before && vs["h2"].Epoch() == vs["h1"].Epoch() && len(vs["h1"].Members()) == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := vs["h1"].Send(ctx, "h2", []byte("after")); err != nil {
		t.Fatal(err)
	}
	m, err := vs["h2"].Recv(ctx)
	if err != nil || string(m.Data) != "after" || m.Epoch != vs["h1"].Epoch() {
		t.Fatalf("after the rekey: %+v %v", m, err)
	}
}

// Errors say what is wrong.
func TestJoinErrors(t *testing.T) {
	addr, c := startManager(t)
	reserve(t, c, "e", true, "h1", "h2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		cfg  Config
		want error
	}{
		{Config{Manager: addr, Insecure: true, ON: "nope", Member: "h1"}, ErrNoSuchON},
		{Config{Manager: addr, Insecure: true, ON: "e", Member: "h3"}, ErrNotMember},
		{Config{Manager: addr, Insecure: true, ON: "e"}, ErrConfig},
		{Config{Manager: addr, Insecure: true, ON: "e", Member: "h1", ListenAddr: "nonsense"}, ErrConfig},
	} {
		tc.cfg.ListenAddr = map[bool]string{true: tc.cfg.ListenAddr, false: "127.0.0.1:0"}[tc.cfg.ListenAddr != ""]
		if _, err := Join(ctx, tc.cfg); !errors.Is(err, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.cfg, err, tc.want)
		}
	}
	if _, err := c.Release(ctx, &vonv1.ReleaseRequest{Name: "e"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Join(ctx, Config{Manager: addr, Insecure: true, ON: "e", Member: "h1", ListenAddr: "127.0.0.1:0"}); !errors.Is(err, ErrNotCommitted) {
		t.Errorf("released ON: %v", err)
	}
}

// Gossip from an address that is no member and holds no credential never reaches
// memberlist; forged data from it is not even opened.
func TestStrangerGossipDropped(t *testing.T) {
	addr, c := startManager(t)
	r := reserve(t, c, "closed", false, "h1", "h2")
	vs := joinAll(t, addr, "closed", "h1", "h2")
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	before := vs["h1"].Stats().Strangers
	for _, flags := range []uint8{wire.FlagControl, 0} {
		pkt, _ := wire.AppendHeader(nil, wire.Header{ONID: r.GetOnId(), Flags: flags, Seq: 7})
		pkt = append(pkt, bytes.Repeat([]byte{0x42}, 64)...)
		if _, err := conn.WriteToUDPAddrPort(pkt, vs["h1"].LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 3*time.Second, "both counted as a stranger's", func() bool { return vs["h1"].Stats().Strangers >= before+2 })
	if st := vs["h1"].Stats(); st.Rejected != 0 || st.Delivered != 0 {
		t.Errorf("stats %+v", st)
	}
}
