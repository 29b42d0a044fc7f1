package disjoint

import (
	"errors"
	"testing"
)

// FuzzDisjoint decodes a small multigraph and a request from bytes and checks
// the answer against the brute-force oracle. Run: go test -fuzz=FuzzDisjoint ./disjoint/
func FuzzDisjoint(f *testing.F) {
	f.Add([]byte{4, 0, 0, 1, 1, 1, 2, 1, 2, 3, 1, 0, 2, 3, 1, 3, 3, 0, 3}) // the trap
	f.Add([]byte{2, 0x13, 0, 1, 5, 0, 1, 2, 1, 0, 0})
	f.Add([]byte{6, 0xff, 1, 2, 0, 2, 3, 9, 3, 4, 1, 0, 5, 2, 4, 5, 7})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		n := 2 + int(data[0])%6
		flags := data[1]
		body := data[2:]
		names := []string{"a", "b", "c", "d", "e", "f", "g"}[:n]
		var links []Link
		for len(body) >= 3 && len(links) < 11 {
			a, b, c := int(body[0])%n, int(body[1])%n, body[2]
			body = body[3:]
			if a == b {
				continue
			}
			l := Link{A: a, B: b, Cost: uint32(c % 7), Capacity: uint64(1+c/7%4) * 1000, Reservable: 1}
			if c&0x80 != 0 {
				l.SRLG = []string{[]string{"x", "y"}[c>>6&1]}
			}
			links = append(links, l)
		}
		g, err := New(names, links)
		if err != nil {
			t.Fatal(err)
		}
		r := oracleReq{from: 0, to: n - 1}
		r.opt.Mode = Mode(flags & 1)
		r.opt.IgnoreSRLG = flags&2 != 0
		if flags&4 != 0 {
			r.opt.Rate = 2000
		}
		if flags&8 != 0 {
			r.opt.Direction = Forward
		}
		k := 1 + int(flags>>4)%3
		r.opt.K = k
		want, _ := oracleBest(g, r, k)
		res, err := g.Disjoint(r.from, r.to, r.opt)
		if errors.Is(err, ErrInternal) {
			t.Fatal(err)
		}
		if want < 0 {
			if err == nil {
				t.Fatalf("got %+v, oracle: impossible", res)
			}
			return
		}
		if err != nil {
			t.Fatalf("error %v, oracle cost %d", err, want)
		}
		checkResult(t, g, r, k, res)
		if res.TotalCost != want {
			t.Fatalf("cost %d, oracle %d", res.TotalCost, want)
		}
	})
}
