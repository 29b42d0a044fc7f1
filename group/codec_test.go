package group

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vonproject/von/credential"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

var testAddr = netip.MustParseAddrPort("10.77.0.1:4750")

func TestMetaRoundTripAndVerify(t *testing.T) {
	mgr := newManager(t)
	id := mgr.issue(t, "alice", testONID, time.Now().Add(time.Hour))
	keys, _ := mgr.keys(context.Background())
	meta := encodeMeta(testVON, "alice", testAddr, 42, id.cred, id.sign)
	if len(meta) > memberlist.MetaMaxSize {
		t.Fatalf("meta is %d bytes", len(meta))
	}
	t.Logf("meta: %d bytes", len(meta))
	m, err := decodeMeta(meta)
	if err != nil || m.incarnation != 42 || m.addr != testAddr || !bytes.Equal(m.cred.Claims, id.cred.Claims) {
		t.Fatalf("decode: %+v, %v", m, err)
	}
	pi, err := verifyMeta(testVON, testONID, "alice", testAddr, meta, keys, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if pi.Incarnation != 42 || !bytes.Equal(pi.SignKey, id.sign.Public().(ed25519.PublicKey)) || !bytes.Equal(pi.SealKey, id.seal.PublicKey().Bytes()) {
		t.Fatalf("verified %+v", pi.Member)
	}

	other := newManager(t)
	thief := mgr.issue(t, "alice", testONID, time.Now().Add(time.Hour))
	tampered := slices.Clone(meta)
	tampered[len(tampered)-1] ^= 1
	cases := []struct {
		name, node string
		addr       netip.AddrPort
		meta       []byte
		von        string
		on         uint32
		now        time.Time
		want       error
	}{
		{"empty", "alice", testAddr, nil, testVON, testONID, time.Now(), ErrMeta},
		{"truncated", "alice", testAddr, meta[:len(meta)-3], testVON, testONID, time.Now(), ErrMeta},
		{"trailing", "alice", testAddr, append(slices.Clone(meta), 0), testVON, testONID, time.Now(), ErrMeta},
		{"tampered proof", "alice", testAddr, tampered, testVON, testONID, time.Now(), ErrProof},
		{"other VON", "alice", testAddr, meta, "other", testONID, time.Now(), ErrProof},
		{"other name", "bob", testAddr, meta, testVON, testONID, time.Now(), ErrMemberMismatch},
		{"other address", "alice", netip.MustParseAddrPort("10.77.0.2:4750"), meta, testVON, testONID, time.Now(), ErrAddrMismatch},
		{"other ON", "alice", testAddr, meta, testVON, testONID + 1, time.Now(), credential.ErrWrongON},
		{"expired", "alice", testAddr, meta, testVON, testONID, time.Now().Add(2 * time.Hour), credential.ErrExpired},
		{"unknown key", "alice", testAddr, encodeMeta(testVON, "alice", testAddr, 42, other.issue(t, "alice", testONID, time.Now().Add(time.Hour)).cred, id.sign), testVON, testONID, time.Now(), credential.ErrUnknownKey},
		{"stolen credential", "alice", testAddr, encodeMeta(testVON, "alice", testAddr, 42, id.cred, thief.sign), testVON, testONID, time.Now(), ErrProof},
		{"zero incarnation", "alice", testAddr, encodeMeta(testVON, "alice", testAddr, 0, id.cred, id.sign), testVON, testONID, time.Now(), ErrMeta},
	}
	for _, c := range cases {
		_, err := verifyMeta(c.von, c.on, c.node, c.addr, c.meta, keys, c.now)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestStartRefusesOversizedMeta(t *testing.T) {
	mgr := newManager(t)
	name := strings.Repeat("n", 250)
	id := mgr.issue(t, name, testONID, time.Now().Add(time.Hour))
	cfg := mgr.config(id)
	if _, err := Start(context.Background(), cfg); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("Start: %v", err)
	}
}

func TestStartValidatesConfig(t *testing.T) {
	mgr := newManager(t)
	id := mgr.issue(t, "a", testONID, time.Now().Add(time.Hour))
	other := mgr.issue(t, "a", testONID, time.Now().Add(time.Hour))
	for name, mod := range map[string]func(*Config){
		"no VON":         func(c *Config) { c.VON = "" },
		"no incarnation": func(c *Config) { c.Incarnation = 0 },
		"no seal key":    func(c *Config) { c.SealKey = nil },
		"no credential":  func(c *Config) { c.Credential = nil },
		"no keys":        func(c *Config) { c.VerificationKeys = nil },
	} {
		cfg := mgr.config(id)
		mod(&cfg)
		if _, err := Start(context.Background(), cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, mod := range map[string]func(*Config){
		"other member":   func(c *Config) { c.Member = "b" },
		"other sign key": func(c *Config) { c.SignKey = other.sign },
		"other seal key": func(c *Config) { c.SealKey = other.seal },
	} {
		cfg := mgr.config(id)
		mod(&cfg)
		if _, err := Start(context.Background(), cfg); !errors.Is(err, ErrCredential) {
			t.Errorf("%s: %v", name, err)
		}
	}
	cfg := mgr.config(id)
	cfg.VerificationKeys = func(context.Context) ([]*vonv1.VerificationKey, error) { return nil, errors.New("down") }
	if _, err := Start(context.Background(), cfg); !errors.Is(err, ErrVerificationKeys) {
		t.Errorf("keys down: %v", err)
	}
}

func sampleMessages() []*message {
	id := epochID{E: 70000, C: "coord"}
	return []*message{
		{Type: msgPropose, Epoch: id, CoordInc: 9, From: ref{"bob", 3},
			Recips: []ref{{"bob", 3}, {"coord", 9}}, Sealed: bytes.Repeat([]byte{7}, 80)},
		{Type: msgAck, Epoch: id, From: ref{"bob", 3}},
		{Type: msgCommit, Epoch: id, CoordInc: 9},
		{Type: msgPull, Epoch: id, From: ref{"bob", 3}},
		{Type: msgNack, Epoch: id, From: ref{"bob", 3}, Reason: nackStale, High: epochID{70001, "a"}},
		{Type: msgBye, From: ref{"bob", 3}},
		{Type: msgByeAck, From: ref{"coord", 9}},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	for _, m := range sampleMessages() {
		m.VON = testVON
		b := m.encode(priv)
		d, err := decodeMessage(b)
		if err != nil {
			t.Fatalf("type %d: %v", m.Type, err)
		}
		if !d.verify(pub) {
			t.Fatalf("type %d: signature does not verify", m.Type)
		}
		d.body, d.Sig = nil, nil
		if d.Type != m.Type || d.VON != m.VON || d.Epoch != m.Epoch || d.From != m.From || d.CoordInc != m.CoordInc ||
			!slices.Equal(d.Recips, m.Recips) || !bytes.Equal(d.Sealed, m.Sealed) || d.Reason != m.Reason || d.High != m.High {
			t.Fatalf("type %d: %+v != %+v", m.Type, d, m)
		}
		for i := range b {
			c := slices.Clone(b)
			c[i] ^= 0x40
			if d, err := decodeMessage(c); err == nil && d.verify(pub) {
				t.Fatalf("type %d: flipping byte %d still verifies", m.Type, i)
			}
		}
		if _, err := decodeMessage(b[:len(b)-1]); err == nil {
			if d, _ := decodeMessage(b[:len(b)-1]); d.verify(pub) {
				t.Fatalf("type %d: truncated message verifies", m.Type)
			}
		}
	}
	if id, ok := decodeAckPayload(encodeAckPayload(epochID{5, "x"})); !ok || id != (epochID{5, "x"}) {
		t.Fatal("ack payload round trip")
	}
}

func TestEpochOrder(t *testing.T) {
	ids := []epochID{{2, "b"}, {1, "a"}, {2, "a"}, {3, "z"}, {1, "b"}}
	slices.SortFunc(ids, func(a, b epochID) int {
		if a.less(b) {
			return -1
		}
		if b.less(a) {
			return 1
		}
		return 0
	})
	want := []epochID{{1, "b"}, {1, "a"}, {2, "b"}, {2, "a"}, {3, "z"}}
	if !slices.Equal(ids, want) {
		t.Fatalf("order %v, want %v", ids, want)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	mgr := newManager(f)
	id := mgr.issue(f, "alice", testONID, time.Now().Add(time.Hour))
	keys, _ := mgr.keys(context.Background())
	f.Add(encodeMeta(testVON, "alice", testAddr, 42, id.cred, id.sign))
	f.Add([]byte{})
	f.Add([]byte("VM\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err == nil && m.cred == nil {
			t.Fatal("nil credential without error")
		}
		_, _ = verifyMeta(testVON, testONID, "alice", testAddr, b, keys, time.Now())
	})
}

func FuzzDecodeMessage(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	for _, m := range sampleMessages() {
		m.VON = testVON
		f.Add(m.encode(priv))
	}
	f.Add([]byte{})
	f.Add(append([]byte("VR\x01\x01\x08res-test"), make([]byte, 64)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err == nil {
			_ = m.verify(pub)
			_ = m.signer()
			if len(m.Recips) > maxRecips || len(m.Sealed) > maxBlob {
				t.Fatal("limits not enforced")
			}
		}
		_, _ = decodeAckPayload(b)
	})
}
