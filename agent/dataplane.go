package agent

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/vonproject/von/partition"
)

// dataPlane is what an agent enforces partitions with: the kernel of its
// namespace (kernelPlane), or for scale tests a simulation (simPlane).
type dataPlane interface {
	// interfaces lists the router's interfaces (a shared map: do not change).
	interfaces() (map[string]ifaceInfo, error)
	// invalidate drops a cached listing.
	invalidate()
	// apply converges to d: full reads and repairs everything; otherwise only
	// the difference from the last apply is written.
	apply(ctx context.Context, d partition.Desired, full bool) error
	observe(ctx context.Context) (partition.Observed, error)
	close()
}

// kernelPlane is the real data plane: netlink listing and partition.Router.
type kernelPlane struct {
	k *kernel
	r *partition.Router
}

func openKernelPlane(ctx context.Context, cfg Config) (*kernelPlane, error) {
	k, err := openKernel(cfg.Netns)
	if err != nil {
		return nil, err
	}
	r, err := partition.New(ctx, cfg.partitionConfig())
	if err != nil {
		k.close()
		return nil, fmt.Errorf("data plane: %w", err)
	}
	return &kernelPlane{k: k, r: r}, nil
}

func (p *kernelPlane) interfaces() (map[string]ifaceInfo, error) { return p.k.interfaces() }
func (p *kernelPlane) invalidate()                               { p.k.invalidate() }

func (p *kernelPlane) apply(ctx context.Context, d partition.Desired, full bool) error {
	if full {
		return p.r.Apply(ctx, d)
	}
	return p.r.Update(ctx, d)
}

func (p *kernelPlane) observe(ctx context.Context) (partition.Observed, error) {
	return p.r.Observe(ctx)
}

func (p *kernelPlane) close() {
	_ = p.r.Close()
	p.k.close()
}

// SimulatedInterface is an interface of a simulated router.
type SimulatedInterface struct {
	Name  string
	Addrs []string // with prefix length, e.g. "10.77.0.1/30"
	Speed uint64   // bit/s, 0 if unknown
}

// simPlane is a SIMULATED data plane, for scale tests that run hundreds of
// agents in one process: it validates each desired state as the kernel data
// plane would and records it, and installs nothing. Everything else about
// the agent — gRPC, fencing, the journal with its fsyncs, leases — is real.
type simPlane struct {
	ifs map[string]ifaceInfo

	mu   sync.Mutex
	last partition.Desired
}

func newSimPlane(ifs []SimulatedInterface) (*simPlane, error) {
	p := &simPlane{ifs: map[string]ifaceInfo{}}
	for _, i := range ifs {
		if !validIfName(i.Name) {
			return nil, invalidf("simulated interface %q: not a valid interface name", i.Name)
		}
		p.ifs[i.Name] = ifaceInfo{Name: i.Name, Addrs: slices.Clone(i.Addrs), Up: true, MTU: 1500, Speed: i.Speed}
	}
	return p, nil
}

func (p *simPlane) interfaces() (map[string]ifaceInfo, error) { return p.ifs, nil }
func (p *simPlane) invalidate()                               {}
func (p *simPlane) close()                                    {}

func (p *simPlane) apply(ctx context.Context, d partition.Desired, _ bool) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	p.last = d
	p.mu.Unlock()
	return nil
}

// observe reports zero counters for every installed class.
func (p *simPlane) observe(context.Context) (partition.Observed, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	obs := partition.Observed{Interfaces: map[string]partition.InterfaceStats{}}
	for _, i := range p.last.Interfaces {
		st := partition.InterfaceStats{Capacity: i.Capacity, ONs: map[uint32]partition.Counters{}}
		for _, on := range p.last.ONs {
			if _, ok := on.Rates[i.Name]; ok {
				st.ONs[on.ID] = partition.Counters{}
			}
		}
		obs.Interfaces[i.Name] = st
	}
	return obs, nil
}
