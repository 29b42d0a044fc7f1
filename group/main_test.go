package group

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vonproject/von/credential"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// TestMain fails the run if any goroutine outlives the tests. memberlist's
// Shutdown does not wait for a probe in progress (bounded by its probe and TCP
// deadlines), so leaks are looked for a little longer than goleak's own retries.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if err = goleak.Find(); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

const (
	testVON  = "res-test"
	testONID = 7
)

// manager stands in for the reservation manager: it signs credentials and serves
// its verification keys.
type manager struct {
	priv  ed25519.PrivateKey
	calls atomic.Int32
}

func newManager(t testing.TB) *manager {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &manager{priv: priv}
}

func (m *manager) keys(ctx context.Context) ([]*vonv1.VerificationKey, error) {
	m.calls.Add(1)
	return []*vonv1.VerificationKey{credential.VerificationKey(m.priv.Public().(ed25519.PublicKey), time.Now(), true)}, nil
}

// identity is one member's key material and credential.
type identity struct {
	name string
	sign ed25519.PrivateKey
	seal *ecdh.PrivateKey
	cred *vonv1.MemberCredential
}

func (m *manager) issue(t testing.TB, name string, onID uint32, expire time.Time) *identity {
	t.Helper()
	_, sign, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	seal, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := credential.Sign(m.priv, &vonv1.MemberCredentialClaims{
		OnId: onID, Reservation: testVON, Member: name,
		PublicKey: sign.Public().(ed25519.PublicKey), SealPublicKey: seal.PublicKey().Bytes(),
		IssueTime: timestamppb.Now(), ExpireTime: timestamppb.New(expire),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &identity{name: name, sign: sign, seal: seal, cred: cred}
}

func randInc() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) | 1
}

func (m *manager) config(id *identity, seeds ...string) Config {
	return Config{
		VON: testVON, ONID: testONID, Member: id.name, Incarnation: randInc(),
		SignKey: id.sign, SealKey: id.seal, Credential: id.cred,
		VerificationKeys: m.keys,
		BindAddr:         "127.0.0.1",
		Seeds:            seeds,
		hooks:            &testHooks{},
		Logger:           testLogger(id.name),
	}
}

// testLogger logs at debug level to stderr when GROUP_DEBUG is set.
func testLogger(name string) *slog.Logger {
	if os.Getenv("GROUP_DEBUG") == "" {
		return nil
	}
	h := slog.Handler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if os.Getenv("GROUP_DEBUG") == "group" {
		h = noMemberlist{h}
	}
	return slog.New(h).With("me", name)
}

// noMemberlist drops memberlist's own log lines.
type noMemberlist struct{ slog.Handler }

func (h noMemberlist) Handle(ctx context.Context, r slog.Record) error {
	skip := false
	r.Attrs(func(a slog.Attr) bool {
		skip = skip || (a.Key == "component" && a.Value.String() == "memberlist")
		return !skip
	})
	if skip {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h noMemberlist) WithAttrs(as []slog.Attr) slog.Handler {
	return noMemberlist{h.Handler.WithAttrs(as)}
}

// cluster is a set of running members on loopback.
type cluster struct {
	t   testing.TB
	mgr *manager
	mu  sync.Mutex
	gs  []*Group
	// sent records every outgoing rekey message, by sender (unless noRecord).
	sent     map[string][][2]string
	noRecord bool
}

func newCluster(t testing.TB) *cluster {
	c := &cluster{t: t, mgr: newManager(t), sent: map[string][][2]string{}}
	t.Cleanup(c.closeAll)
	return c
}

func (c *cluster) closeAll() {
	c.mu.Lock()
	gs := c.gs
	c.gs = nil
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, g := range gs {
		wg.Go(func() { _ = g.Close() })
	}
	wg.Wait()
}

func (c *cluster) seeds() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s []string
	for _, g := range c.gs {
		s = append(s, g.selfAddr.String())
		if len(s) == 3 {
			break
		}
	}
	return s
}

// cfg returns a config for name seeded with the running members, recording what
// the member sends.
func (c *cluster) cfg(name string) Config {
	cfg := c.mgr.config(c.mgr.issue(c.t, name, testONID, time.Now().Add(time.Hour)), c.seeds()...)
	cfg.hooks.sent = func(to string, b []byte) {
		if c.noRecord {
			return
		}
		c.mu.Lock()
		c.sent[name] = append(c.sent[name], [2]string{to, string(b)})
		c.mu.Unlock()
	}
	return cfg
}

func (c *cluster) start(cfg Config) *Group {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := Start(ctx, cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", cfg.Member, err)
	}
	c.mu.Lock()
	c.gs = append(c.gs, g)
	c.mu.Unlock()
	return g
}

// grow starts n members named prefix00.., one after the other.
func (c *cluster) grow(n int, prefix string, tune func(*Config)) []*Group {
	var out []*Group
	for i := range n {
		cfg := c.cfg(fmt.Sprintf("%s%02d", prefix, i))
		if tune != nil {
			tune(&cfg)
		}
		out = append(out, c.start(cfg))
	}
	return out
}

func (c *cluster) remove(g *Group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, o := range c.gs {
		if o == g {
			c.gs = append(c.gs[:i], c.gs[i+1:]...)
			return
		}
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor is waitFor that logs every member's state on a timeout.
func (c *cluster) waitFor(d time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			c.mu.Lock()
			gs := slices.Clone(c.gs)
			c.mu.Unlock()
			for _, g := range gs {
				c.t.Log(g.dump())
			}
			c.t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dump describes g's view and epochs.
func (g *Group) dump() string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%s:", g.self.Name)
	for _, p := range g.view {
		fmt.Fprintf(&b, " %s/%x/st%d", p.Name, p.Incarnation&0xfff, p.state)
	}
	if s := g.rk.send; s != nil {
		fmt.Fprintf(&b, " | send %v to %d", s.id, len(s.recips))
	}
	for id, k := range g.rk.keys {
		fmt.Fprintf(&b, " | key %v exp %v", id, !k.expires.IsZero())
	}
	if r := g.rk.inflight; r != nil {
		fmt.Fprintf(&b, " | inflight %v acked %d/%d", r.id, len(r.acked), len(r.recips))
	}
	fmt.Fprintf(&b, " | max %v force %v refused %v admitted %v", g.rk.maxKnown, g.rk.force, g.rk.refused, g.rk.admitted)
	return b.String()
}

// converged reports whether every group sends with the same epoch and key, and,
// if n > 0, sees n members.
func converged(gs []*Group, n int) (uint64, bool) {
	var e0 uint64
	var k0 []byte
	for i, g := range gs {
		e, k, ok := g.SendKey()
		if !ok || (n > 0 && len(g.Members()) != n) {
			return 0, false
		}
		if i == 0 {
			e0, k0 = e, k
		} else if e != e0 || string(k) != string(k0) {
			return 0, false
		}
	}
	return e0, true
}

func epochOf(g *Group) uint64 {
	e, _, _ := g.SendKey()
	return e
}

// sendID is g's sending epoch and its number of recipients.
func sendID(g *Group) (epochID, int) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if s := g.rk.send; s != nil {
		return s.id, len(s.recips)
	}
	return epochID{}, 0
}
