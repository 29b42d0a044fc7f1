package partition

import (
	"cmp"
	"fmt"
	"github.com/vonproject/von/wire"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sort"
)

// Defaults for Config fields left zero.
const (
	DefaultDSCP         = wire.DefaultDSCP // the wire format's (44: VOICE-ADMIT, TOS byte 0xB0)
	DefaultPort         = wire.DefaultPort // the wire format's (4750)
	DefaultQdiscMajor   = 0x7656           // handle of our root HTB qdiscs ("vV")
	DefaultRulePriority = 17400            // first `ip rule` priority we own
	DefaultTableBase    = 17400            // first route table id we own
	DefaultMarkBase     = 0x76560000
	DefaultNftTable     = "von" // nftables table (family ip) we own

	// PinSlots is the number of distinct (next hop, egress) pairs a router can
	// pin to; each uses one ip rule, one route table and one fwmark.
	PinSlots = 256

	// Class minors: Major:1 is the root class, Major:2 best effort; ON classes
	// use FirstONMinor..0xFFFF (the kernel's 16-bit cap).
	rootMinor    = 1
	beMinor      = 2
	FirstONMinor = 3
	MaxONs       = 0xFFFF - FirstONMinor + 1
)

// Config configures a Router. The zero value of every field means its default.
type Config struct {
	// Netns is the name of the network namespace (under /var/run/netns) to
	// manage; "" is the namespace of the calling process.
	Netns  string
	Logger *slog.Logger
	// DSCP is the ON codepoint (default 44). Port is the ON UDP destination
	// port (default 4750).
	DSCP uint8
	Port uint16
	// StateDir holds partition.json (the ON id → class minor allocation and
	// the last applied desired state), written atomically. Store overrides it.
	// With neither, allocations live in memory and are recovered from the
	// kernel's classification map on restart.
	StateDir string
	Store    Store
	// ForceRootQdisc lets Apply replace a foreign root qdisc on a managed
	// interface. Without it Apply fails with ErrForeignQdisc.
	ForceRootQdisc bool
	// PolicingDrop drops policed packets instead of re-marking them to DSCP 0
	// (best effort).
	PolicingDrop bool

	// Ownership ranges; change only to avoid a clash with other software.
	QdiscMajor   uint16 // handle major of our HTB qdiscs
	RulePriority uint32 // our ip rules use RulePriority..RulePriority+PinSlots-1
	TableBase    uint32 // our route tables are TableBase..TableBase+PinSlots-1
	MarkBase     uint32 // our fwmarks are MarkBase..MarkBase+PinSlots-1
	NftTable     string // our nftables table, family ip
}

func (c Config) withDefaults() (Config, error) {
	if c.DSCP == 0 {
		c.DSCP = DefaultDSCP
	}
	if c.DSCP > 63 {
		return c, fmt.Errorf("%w: DSCP %d > 63", ErrInvalid, c.DSCP)
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.QdiscMajor == 0 {
		c.QdiscMajor = DefaultQdiscMajor
	}
	if c.QdiscMajor == 0xFFFF {
		return c, fmt.Errorf("%w: qdisc major 0xffff is reserved", ErrInvalid)
	}
	if c.RulePriority == 0 {
		c.RulePriority = DefaultRulePriority
	}
	if c.RulePriority+PinSlots > 32765 {
		return c, fmt.Errorf("%w: rule priorities must stay below the main table's 32766", ErrInvalid)
	}
	if c.TableBase == 0 {
		c.TableBase = DefaultTableBase
	}
	if c.TableBase <= 255 && c.TableBase+PinSlots > 252 {
		return c, fmt.Errorf("%w: route tables must avoid 253-255", ErrInvalid)
	}
	if c.MarkBase == 0 {
		c.MarkBase = DefaultMarkBase
	}
	if c.NftTable == "" {
		c.NftTable = DefaultNftTable
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Desired is the whole data-plane state of one router. Apply converges the
// kernel to it: what we own and is not listed here is removed.
type Desired struct {
	// Interfaces are the managed egress interfaces; each gets an HTB tree.
	Interfaces []Interface `json:"interfaces,omitempty"`
	// Access lists access (host-facing) interfaces where edge policing
	// applies even if no ON names them in its Policing.
	Access []string `json:"access,omitempty"`
	ONs    []ON     `json:"ons,omitempty"`
}

// Interface is a managed egress interface.
type Interface struct {
	Name     string `json:"name"`
	Capacity uint64 `json:"capacity"` // bit/s
}

// ON is one committed overlay network as this router sees it.
type ON struct {
	ID uint32 `json:"id"`
	// Rates maps a managed interface name to the ON's reserved rate there
	// (bit/s). Rate = ceil: the ON never borrows.
	Rates    map[string]uint64 `json:"rates,omitempty"`
	Pins     []Pin             `json:"pins,omitempty"`
	Policing []Policing        `json:"policing,omitempty"`
}

// Pin forwards the ON's copies with path index Path towards Dst via NextHop
// out of Egress, whatever the base routing table says.
type Pin struct {
	Path    uint8      `json:"path"`
	Dst     netip.Addr `json:"dst"` // a member's IPv4 address
	NextHop netip.Addr `json:"next_hop"`
	Egress  string     `json:"egress"`
}

// Policing lists the member source addresses allowed to send the ON's
// packets into the router through the access interface Access.
type Policing struct {
	Access  string       `json:"access"`
	Members []netip.Addr `json:"members"`
}

// Counters are HTB class counters (bytes and packets sent, drops, overlimits).
type Counters struct {
	Bytes      uint64
	Packets    uint64
	Drops      uint64
	Overlimits uint64
	Backlog    uint64 // bytes queued now
}

// InterfaceStats are the counters of one managed interface.
type InterfaceStats struct {
	Capacity   uint64 // bit/s, as installed
	BestEffort Counters
	ONs        map[uint32]Counters
}

// Observed is what Observe read from the kernel.
type Observed struct {
	Interfaces map[string]InterfaceStats
	// Policed counts ON-marked packets from non-members on access interfaces.
	Policed Counters
}

// normalize validates d and returns a sorted deep copy.
func (d Desired) normalize() (Desired, error) {
	out, _, err := d.normalizeFrom(nil)
	return out, err
}

// normalizeFrom is normalize for a d that is mostly prev (normalized, sorted
// by id): an ON equal to its version in prev is validated against the
// interfaces and capacities but not copied again, and same[i] reports that
// out.ONs[i] is prev's copy.
func (d Desired) normalizeFrom(prev []ON) (out Desired, same []bool, err error) {
	names := map[string]uint64{}
	for _, ifc := range d.Interfaces {
		if err := checkIfName(ifc.Name); err != nil {
			return out, nil, err
		}
		if _, dup := names[ifc.Name]; dup {
			return out, nil, fmt.Errorf("%w: interface %q listed twice", ErrInvalid, ifc.Name)
		}
		if ifc.Capacity < 8000 {
			return out, nil, fmt.Errorf("%w: interface %q capacity %d bit/s, need at least 8000", ErrInvalid, ifc.Name, ifc.Capacity)
		}
		names[ifc.Name] = ifc.Capacity
		out.Interfaces = append(out.Interfaces, ifc)
	}
	sort.Slice(out.Interfaces, func(i, j int) bool { return out.Interfaces[i].Name < out.Interfaces[j].Name })
	for _, a := range d.Access {
		if err := checkIfName(a); err != nil {
			return out, nil, err
		}
		out.Access = append(out.Access, a)
	}
	reserved := map[string]uint64{}
	out.ONs = make([]ON, 0, len(d.ONs))
	same = make([]bool, 0, len(d.ONs))
	hint := 0 // where in prev the next ON is looked for first (d mostly in id order)
	for _, on := range d.ONs {
		for ifn, rate := range on.Rates {
			capacity, ok := names[ifn]
			if !ok {
				return out, nil, fmt.Errorf("%w: ON %d has a rate on %q, which is not a managed interface", ErrInvalid, on.ID, ifn)
			}
			if rate < 8 {
				return out, nil, fmt.Errorf("%w: ON %d rate %d bit/s on %q, need at least 8", ErrInvalid, on.ID, rate, ifn)
			}
			reserved[ifn] += rate
			if reserved[ifn] > capacity {
				return out, nil, fmt.Errorf("%w: %q: %d bit/s reserved > capacity %d", ErrOverbooked, ifn, reserved[ifn], capacity)
			}
		}
		var p *ON
		if hint < len(prev) && prev[hint].ID == on.ID {
			p = &prev[hint]
			hint++
		} else if i, ok := slices.BinarySearchFunc(prev, on.ID, func(o ON, id uint32) int { return cmp.Compare(o.ID, id) }); ok {
			p = &prev[i]
			hint = i + 1
		}
		if p != nil && sameON(on, p) {
			out.ONs, same = append(out.ONs, *p), append(same, true)
			continue
		}
		n, err := normalizeON(on)
		if err != nil {
			return out, nil, err
		}
		out.ONs, same = append(out.ONs, n), append(same, false)
	}
	if !slices.IsSortedFunc(out.ONs, byID) {
		// pdqsort: O(n) for the usual input, sorted but for a few ONs.
		type item struct {
			on   ON
			same bool
		}
		items := make([]item, len(out.ONs))
		for i := range items {
			items[i] = item{out.ONs[i], same[i]}
		}
		slices.SortFunc(items, func(a, b item) int { return cmp.Compare(a.on.ID, b.on.ID) })
		for i, it := range items {
			out.ONs[i], same[i] = it.on, it.same
		}
	}
	for i := 1; i < len(out.ONs); i++ {
		if out.ONs[i].ID == out.ONs[i-1].ID {
			return out, nil, fmt.Errorf("%w: ON %d listed twice", ErrInvalid, out.ONs[i].ID)
		}
	}
	return out, same, nil
}

func byID(a, b ON) int { return cmp.Compare(a.ID, b.ID) }

// sameON says whether on, as given, is already the normalized p.
func sameON(on ON, p *ON) bool {
	if on.ID != p.ID || !maps.Equal(on.Rates, p.Rates) || !slices.Equal(on.Pins, p.Pins) || len(on.Policing) != len(p.Policing) {
		return false
	}
	for i, pol := range on.Policing {
		if pol.Access != p.Policing[i].Access || !slices.Equal(pol.Members, p.Policing[i].Members) {
			return false
		}
	}
	return true
}

// normalizeON validates one ON's pins and policing and returns a sorted deep
// copy (rates are checked by the caller, against the interfaces).
func normalizeON(on ON) (ON, error) {
	n := ON{ID: on.ID, Rates: maps.Clone(on.Rates)}
	if n.Rates == nil {
		n.Rates = map[string]uint64{}
	}
	type pinSlot struct {
		path uint8
		dst  netip.Addr
	}
	seen := map[pinSlot]bool{}
	for _, p := range on.Pins {
		if p.Path > 1 {
			return n, fmt.Errorf("%w: ON %d pin path index %d (0 or 1)", ErrInvalid, on.ID, p.Path)
		}
		if !p.Dst.Is4() || !p.NextHop.Is4() {
			return n, fmt.Errorf("%w: ON %d pin dst %v next hop %v: IPv4 addresses required", ErrInvalid, on.ID, p.Dst, p.NextHop)
		}
		if err := checkIfName(p.Egress); err != nil {
			return n, fmt.Errorf("ON %d pin: %w", on.ID, err)
		}
		k := pinSlot{p.Path, p.Dst}
		if seen[k] {
			return n, fmt.Errorf("%w: ON %d pins path %d to %v twice", ErrInvalid, on.ID, p.Path, p.Dst)
		}
		seen[k] = true
		n.Pins = append(n.Pins, p)
	}
	sort.Slice(n.Pins, func(i, j int) bool {
		if n.Pins[i].Path != n.Pins[j].Path {
			return n.Pins[i].Path < n.Pins[j].Path
		}
		return n.Pins[i].Dst.Less(n.Pins[j].Dst)
	})
	for _, pol := range on.Policing {
		if err := checkIfName(pol.Access); err != nil {
			return n, fmt.Errorf("ON %d policing: %w", on.ID, err)
		}
		np := Policing{Access: pol.Access}
		for _, m := range pol.Members {
			if !m.Is4() {
				return n, fmt.Errorf("%w: ON %d member %v: IPv4 address required", ErrInvalid, on.ID, m)
			}
			np.Members = append(np.Members, m)
		}
		slices.SortFunc(np.Members, func(a, b netip.Addr) int { return a.Compare(b) })
		np.Members = slices.Compact(np.Members)
		n.Policing = append(n.Policing, np)
	}
	return n, nil
}

func checkIfName(n string) error {
	if n == "" || len(n) > 15 {
		return fmt.Errorf("%w: interface name %q", ErrInvalid, n)
	}
	return nil
}

// without returns d minus the ON id.
func (d Desired) without(id uint32) Desired {
	out := d
	out.ONs = slices.DeleteFunc(slices.Clone(d.ONs), func(o ON) bool { return o.ID == id })
	return out
}

// Validate checks d as Apply would, without touching any kernel (a
// simulated data plane uses it).
func (d Desired) Validate() error {
	_, err := d.normalize()
	return err
}
