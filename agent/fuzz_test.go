package agent

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// FuzzPartitionSpec: the partition specs of Prepare, Sync and Register answers
// come from the network. None, however malformed, panics the agent's checks or
// its translation to the data plane's model.
func FuzzPartitionSpec(f *testing.F) {
	for _, s := range []*vonv1.PartitionSpec{
		spec(9, 3_000_000, time.Minute),
		{OnId: 1, Classes: []*vonv1.InterfaceClass{{Interface: "eth1", RateBps: 8, CapacityBps: 8}}},
		{OnId: 2, Pins: []*vonv1.PinningEntry{{PathIndex: 1, Destination: "10.77.2.2", NextHop: "bogus", EgressInterface: "eth0"}}},
	} {
		b, _ := proto.Marshal(s)
		f.Add(b)
	}
	cfg, err := Config{Node: "r1", StateDir: "x", Insecure: true}.withDefaults()
	if err != nil {
		f.Fatal(err)
	}
	ifs := map[string]ifaceInfo{"eth0": {Name: "eth0", Up: true}, "eth1": {Name: "eth1", Up: true}}
	f.Fuzz(func(t *testing.T, b []byte) {
		sp := &vonv1.PartitionSpec{}
		if proto.Unmarshal(b, sp) != nil {
			return
		}
		if checkSpec(sp, cfg.MaxTTL) != nil {
			return
		}
		_ = cfg.problems(sp, ifs, true)
		_ = toON(sp)
		d, skipped := cfg.desired(map[uint32]*committedON{sp.GetOnId(): {Spec: sp, Seq: 1}}, ifs)
		if len(d.ONs)+len(skipped) != 1 {
			t.Fatalf("desired placed %d and skipped %d of one ON", len(d.ONs), len(skipped))
		}
	})
}
