package agent

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

func TestJournalRoundTripAndRefusals(t *testing.T) {
	dir := t.TempDir()
	st := newState(3)
	st.epoch, st.seq = 7, 12
	exp := time.Now().Add(time.Minute)
	st.committed[5] = &committedON{TxnID: "t5", Spec: spec(5, 1e6, time.Minute), LeaseExpire: exp, Seq: 3, Epoch: 7}
	st.holds["t6"] = &heldTxn{TxnID: "t6", Spec: spec(6, 2e6, time.Minute), HoldExpire: exp, Seq: 4, Epoch: 7}
	for i := range 5 { // bounded history keeps the last 3
		st.hist.put(outcome{Op: opAbort, TxnID: string(rune('a' + i)), Time: exp})
	}
	b, err := st.encode("r1", time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(dir, JournalFile, b); err != nil {
		t.Fatal(err)
	}
	got, found, err := loadJournal(dir, "r1", 3)
	if err != nil || !found {
		t.Fatal(found, err)
	}
	if got.epoch != 7 || got.seq != 12 || len(got.committed) != 1 || len(got.holds) != 1 || len(got.hist.list()) != 3 {
		t.Fatalf("round trip: %+v", got)
	}
	c := got.committed[5]
	if c.TxnID != "t5" || !c.LeaseExpire.Equal(exp.Round(0)) || !sameSpec(c.Spec, spec(5, 1e6, 0)) {
		t.Fatalf("committed entry: %+v", c)
	}
	if _, ok := got.hist.get(opAbort, "a"); ok {
		t.Fatal("history not bounded")
	}
	if _, _, err := loadJournal(dir, "r2", 3); err == nil || !strings.Contains(err.Error(), `belongs to node "r1"`) {
		t.Fatalf("other node: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, JournalFile), []byte("{nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadJournal(dir, "r1", 3); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt: %v", err)
	}
	if _, found, err := loadJournal(t.TempDir(), "r1", 3); err != nil || found {
		t.Fatalf("missing journal: %v %v", found, err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.tmp*")); len(m) > 0 {
		t.Fatalf("temporary files left: %v", m)
	}
}

func TestTranslateAndDesired(t *testing.T) {
	sp := spec(9, 3e6, time.Minute)
	sp.Pins = []*vonv1.PinningEntry{
		{PathIndex: 0, Destination: "10.77.2.2", NextHop: "10.77.128.2", EgressInterface: "eth1"},
		{PathIndex: 1, Destination: "10.77.2.3", EgressInterface: "eth0"}, // on-link
	}
	sp.EdgePolicies = []*vonv1.EdgePolicy{{AccessInterface: "eth0", AllowedSources: []string{"10.77.2.1"}}}
	if err := checkSpec(sp, time.Hour); err != nil {
		t.Fatal(err)
	}
	on := toON(sp)
	if on.ID != 9 || on.Rates["eth1"] != 3e6 || len(on.Pins) != 2 || on.Pins[1].NextHop != netip.MustParseAddr("10.77.2.3") ||
		len(on.Policing) != 1 || on.Policing[0].Members[0] != netip.MustParseAddr("10.77.2.1") {
		t.Fatalf("toON: %+v", on)
	}
	cfg, err := Config{Node: "r1", StateDir: "x", Insecure: true}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	ifs := map[string]ifaceInfo{"eth0": {Name: "eth0", Up: true}, "eth1": {Name: "eth1", Up: true}}
	newer := spec(10, 15e6, time.Minute)
	newer.Classes[0].CapacityBps = 30e6 // the topology grew the link
	over := spec(11, 14e6, time.Minute)
	over.Classes[0].CapacityBps = 30e6
	missing := spec(12, 1e6, time.Minute)
	missing.Classes[0].Interface = "eth7"
	d, skipped := cfg.desired(map[uint32]*committedON{
		9:  {Spec: sp, Seq: 1},
		10: {Spec: newer, Seq: 2},
		11: {Spec: over, Seq: 3},
		12: {Spec: missing, Seq: 4},
	}, ifs)
	if len(d.Interfaces) != 1 || d.Interfaces[0].Capacity != 30e6 || len(d.ONs) != 2 {
		t.Fatalf("desired: %+v", d)
	}
	if !strings.Contains(skipped[11], "eth1: 18Mbit reserved of 30Mbit, cannot add 14Mbit") || skipped[12] != "eth7: no such interface" {
		t.Fatalf("skipped: %v", skipped)
	}
	for _, bad := range []*vonv1.PartitionSpec{
		nil, {OnId: 0}, {OnId: 1, Classes: []*vonv1.InterfaceClass{{Interface: "a/b", RateBps: 8, CapacityBps: 8000}}},
		{OnId: 1, Classes: []*vonv1.InterfaceClass{{Interface: "e", RateBps: 8, CapacityBps: 8000}, {Interface: "e", RateBps: 8, CapacityBps: 8000}}},
		{OnId: 1, Pins: []*vonv1.PinningEntry{{PathIndex: 2, Destination: "10.0.0.1", EgressInterface: "e"}}},
		{OnId: 1, Pins: []*vonv1.PinningEntry{{Destination: "fd00::1", EgressInterface: "e"}}},
		{OnId: 1, EdgePolicies: []*vonv1.EdgePolicy{{AccessInterface: "e", AllowedSources: []string{"x"}}}},
		{OnId: 1, Classification: &vonv1.Classification{Dscp: 64}},
	} {
		if err := checkSpec(bad, time.Hour); err == nil {
			t.Errorf("checkSpec accepted %v", bad)
		}
	}
}
