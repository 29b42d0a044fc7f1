package reservation

import (
	"strings"
	"testing"
	"time"
)

// FuzzReserveInput: no request, valid or not, panics validation or the planner,
// and what validation accepts meets the documented limits.
func FuzzReserveInput(f *testing.F) {
	ts := sixState(f)
	agents := agentsFor(f, ts.Topo)
	f.Add("video", "h1,h2", uint64(10_000_000), true, false, int64(time.Hour))
	f.Add("x", "h1,h2,h3", uint64(1000), true, true, int64(0))
	f.Add("", "h1", uint64(0), false, true, int64(-1))
	f.Add("a b", "h1,h1", uint64(7), false, false, int64(time.Millisecond))
	f.Add("big", "h1,r1", uint64(1<<63), true, false, int64(1<<62))
	m := New(nil, Config{})
	f.Fuzz(func(t *testing.T, name, members string, rate uint64, redundant, nodeDisjoint bool, ttl int64) {
		req := ReserveRequest{Name: name, Members: strings.Split(members, ","), Rate: rate, Redundant: redundant,
			NodeDisjoint: nodeDisjoint, TTL: time.Duration(ttl)}
		if err := m.validate(&req); err != nil {
			return
		}
		if checkResName(req.Name) != "" || len(req.Members) < 2 || len(req.Members) > MaxMembers || req.Rate < MinRate ||
			req.TTL < time.Second || req.TTL > m.cfg.MaxTTL {
			t.Fatalf("validation accepted %+v", req)
		}
		pl, err := place(ts, placeRequest{Name: req.Name, Members: req.Members, Rate: req.Rate, Redundant: req.Redundant,
			NodeDisjoint: req.NodeDisjoint, DSCP: 44, Port: 4750}, nil, agents)
		if err != nil {
			return
		}
		if len(pl.Participants) == 0 && len(pl.Specs) != 0 {
			t.Fatalf("specs without participants: %+v", pl)
		}
	})
}
