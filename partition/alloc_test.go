package partition

import (
	"errors"
	"testing"
)

func TestAllocatorStableAndExhaustion(t *testing.T) {
	a := newAllocator(3, 6) // 4 minors
	got := map[uint32]uint16{}
	for _, id := range []uint32{100, 200, 300, 400} {
		m, err := a.assign(id)
		if err != nil {
			t.Fatal(err)
		}
		got[id] = m
	}
	if _, err := a.assign(500); !errors.Is(err, ErrClassesExhausted) {
		t.Fatalf("5th assign: %v, want ErrClassesExhausted", err)
	}
	for id, m := range got {
		if m2, _ := a.assign(id); m2 != m {
			t.Fatalf("re-assign of %d moved %d → %d", id, m, m2)
		}
	}
	a.retain(map[uint32]bool{100: true, 300: true, 400: true})
	m, err := a.assign(500)
	if err != nil || m != got[200] {
		t.Fatalf("after freeing 200, 500 got %d %v, want %d", m, err, got[200])
	}
}

func TestFileStoreRoundTrip(t *testing.T) {
	fs := FileStore{Dir: t.TempDir()}
	s, err := fs.Load()
	if err != nil || len(s.Minors) != 0 {
		t.Fatalf("empty load: %+v %v", s, err)
	}
	a := newAllocator(FirstONMinor, 0xFFFF)
	for id := uint32(1); id <= 1000; id++ {
		if _, err := a.assign(id * 7); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.Save(a.state()); err != nil {
		t.Fatal(err)
	}
	s, err = fs.Load()
	if err != nil {
		t.Fatal(err)
	}
	b := newAllocator(FirstONMinor, 0xFFFF)
	for id, m := range s.Minors {
		if !b.adopt(id, m) {
			t.Fatalf("adopt %d→%d refused", id, m)
		}
	}
	b.next = s.Next
	for id, m := range a.byID {
		if m2, _ := b.assign(id); m2 != m {
			t.Fatalf("id %d: %d after restart, was %d", id, m2, m)
		}
	}
	if n, _ := b.assign(1); n != a.next {
		t.Fatalf("next minor %d, want %d", n, a.next)
	}
}

func TestNormalizeRejects(t *testing.T) {
	cases := []struct {
		name string
		d    Desired
		want error
	}{
		{"dup iface", Desired{Interfaces: []Interface{{"a", 1e6}, {"a", 1e6}}}, ErrInvalid},
		{"tiny capacity", Desired{Interfaces: []Interface{{"a", 10}}}, ErrInvalid},
		{"rate on unmanaged", Desired{ONs: []ON{{ID: 1, Rates: map[string]uint64{"x": 1e6}}}}, ErrInvalid},
		{"overbooked", Desired{Interfaces: []Interface{{"a", 1e6}}, ONs: []ON{
			{ID: 1, Rates: map[string]uint64{"a": 6e5}}, {ID: 2, Rates: map[string]uint64{"a": 6e5}}}}, ErrOverbooked},
		{"dup on", Desired{ONs: []ON{{ID: 1}, {ID: 1}}}, ErrInvalid},
		{"bad path", Desired{ONs: []ON{{ID: 1, Pins: []Pin{{Path: 2}}}}}, ErrInvalid},
		{"long name", Desired{Access: []string{"abcdefghijklmnopq"}}, ErrInvalid},
	}
	for _, c := range cases {
		if _, err := c.d.normalize(); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}
