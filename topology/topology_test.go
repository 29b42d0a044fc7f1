package topology

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const example = `nodes:
  - name: h1
    kind: host              # router | host
    address: 10.77.1.2
  - name: r1
    kind: router
  - name: r2
links:
  - a: h1:eth0
    b: r1:eth1
    capacity: 100Mbit
    reservable: 0.8
    cost: 1
    srlg: [duct-7]
  - a: r1:eth2
    b: r2:eth0
    a_addr: 10.77.0.1
    b_addr: 10.77.0.2
    capacity: 1.5Gbit
    cost: 0
  - a: r1
    b: r2
    capacity: 10M
`

func TestParseExample(t *testing.T) {
	topo, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	if len(topo.Nodes) != 3 || len(topo.Links) != 3 {
		t.Fatalf("got %d nodes, %d links", len(topo.Nodes), len(topo.Links))
	}
	h1, _ := topo.Node("h1")
	if h1.Kind != KindHost || h1.Address != netip.MustParseAddr("10.77.1.2") || h1.Line != 2 {
		t.Errorf("h1 = %+v", h1)
	}
	if r2, _ := topo.Node("r2"); r2.Kind != KindRouter {
		t.Errorf("default kind: %+v", r2)
	}
	want := Link{
		Name: "h1-r1", A: Endpoint{Node: "h1", Interface: "eth0"}, B: Endpoint{Node: "r1", Interface: "eth1"},
		Capacity: 100_000_000, Reservable: 0.8, Cost: 1, SRLG: []string{"duct-7"}, Line: 9,
	}
	if !reflect.DeepEqual(topo.Links[0], want) {
		t.Errorf("link 0 = %+v\nwant %+v", topo.Links[0], want)
	}
	l1 := topo.Links[1]
	if l1.Name != "r1-r2" || l1.Capacity != 1_500_000_000 || l1.Cost != 0 || l1.A.Addr != netip.MustParseAddr("10.77.0.1") {
		t.Errorf("link 1 = %+v", l1)
	}
	l2 := topo.Links[2]
	if l2.Name != "r1-r2/2" || l2.Reservable != DefaultReservable || l2.Cost != DefaultCost || l2.ReservableRate() != 8_000_000 {
		t.Errorf("link 2 = %+v", l2)
	}
	if i, ok := topo.LinkIndex("r1-r2/2"); !ok || i != 2 {
		t.Errorf("LinkIndex = %d %v", i, ok)
	}
	if got := topo.LinksOf("r1"); !reflect.DeepEqual(got, []int{0, 1, 2}) {
		t.Errorf("LinksOf(r1) = %v", got)
	}
	if got := topo.SRLGs(); !reflect.DeepEqual(got, []string{"duct-7"}) {
		t.Errorf("SRLGs = %v", got)
	}
}

// Each broken file gives exactly one problem, on the right line, saying what is wrong.
func TestParseErrors(t *testing.T) {
	head := "nodes:\n  - {name: r1}\n  - {name: r2}\nlinks:\n"
	cases := []struct {
		name, file string
		line       int
		want       string
	}{
		{"unknown node", head + "  - {a: r1, b: r9, capacity: 1G}\n", 5, `unknown node "r9"`},
		{"duplicate node", "nodes:\n  - {name: r1}\n  - {name: r1}\n", 3, `duplicate node name "r1" (first declared on line 2)`},
		{"self loop", head + "  - {a: r1:eth0, b: r1:eth1, capacity: 1G}\n", 5, `self-loop`},
		{"zero capacity", head + "  - {a: r1, b: r2, capacity: 0}\n", 5, `capacity "0" must be positive`},
		{"bad unit", head + "  - {a: r1, b: r2,\n     capacity: 100Mbps}\n", 6, `unit "Mbps" is ambiguous`},
		{"unknown unit", head + "  - {a: r1, b: r2, capacity: 100furlongs}\n", 5, `unknown unit "furlongs"`},
		{"unknown key in link", head + "  - a: r1\n    b: r2\n    capacity: 1G\n    colour: red\n", 8, `unknown key "colour" in link`},
		{"unknown key in node", "nodes:\n  - name: r1\n    role: core\n", 3, `unknown key "role" in node`},
		{"unknown top key", "nodes:\n  - {name: r1}\nlink:\n  - {a: r1, b: r2}\n", 3, `unknown key "link" at top level`},
		{"missing capacity", head + "  - {a: r1, b: r2}\n", 5, `link without capacity`},
		{"bad kind", "nodes:\n  - {name: r1, kind: switch}\n", 2, `kind "switch" is not router or host`},
		{"bad address", "nodes:\n  - {name: h1, kind: host, address: 10.77.1}\n", 2, `not an IP address`},
		{"IPv6 node address", "nodes:\n  - {name: h1, kind: host, address: 'fd00::1'}\n", 2, `address fd00::1 is not IPv4`},
		{"IPv4-mapped node address", "nodes:\n  - {name: h1, kind: host, address: '::ffff:10.77.1.1'}\n", 2, `is not IPv4`},
		{"IPv6 link address", head + "  - {a: r1, b: r2, capacity: 1G, a_addr: 'fd00::1'}\n", 5, `address fd00::1 of r1 is not IPv4`},
		{"bad reservable", head + "  - {a: r1, b: r2, capacity: 1G, reservable: 1.5}\n", 5, `reservable "1.5" must be a fraction`},
		{"negative cost", head + "  - {a: r1, b: r2, capacity: 1G, cost: -1}\n", 5, `cost "-1" must be a non-negative integer`},
		{"reused interface", head + "  - {a: r1:e0, b: r2:e0, capacity: 1G}\n  - {a: r1:e0, b: r2:e1, capacity: 1G}\n", 6, `interface r1:e0 is already used by the link on line 5`},
		{"long interface", head + "  - {a: r1:abcdefghijklmnop, b: r2, capacity: 1G}\n", 5, `at most 15 characters`},
		{"duplicate link name", head + "  - {name: x, a: r1, b: r2, capacity: 1G}\n  - {name: x, a: r2, b: r1, capacity: 1G}\n", 6, `duplicate link name "x"`},
		{"duplicate key", "nodes:\n  - name: r1\n    name: r2\n", 3, `key "name" given twice`},
		{"bad yaml", "nodes:\n  - {name: r1\n", 0, `not valid YAML`},
		{"not a list", "nodes: r1\n", 1, `nodes must be a list`},
		{"empty", "", 0, `empty file`},
		{"bad node name", "nodes:\n  - {name: 'r 1'}\n", 2, `character ' ' not allowed`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.file))
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want a ValidationError", err)
			}
			if len(ve.Problems) != 1 {
				t.Fatalf("want one problem, got %d:\n%v", len(ve.Problems), err)
			}
			p := ve.Problems[0]
			if c.line != 0 && p.Line != c.line {
				t.Errorf("line = %d, want %d (%v)", p.Line, c.line, err)
			}
			if !strings.Contains(p.Msg, c.want) {
				t.Errorf("message %q does not contain %q", p.Msg, c.want)
			}
		})
	}
}

func TestLoadNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(p, []byte("nodes:\n  - {name: r1}\nlinks:\n  - {a: r1, b: r9, capacity: 1G}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.HasPrefix(err.Error(), p+":4: link r1--r9: unknown node \"r9\"") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Load(filepath.Join("testdata", "six.yaml")); err != nil {
		t.Fatal(err)
	}
}

func TestRates(t *testing.T) {
	good := map[string]uint64{
		"100Mbit": 100e6, "1.5Gbit": 1.5e9, "500kbit": 500e3, "64000": 64000, "10M": 10e6,
		"1g": 1e9, "2T": 2e12, "3bit": 3, " 7 mbit ": 7e6,
	}
	for in, want := range good {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
		if back, _ := ParseRate(FormatRate(want)); back != want {
			t.Errorf("FormatRate(%d) = %q does not parse back", want, FormatRate(want))
		}
	}
	for _, in := range []string{"", "Mbit", "10Mbps", "1.2.3M", "0.5bit", "1e3", "99999999999999999999T", "-5M"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) succeeded", in)
		}
	}
	if s := FormatRate(1_500_000); s != "1500kbit" {
		t.Errorf("FormatRate = %q", s)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	topo, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	assertRoundTrip(t, topo)
}

func assertRoundTrip(t testing.TB, topo *Topology) {
	t.Helper()
	out, err := Marshal(topo)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("re-parse of marshalled topology: %v\n%s", err, out)
	}
	strip := func(tp *Topology) ([]Node, []Link) {
		ns := append([]Node(nil), tp.Nodes...)
		ls := append([]Link(nil), tp.Links...)
		for i := range ns {
			ns[i].Line = 0
		}
		for i := range ls {
			ls[i].Line = 0
		}
		return ns, ls
	}
	n1, l1 := strip(topo)
	n2, l2 := strip(back)
	if !reflect.DeepEqual(n1, n2) || !reflect.DeepEqual(l1, l2) {
		t.Fatalf("round trip changed the model:\n%s", out)
	}
}

func TestNew(t *testing.T) {
	topo, err := New([]Node{{Name: "a", Kind: KindRouter}, {Name: "b", Kind: KindRouter}},
		[]Link{{A: Endpoint{Node: "a"}, B: Endpoint{Node: "b"}, Capacity: 1e9, Cost: 1}})
	if err != nil || topo.Links[0].Name != "a-b" || topo.Links[0].Reservable != DefaultReservable {
		t.Fatalf("New = %+v, %v", topo, err)
	}
	if _, err := New([]Node{{Name: "a", Kind: KindRouter}}, []Link{{A: Endpoint{Node: "a"}, B: Endpoint{Node: "z"}, Capacity: 1}}); err == nil {
		t.Fatal("New accepted a link to an unknown node")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte("nodes:\n  - {name: r1}\nlinks:\n  - {a: r1, b: r9, capacity: 1G}\n"))
	if b, err := os.ReadFile(filepath.Join("testdata", "six.yaml")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		topo, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || err.Error() == "" {
				t.Fatalf("error without a message or not ErrInvalid: %v", err)
			}
			return
		}
		assertRoundTrip(t, topo)
	})
}
