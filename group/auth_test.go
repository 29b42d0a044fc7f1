package group

import (
	"context"
	"errors"
	"io"
	"log"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vonproject/von/credential"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// TestUnauthenticatedJoinsAreRefused runs, against a 3-member group, processes that
// try to join with no credential, another ON's, an expired one, and someone else's
// (without its private key). None may ever appear in a member's view, be sent a
// key, or hold one.
func TestUnauthenticatedJoinsAreRefused(t *testing.T) {
	c := newCluster(t)
	var rmu sync.Mutex
	rejected := map[string][]error{}
	gs := c.grow(3, "m", func(cfg *Config) {
		cfg.hooks.rejected = func(node string, err error) {
			rmu.Lock()
			rejected[node] = append(rejected[node], err)
			rmu.Unlock()
		}
	})
	c.waitFor(5*time.Second, "convergence", func() bool { _, ok := converged(gs, 3); return ok })
	seeds := c.seeds()

	// A legitimate identity's meta, signed for another address, replayed from here.
	rp := c.mgr.issue(t, "replay", testONID, time.Now().Add(time.Hour))
	elsewhere := netip.MustParseAddrPort("127.0.0.1:9")
	rc := memberlist.DefaultLANConfig()
	rc.Name, rc.BindAddr, rc.BindPort, rc.Label = "replay", "127.0.0.1", 0, testVON
	rc.Logger = log.New(io.Discard, "", 0)
	rc.Delegate = fixedMeta(encodeMeta(testVON, "replay", elsewhere, 1, rp.cred, rp.sign))
	replay, err := memberlist.Create(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = replay.Shutdown() }()
	_, _ = replay.Join(seeds)

	// A bare memberlist process: same label, no meta at all.
	mc := memberlist.DefaultLANConfig()
	mc.Name, mc.BindAddr, mc.BindPort, mc.Label = "nocred", "127.0.0.1", 0, testVON
	mc.Logger = log.New(io.Discard, "", 0)
	bare, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bare.Shutdown() }()
	_, _ = bare.Join(seeds)

	other := newManager(t)
	stolen := c.mgr.issue(t, "victim", testONID, time.Now().Add(time.Hour))
	thief := c.mgr.issue(t, "victim", testONID, time.Now().Add(time.Hour)) // its own keys
	thief.cred = stolen.cred
	bad := map[string]*identity{
		"wrongon": c.mgr.issue(t, "wrongon", testONID+1, time.Now().Add(time.Hour)),
		"expired": c.mgr.issue(t, "expired", testONID, time.Now().Add(-time.Minute)),
		"victim":  thief,
		"forged":  other.issue(t, "forged", testONID, time.Now().Add(time.Hour)), // unknown manager key
	}
	var bgs []*Group
	for _, id := range bad {
		cfg := c.mgr.config(id, seeds...)
		cfg.hooks.skipSelfCheck = true
		g, err := start(context.Background(), cfg)
		if err != nil {
			t.Fatalf("%s: %v", id.name, err)
		}
		defer func() { _ = g.Close() }()
		if err := g.join(context.Background(), false); err != nil {
			t.Logf("%s: %v", id.name, err)
		}
		bgs = append(bgs, g)
	}

	// The public Start of such a process fails with ErrJoin.
	cfg := c.mgr.config(c.mgr.issue(t, "expired2", testONID, time.Now().Add(-time.Second)), seeds...)
	cfg.hooks.skipSelfCheck = true
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	if g, err := Start(ctx, cfg); !errors.Is(err, ErrJoin) {
		t.Errorf("Start with an expired credential: %v, %v", g, err)
	}
	cancel()
	// Start refuses a bad own credential up front.
	cfg = c.mgr.config(bad["wrongon"])
	if _, err := Start(context.Background(), cfg); !errors.Is(err, ErrCredential) || !errors.Is(err, credential.ErrWrongON) {
		t.Errorf("Start with another ON's credential: %v", err)
	}

	badNames := []string{"nocred", "wrongon", "expired", "expired2", "victim", "forged", "replay"}
	deadline := time.Now().Add(2 * time.Second) // > 5 push/pulls of the joiners and many probes
	for time.Now().Before(deadline) {
		for _, g := range gs {
			for _, m := range g.Members() {
				if slices.Contains(badNames, m.Name) {
					t.Fatalf("%s admitted %s", g.self.Name, m.Name)
				}
			}
		}
		for _, b := range bgs {
			if _, _, ok := b.SendKey(); ok {
				t.Fatalf("%s holds a sending key", b.self.Name)
			}
			b.mu.RLock()
			n := len(b.rk.keys)
			b.mu.RUnlock()
			if n != 0 {
				t.Fatalf("%s holds %d epoch keys", b.self.Name, n)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok := converged(gs, 3); !ok {
		t.Fatal("the group lost its convergence")
	}
	// Each was refused for its own reason.
	want := map[string]error{
		"nocred": ErrMeta, "wrongon": credential.ErrWrongON, "expired": credential.ErrExpired,
		"victim": ErrProof, "forged": credential.ErrUnknownKey, "replay": ErrAddrMismatch,
	}
	rmu.Lock()
	for name, werr := range want {
		if !slices.ContainsFunc(rejected[name], func(err error) bool { return errors.Is(err, werr) }) {
			t.Errorf("%s: rejections %v, want %v", name, rejected[name], werr)
		}
	}
	rmu.Unlock()
	c.mu.Lock()
	for from, msgs := range c.sent {
		for _, m := range msgs {
			if slices.Contains(badNames, m[0]) && slices.Contains([]string{"m00", "m01", "m02"}, from) {
				t.Errorf("%s sent a rekey message to %s", from, m[0])
			}
		}
	}
	c.mu.Unlock()
}

// TestVerificationKeyRefresh: the group caches the manager's keys; a joiner whose
// credential is signed by a newer key gets in after one rate-limited refresh.
func TestVerificationKeyRefresh(t *testing.T) {
	c := newCluster(t)
	k2 := newManager(t)
	var mu sync.Mutex
	rotated := false
	keys := func(ctx context.Context) ([]*vonv1.VerificationKey, error) {
		a, _ := c.mgr.keys(ctx)
		mu.Lock()
		defer mu.Unlock()
		if rotated {
			b, _ := k2.keys(ctx)
			a = append(a, b...)
		}
		return a, nil
	}
	gs := c.grow(2, "m", func(cfg *Config) {
		cfg.VerificationKeys = keys
		cfg.hooks.refreshMin = 300 * time.Millisecond
	})
	mu.Lock()
	rotated = true
	mu.Unlock()
	c.mgr.calls.Store(0)
	cfg := k2.config(k2.issue(t, "m05", testONID, time.Now().Add(time.Hour)), c.seeds()...)
	cfg.VerificationKeys = keys
	j := c.start(cfg)
	all := append(gs, j)
	c.waitFor(5*time.Second, "joiner admitted", func() bool { _, ok := converged(all, 3); return ok })
	// Start fetched once for the joiner; the two members refreshed at most twice each.
	if n := c.mgr.calls.Load(); n > 1+2*2 {
		t.Fatalf("%d key fetches", n)
	}
}

// fixedMeta is a memberlist delegate that only advertises a given meta.
type fixedMeta []byte

func (f fixedMeta) NodeMeta(int) []byte             { return f }
func (f fixedMeta) NotifyMsg([]byte)                {}
func (f fixedMeta) GetBroadcasts(int, int) [][]byte { return nil }
func (f fixedMeta) LocalState(bool) []byte          { return nil }
func (f fixedMeta) MergeRemoteState([]byte, bool)   {}
