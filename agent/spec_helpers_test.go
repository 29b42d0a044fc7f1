package agent

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/wire"
)

// The test topology's figures, shared by the netns tests and the portable ones.
const (
	bottleneck = 20_000_000 // r1:eth1, bit/s
	onPort     = wire.DefaultPort
)

// spec is a partition for r1: a class on eth1 (the bottleneck).
func spec(id uint32, rate uint64, lease time.Duration) *vonv1.PartitionSpec {
	return &vonv1.PartitionSpec{
		OnId: id, Reservation: fmt.Sprintf("on-%d", id),
		Classification: &vonv1.Classification{Dscp: wire.DefaultDSCP, UdpPort: onPort},
		Classes:        []*vonv1.InterfaceClass{{Interface: "eth1", RateBps: rate, CapacityBps: bottleneck, Link: "r1-r2"}},
		LeaseTtl:       durationpb.New(lease),
	}
}
