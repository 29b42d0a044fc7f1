package topology

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrInvalid is wrapped by every validation error, so callers can test errors.Is.
var ErrInvalid = errors.New("invalid topology")

// Problem is one thing wrong with a topology, at a line of the file (0 if unknown).
type Problem struct {
	Line int
	Msg  string
}

// ValidationError lists everything wrong with a topology file, one problem per line.
type ValidationError struct {
	File     string
	Problems []Problem
}

func (e *ValidationError) add(line int, format string, args ...any) {
	e.Problems = append(e.Problems, Problem{Line: line, Msg: fmt.Sprintf(format, args...)})
}

// Error renders "file:line: message", one problem per line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		switch {
		case e.File != "" && p.Line > 0:
			fmt.Fprintf(&b, "%s:%d: ", e.File, p.Line)
		case e.File != "":
			fmt.Fprintf(&b, "%s: ", e.File)
		case p.Line > 0:
			fmt.Fprintf(&b, "line %d: ", p.Line)
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Parse parses and validates a topology file. All problems found are reported together,
// each naming its line.
func Parse(data []byte) (*Topology, error) {
	var doc yaml.Node
	ve := &ValidationError{}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		ve.add(yamlErrLine(err), "not valid YAML: %s", trimYAMLErr(err))
		return nil, ve
	}
	t := &Topology{}
	if len(doc.Content) == 0 {
		ve.add(0, "empty file: a topology needs `nodes:` and `links:`")
		return nil, ve
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		ve.add(root.Line, "top level must be a mapping with `nodes:` and `links:`")
		return nil, ve
	}
	eachKey(root, ve, func(key string, k, v *yaml.Node) {
		switch key {
		case "nodes":
			eachItem(v, "nodes", ve, func(item *yaml.Node) {
				if n, ok := parseNode(item, ve); ok {
					t.Nodes = append(t.Nodes, n)
				}
			})
		case "links":
			eachItem(v, "links", ve, func(item *yaml.Node) {
				if l, ok := parseLink(item, ve); ok {
					t.Links = append(t.Links, l)
				}
			})
		default:
			ve.add(k.Line, "unknown key %q at top level (want nodes, links)", key)
		}
	})
	if len(ve.Problems) == 0 {
		t.index(ve)
	}
	if len(ve.Problems) > 0 {
		return nil, ve
	}
	return t, nil
}

func parseNode(item *yaml.Node, ve *ValidationError) (Node, bool) {
	n := Node{Kind: KindRouter, Line: item.Line}
	before := len(ve.Problems)
	if item.Kind != yaml.MappingNode {
		ve.add(item.Line, "a node must be a mapping with name, kind and address")
		return n, false
	}
	seenName := false
	eachKey(item, ve, func(key string, k, v *yaml.Node) {
		switch key {
		case "name":
			n.Name, seenName = scalar(v, "node name", ve), true
		case "kind":
			n.Kind = Kind(scalar(v, "kind", ve))
		case "address":
			s := scalar(v, "address", ve)
			a, err := netip.ParseAddr(s)
			if err != nil {
				ve.add(v.Line, "node address %q is not an IP address", s)
				return
			}
			n.Address = a
		default:
			ve.add(k.Line, "unknown key %q in node (want name, kind, address)", key)
		}
	})
	if !seenName {
		ve.add(item.Line, "node without a name")
	}
	return n, len(ve.Problems) == before
}

func parseLink(item *yaml.Node, ve *ValidationError) (Link, bool) {
	l := Link{Reservable: DefaultReservable, Cost: DefaultCost, Line: item.Line}
	before := len(ve.Problems)
	if item.Kind != yaml.MappingNode {
		ve.add(item.Line, "a link must be a mapping with a, b and capacity")
		return l, false
	}
	seen := map[string]bool{}
	eachKey(item, ve, func(key string, k, v *yaml.Node) {
		seen[key] = true
		switch key {
		case "name":
			l.Name = scalar(v, "link name", ve)
			if msg := checkName(strings.ReplaceAll(l.Name, "/", "")); msg != "" {
				ve.add(v.Line, "link name %q: %s", l.Name, msg)
			}
		case "a", "b":
			s := scalar(v, key, ve)
			node, iface, _ := strings.Cut(s, ":")
			e := Endpoint{Node: strings.TrimSpace(node), Interface: strings.TrimSpace(iface)}
			if e.Node == "" {
				ve.add(v.Line, "link end %s %q: want node or node:interface", key, s)
			}
			if key == "a" {
				e.Addr, l.A = l.A.Addr, e
			} else {
				e.Addr, l.B = l.B.Addr, e
			}
		case "a_addr", "b_addr":
			s := scalar(v, key, ve)
			a, err := netip.ParseAddr(s)
			if err != nil {
				ve.add(v.Line, "%s %q is not an IP address", key, s)
				return
			}
			if key == "a_addr" {
				l.A.Addr = a
			} else {
				l.B.Addr = a
			}
		case "capacity":
			s := scalar(v, "capacity", ve)
			c, err := ParseRate(s)
			if err != nil {
				ve.add(v.Line, "capacity: %v", err)
				return
			}
			if c == 0 {
				ve.add(v.Line, "capacity %q must be positive", s)
			}
			l.Capacity = c
		case "reservable":
			s := scalar(v, "reservable", ve)
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(f) || f <= 0 || f > 1 {
				ve.add(v.Line, "reservable %q must be a fraction in (0, 1], e.g. 0.8", s)
				return
			}
			l.Reservable = f
		case "cost":
			s := scalar(v, "cost", ve)
			c, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				ve.add(v.Line, "cost %q must be a non-negative integer", s)
				return
			}
			l.Cost = uint32(c)
		case "srlg":
			if v.Kind != yaml.SequenceNode {
				ve.add(v.Line, "srlg must be a list, e.g. [duct-7]")
				return
			}
			for _, g := range v.Content {
				l.SRLG = append(l.SRLG, scalar(g, "srlg", ve))
			}
		default:
			ve.add(k.Line, "unknown key %q in link (want name, a, b, a_addr, b_addr, capacity, reservable, cost, srlg)", key)
		}
	})
	for _, req := range []string{"a", "b", "capacity"} {
		if !seen[req] {
			ve.add(item.Line, "link without %s", req)
		}
	}
	return l, len(ve.Problems) == before
}

// eachKey calls fn for every key of a mapping, reporting duplicate and non-string keys.
func eachKey(m *yaml.Node, ve *ValidationError, fn func(key string, k, v *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			ve.add(k.Line, "keys must be plain names")
			continue
		}
		if seen[k.Value] {
			ve.add(k.Line, "key %q given twice", k.Value)
			continue
		}
		seen[k.Value] = true
		fn(k.Value, k, v)
	}
}

func eachItem(v *yaml.Node, what string, ve *ValidationError, fn func(*yaml.Node)) {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return
	}
	if v.Kind != yaml.SequenceNode {
		ve.add(v.Line, "%s must be a list", what)
		return
	}
	for _, item := range v.Content {
		fn(item)
	}
}

func scalar(v *yaml.Node, what string, ve *ValidationError) string {
	if v.Kind != yaml.ScalarNode {
		ve.add(v.Line, "%s must be a single value", what)
		return ""
	}
	return strings.TrimSpace(v.Value)
}

func yamlErrLine(err error) int {
	var te *yaml.TypeError
	s := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		s = te.Errors[0]
	}
	if i := strings.Index(s, "line "); i >= 0 {
		rest := s[i+5:]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if n, err := strconv.Atoi(rest[:j]); err == nil {
			return n
		}
	}
	return 0
}

func trimYAMLErr(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	if i := strings.Index(s, "line "); i == 0 {
		if j := strings.Index(s, ": "); j > 0 {
			s = s[j+2:]
		}
	}
	return s
}

// Marshal renders t as a topology file that Parse reads back to the same model.
func Marshal(t *Topology) ([]byte, error) {
	type yNode struct {
		Name    string `yaml:"name"`
		Kind    Kind   `yaml:"kind"`
		Address string `yaml:"address,omitempty"`
	}
	type yLink struct {
		Name       string   `yaml:"name"`
		A          string   `yaml:"a"`
		B          string   `yaml:"b"`
		AAddr      string   `yaml:"a_addr,omitempty"`
		BAddr      string   `yaml:"b_addr,omitempty"`
		Capacity   string   `yaml:"capacity"`
		Reservable float64  `yaml:"reservable"`
		Cost       uint32   `yaml:"cost"`
		SRLG       []string `yaml:"srlg,omitempty,flow"`
	}
	var out struct {
		Nodes []yNode `yaml:"nodes"`
		Links []yLink `yaml:"links"`
	}
	addr := func(a netip.Addr) string {
		if a.IsValid() {
			return a.String()
		}
		return ""
	}
	for _, n := range t.Nodes {
		out.Nodes = append(out.Nodes, yNode{Name: n.Name, Kind: n.Kind, Address: addr(n.Address)})
	}
	for _, l := range t.Links {
		out.Links = append(out.Links, yLink{
			Name: l.Name, A: l.A.String(), B: l.B.String(), AAddr: addr(l.A.Addr), BAddr: addr(l.B.Addr),
			Capacity: FormatRate(l.Capacity), Reservable: l.Reservable, Cost: l.Cost, SRLG: l.SRLG,
		})
	}
	return yaml.Marshal(&out)
}

// SRLGs returns the sorted set of shared-risk groups named in t.
func (t *Topology) SRLGs() []string {
	set := map[string]bool{}
	for _, l := range t.Links {
		for _, g := range l.SRLG {
			set[g] = true
		}
	}
	out := make([]string, 0, len(set))
	for g := range set {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}
