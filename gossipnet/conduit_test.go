package gossipnet

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// netem describes the impairments of a test conduit.
type netem struct {
	copies   int     // datagrams per WriteTo (default 2: two paths)
	dropCall float64 // probability that a WriteTo loses all its copies
	dropCopy float64 // probability that one copy is lost
	reorder  float64 // probability that a copy is held back behind later datagrams
}

type heldDatagram struct {
	b  []byte
	to netip.AddrPort
}

// testConduit is a Conduit on a real UDP socket on 127.0.0.1 whose WriteTo sends
// every datagram twice, with optional random loss and reordering. Its read loop
// hands datagrams to Deliver.
type testConduit struct {
	conn  *net.UDPConn
	local netip.AddrPort

	mu   sync.Mutex
	rng  *rand.Rand
	em   netem
	held []heldDatagram

	deliver atomic.Pointer[func([]byte, netip.AddrPort)]
	sent    atomic.Uint64
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

var seedCounter atomic.Uint64

func newTestConduit(t testing.TB, em netem) *testConduit {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	if em.copies == 0 {
		em.copies = 2
	}
	seed := seedCounter.Add(1)
	c := &testConduit{
		conn:  conn,
		local: conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		rng:   rand.New(rand.NewPCG(seed, seed*7919)),
		em:    em,
		done:  make(chan struct{}),
	}
	c.wg.Add(2)
	go c.readLoop()
	go c.flushLoop()
	return c
}

func (c *testConduit) setNetem(em netem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if em.copies == 0 {
		em.copies = 2
	}
	c.em = em
}

func (c *testConduit) LocalAddr() netip.AddrPort { return c.local }

func (c *testConduit) WriteTo(b []byte, to netip.AddrPort) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.held
	c.held = nil
	if c.rng.Float64() >= c.em.dropCall {
		for range c.em.copies {
			switch {
			case c.rng.Float64() < c.em.dropCopy:
			case c.rng.Float64() < c.em.reorder:
				c.held = append(c.held, heldDatagram{bytes.Clone(b), to})
			default:
				c.write(b, to)
			}
		}
	}
	for _, h := range prev {
		c.write(h.b, h.to)
	}
	return nil
}

func (c *testConduit) write(b []byte, to netip.AddrPort) {
	c.sent.Add(1)
	_, _ = c.conn.WriteToUDPAddrPort(b, to)
}

func (c *testConduit) flushLoop() {
	defer c.wg.Done()
	tk := time.NewTicker(2 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tk.C:
			c.mu.Lock()
			for _, h := range c.held {
				c.write(h.b, h.to)
			}
			c.held = nil
			c.mu.Unlock()
		}
	}
}

func (c *testConduit) readLoop() {
	defer c.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if d := c.deliver.Load(); d != nil {
			(*d)(buf[:n], from)
		}
	}
}

func (c *testConduit) Close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.conn.Close()
		c.wg.Wait()
	})
}

// newNode returns a Transport on a fresh test conduit; both are shut down
// when the test ends.
func newNode(t testing.TB, em netem, cfg Config) (*Transport, *testConduit) {
	t.Helper()
	c := newTestConduit(t, em)
	t.Cleanup(c.Close)
	cfg.Conduit = c
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown() })
	d := tr.Deliver
	c.deliver.Store(&d)
	return tr, c
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
