package wire

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	h := Header{ONID: 0xdeadbeef, Flags: 0x5, PathIndex: 1, KeyEpoch: 0x0102, Seq: 0x0102030405060708}
	b, err := Encode(h)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0xde, 0xad, 0xbe, 0xef, 0x15, 0x01, 0x01, 0x02, 1, 2, 3, 4, 5, 6, 7, 8}
	if !bytes.Equal(b, want) {
		t.Fatalf("encode = % x, want % x", b, want)
	}
	got, rest, err := Parse(append(b, 'x'))
	if err != nil || got != h || string(rest) != "x" {
		t.Fatalf("parse = %+v %q %v", got, rest, err)
	}
	if id, ok := ONID(b); !ok || id != h.ONID {
		t.Fatalf("ONID = %x %v", id, ok)
	}
}

func TestRejects(t *testing.T) {
	good, _ := Encode(Header{ONID: 7})
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"short", good[:15], ErrShort},
		{"version0", func() []byte { b := bytes.Clone(good); b[4] = 0x00; return b }(), ErrVersion},
		{"version2", func() []byte { b := bytes.Clone(good); b[4] = 0x20; return b }(), ErrVersion},
		{"path2", func() []byte { b := bytes.Clone(good); b[5] = 2; return b }(), ErrPathIndex},
	}
	for _, c := range cases {
		if _, _, err := Parse(c.in); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := Encode(Header{PathIndex: 2}); !errors.Is(err, ErrPathIndex) {
		t.Errorf("encode path 2: %v", err)
	}
	if _, err := Encode(Header{Flags: 0x10}); !errors.Is(err, ErrFlags) {
		t.Errorf("encode flags: %v", err)
	}
	if _, ok := ONID([]byte{1, 2, 3}); ok {
		t.Error("ONID of 3 bytes succeeded")
	}
}

func FuzzParse(f *testing.F) {
	good, _ := Encode(Header{ONID: 1, PathIndex: 1, Seq: 9})
	f.Add(good)
	f.Add([]byte{})
	f.Add(make([]byte, 15))
	f.Fuzz(func(t *testing.T, in []byte) {
		h, rest, err := Parse(in)
		if err != nil {
			return
		}
		b, err := Encode(h)
		if err != nil {
			t.Fatalf("parsed header does not re-encode: %+v: %v", h, err)
		}
		if !bytes.Equal(b, in[:HeaderLen]) || len(rest) != len(in)-HeaderLen {
			t.Fatalf("round trip mismatch: % x vs % x", b, in[:HeaderLen])
		}
	})
}
