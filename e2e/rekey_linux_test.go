//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"net/netip"

	"github.com/vonproject/von/e2e/cluster"
	"github.com/vonproject/von/seal"
	"github.com/vonproject/von/wire"
)

// keyLog is what `vonperf --key-log` wrote: the member's incarnation and every epoch
// key it held.
type keyLog struct {
	inc  map[string]uint64 // member → incarnation
	keys []epochKey        // two racing coordinators may make two keys of one number
}

type epochKey struct {
	epoch uint64
	key   []byte
}

func readKeyLog(t *testing.T, path string) keyLog {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kl := keyLog{inc: map[string]uint64{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		switch {
		case len(fs) == 4 && fs[0] == "VON_MEMBER":
			inc, err := strconv.ParseUint(fs[3], 16, 64)
			if err != nil {
				t.Fatalf("key log line %q: %v", sc.Text(), err)
			}
			kl.inc[fs[2]] = inc
		case len(fs) == 4 && fs[0] == "VON_EPOCH":
			e, err1 := strconv.ParseUint(fs[2], 10, 64)
			k, err2 := hex.DecodeString(fs[3])
			if err1 != nil || err2 != nil {
				t.Fatalf("key log line %q", sc.Text())
			}
			kl.keys = append(kl.keys, epochKey{e, k})
		}
	}
	return kl
}

// opens reports whether packet opens with epoch key k under epoch e for sender inc.
func opens(onID uint32, e uint64, k []byte, sender string, inc uint64, pkt []byte) bool {
	sk, err := seal.SenderKey(k, onID, e, sender, inc)
	if err != nil {
		return false
	}
	s, err := seal.NewSealer(sk)
	if err != nil {
		return false
	}
	_, _, err = s.Open(nil, pkt)
	return err == nil
}

// Issue 8 §5: a member kill -9'd → the survivors rekey, and the departed member's keys
// open none of the packets sealed under the new epoch (captured on the wire and tried,
// byte for byte); replayed and forged packets injected from the sender's own address
// are dropped; the stream loses nothing through it all; a process that is no member
// gets no credential and cannot join.
func TestVONKillRekeyAndAttacks(t *testing.T) {
	c := start(t, "testdata/ring.yaml")
	ctx := context.Background()
	if _, err := c.Vonctl(ctx, "reserve", "trio", "--members", "h1,h2,h3", "--rate", "4Mbit", "--ttl", "10m"); err != nil {
		t.Fatal(err)
	}
	g := get(t, c, "trio")
	h1, h2 := netip.AddrPortFrom(c.TB.Addr("h1"), cluster.ONPort), netip.AddrPortFrom(c.TB.Addr("h2"), cluster.ONPort)
	capt, err := startCapture(c.TB, "h2", h1.Addr(), cluster.ONPort)
	if err != nil {
		t.Fatal(err)
	}
	defer capt.close()
	dir := t.TempDir()
	logOf := func(m string) string { return filepath.Join(dir, m+".keys") }
	recv, err := c.StartVonperf("recv", "trio", "h2", "--duration", "40s", "--key-log", logOf("h2"))
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Kill(syscall.SIGKILL)
	victim, err := c.StartVonperf("recv", "trio", "h3", "--duration", "60s", "--key-log", logOf("h3"))
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Kill(syscall.SIGKILL)
	time.Sleep(time.Second) // both receivers joined
	send, err := c.StartVonperf("send", "trio", "h1", "--to", "h2", "--rate", "200", "--count", "2400", "--size", "200", "--key-log", logOf("h1"))
	if err != nil {
		t.Fatal(err)
	}
	defer send.Kill(syscall.SIGKILL)
	time.Sleep(3 * time.Second)
	victim.Kill(syscall.SIGKILL) // kill -9: no goodbye
	killed := time.Now()

	// Once the survivors rekeyed, replay ten packets h1 sent and forge ten (a fresh
	// sequence number, one ciphertext bit flipped), all from h1's own address.
	time.Sleep(4 * time.Second)
	pkts := capt.packets()
	var data [][]byte
	for _, p := range pkts {
		if h, _, err := wire.Parse(p); err == nil && h.Flags&wire.FlagControl == 0 && h.ONID == g.OnID {
			data = append(data, p)
		}
	}
	if len(data) < 100 {
		t.Fatalf("captured %d data packets from h1, want a stream", len(data))
	}
	for i := range 10 {
		replay := data[len(data)-1-i]
		if err := inject(c.TB, "h1", h1, h2, replay); err != nil {
			t.Fatal(err)
		}
		forged := slices.Clone(replay)
		binary.BigEndian.PutUint64(forged[wire.OffsetSeq:], binary.BigEndian.Uint64(forged[wire.OffsetSeq:])+1_000_000+uint64(i))
		forged[len(forged)-1] ^= 0x01
		if err := inject(c.TB, "h1", h1, h2, forged); err != nil {
			t.Fatal(err)
		}
	}

	var ss cluster.SendSummary
	if err := send.Wait(30*time.Second, &ss); err != nil {
		t.Fatalf("%v\n%s", err, c.PerfLog("h1"))
	}
	var rs cluster.RecvSummary
	if err := recv.Wait(40*time.Second, &rs); err != nil {
		t.Fatalf("%v\n%s", err, c.PerfLog("h2"))
	}
	t.Logf("h2: delivered %d/%d, lost %d, duplicates %d, rejected %d, strangers %d, epochs %v; h1 sent with epochs %v",
		rs.Delivered, rs.Sent, rs.Lost, rs.Duplicates, rs.Rejected, rs.Strangers, rs.Epochs, ss.Epochs)
	if rs.Lost != 0 || rs.Delivered != 2400 {
		t.Errorf("the stream lost %d of 2400 through the kill, rekey and attacks", rs.Lost)
	}
	if rs.Duplicates < 10 || rs.Rejected < 10 {
		t.Errorf("replays counted as duplicates %d, forgeries rejected %d: want ≥ 10 each", rs.Duplicates, rs.Rejected)
	}
	if len(rs.Epochs) < 2 {
		t.Fatalf("epochs %v: the survivors did not rekey after the kill", rs.Epochs)
	}

	victimLog, senderLog := readKeyLog(t, logOf("h3")), readKeyLog(t, logOf("h1"))
	inc := senderLog.inc["h1"]
	if inc == 0 || len(victimLog.keys) == 0 {
		t.Fatalf("key logs: sender %v, victim %d keys", senderLog.inc, len(victimLog.keys))
	}
	var lastVictim uint64
	for _, k := range victimLog.keys {
		lastVictim = max(lastVictim, k.epoch)
	}
	after := 0
	for _, p := range capt.packets() {
		h, _, err := wire.Parse(p)
		if err != nil || h.Flags&wire.FlagControl != 0 || h.ONID != g.OnID {
			continue
		}
		var epoch uint64
		for _, k := range senderLog.keys {
			if uint16(k.epoch) == h.KeyEpoch && opens(g.OnID, k.epoch, k.key, "h1", inc, p) {
				epoch = k.epoch
			}
		}
		if epoch == 0 {
			continue // a forgery, or sealed under a key the sender's log missed
		}
		if epoch <= lastVictim {
			continue
		}
		after++
		for _, k := range victimLog.keys {
			for _, try := range []uint64{k.epoch, epoch} {
				if opens(g.OnID, try, k.key, "h1", inc, p) {
					t.Fatalf("the departed member's key of epoch %d opens a packet of epoch %d", k.epoch, epoch)
				}
			}
		}
	}
	t.Logf("kill at %s: %d captured packets sealed under epochs after the victim's last (%d); none opens with its %d keys",
		killed.Format("15:04:05.000"), after, lastVictim, len(victimLog.keys))
	if after < 100 {
		t.Errorf("only %d packets under a post-kill epoch: the survivors did not switch", after)
	}

	// A process that is no member gets no credential: it cannot join.
	p, err := c.StartVonperf("recv", "trio", "r1", "--duration", "2s")
	if err != nil {
		t.Fatal(err)
	}
	var none cluster.RecvSummary
	werr := p.Wait(20*time.Second, &none)
	if l := c.PerfLog("r1"); werr == nil || !(strings.Contains(l, "not a member") || strings.Contains(l, "permission denied")) {
		t.Errorf("a non-member joined: %v\n%s", werr, l)
	}
}
