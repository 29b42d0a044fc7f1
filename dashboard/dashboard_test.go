package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/reservation"
	"github.com/vonproject/von/topology"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ring = `nodes:
  - {name: h1, kind: host, address: 10.77.1.1}
  - {name: h2, kind: host, address: 10.77.1.2}
  - {name: r1}
  - {name: r2}
  - {name: r3}
  - {name: r4}
links:
  - {a: h1, b: r1, capacity: 100Mbit}
  - {a: r1, b: r2, capacity: 20Mbit}
  - {a: r2, b: r4, capacity: 20Mbit}
  - {a: r1, b: r3, capacity: 20Mbit, cost: 2}
  - {a: r3, b: r4, capacity: 20Mbit, cost: 2}
  - {a: r4, b: h2, capacity: 100Mbit}
`

// fake is a Source in memory: the test drives its watch.
type fake struct {
	mu       sync.Mutex
	topo     *reservation.TopologyState
	ons      map[string]*vonv1.Reservation
	reserved map[reservation.Charge]uint64
	agents   []*vonv1.Agent
	measured map[uint32]uint64
	leader   string
	lists    int

	feed chan change
	fail chan error
}

func newFake(t *testing.T, yaml string) *fake {
	f := &fake{ons: map[string]*vonv1.Reservation{}, reserved: map[reservation.Charge]uint64{},
		leader: "m1", feed: make(chan change), fail: make(chan error)}
	f.setTopology(t, yaml, 1)
	return f
}

func (f *fake) setTopology(t *testing.T, yaml string, rev int64) {
	tp, err := topology.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.topo = &reservation.TopologyState{Topo: tp, YAML: yaml, Revision: rev}
	f.mu.Unlock()
}

func (f *fake) Topology(context.Context) (*reservation.TopologyState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.topo == nil {
		return nil, reservation.ErrNoTopology
	}
	return f.topo, nil
}

func (f *fake) List(context.Context) ([]*vonv1.Reservation, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	var out []*vonv1.Reservation
	for _, r := range f.ons {
		out = append(out, r)
	}
	return out, 10, nil
}

func (f *fake) Watch(ctx context.Context, _ int64, fn func(vonv1.ReservationEventType, *vonv1.Reservation) error) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-f.fail:
			return err
		case c := <-f.feed:
			if err := fn(c.typ, c.r); err != nil {
				return err
			}
		}
	}
}

func (f *fake) Agents(context.Context) ([]*vonv1.Agent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.agents, nil
}

func (f *fake) Measured(context.Context) (map[uint32]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.measured), nil
}

func (f *fake) Reserved(context.Context) (map[reservation.Charge]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[reservation.Charge]uint64{}
	for k, v := range f.reserved {
		out[k] = v
	}
	return out, nil
}

func (f *fake) Leader(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader, nil
}

// change makes a reservation change: the record (and the ledger) first, then
// the watch event, as etcd orders them.
func (f *fake) change(t *testing.T, typ vonv1.ReservationEventType, r *vonv1.Reservation, reserved map[reservation.Charge]uint64) {
	t.Helper()
	f.mu.Lock()
	if typ == vonv1.ReservationEventType_RESERVATION_EVENT_TYPE_DELETED {
		delete(f.ons, r.GetName())
	} else {
		f.ons[r.GetName()] = r
	}
	if reserved != nil {
		f.reserved = reserved
	}
	f.mu.Unlock()
	select {
	case f.feed <- change{typ, r}:
	case <-time.After(5 * time.Second):
		t.Fatal("the dashboard does not follow the watch")
	}
}

func committed(name string) *vonv1.Reservation {
	return &vonv1.Reservation{Name: name, OnId: 0x1234, State: vonv1.ReservationState_RESERVATION_STATE_COMMITTED,
		RateBps: 8_000_000, Redundant: true, Members: []*vonv1.Member{{Name: "h1"}, {Name: "h2"}},
		LeaseExpireTime: timestamppb.New(time.Now().Add(time.Hour)),
		Paths: []*vonv1.MemberPairPaths{{SrcMember: "h1", DstMember: "h2", Paths: []*vonv1.Path{
			{Index: 0, Nodes: []string{"h1", "r1", "r2", "r4", "h2"}, Links: []string{"h1-r1", "r1-r2", "r2-r4", "r4-h2"}},
			{Index: 1, Nodes: []string{"h1", "r1", "r3", "r4", "h2"}, Links: []string{"h1-r1", "r1-r3", "r3-r4", "r4-h2"}},
		}}}}
}

// running starts a dashboard over src behind a test server.
func running(t *testing.T, src Source, opt Options) (*Dashboard, *httptest.Server) {
	t.Helper()
	if opt.Poll == 0 {
		opt.Poll = 50 * time.Millisecond
	}
	opt.Settle = 10 * time.Millisecond
	d := New(src, opt)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	srv := httptest.NewServer(d)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		srv.Close()
	})
	return d, srv
}

type sse struct {
	name string
	data []byte
}

// stream follows /events until the test ends.
func stream(t *testing.T, url string) <-chan sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		resp.Body.Close()
		t.Fatalf("/events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	ch := make(chan sse, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<24)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = []byte(strings.TrimPrefix(line, "data: "))
			case line == "" && ev.name != "":
				ch <- ev
				ev = sse{}
			}
		}
	}()
	t.Cleanup(func() { cancel(); resp.Body.Close(); <-done })
	return ch
}

// next waits for the next event called name, skipping others, and decodes it.
func next(t *testing.T, ch <-chan sse, name string, v any) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("the stream ended waiting for %q", name)
			}
			if ev.name != name {
				continue
			}
			if err := json.Unmarshal(ev.data, v); err != nil {
				t.Fatalf("%s: %v: %s", name, err, ev.data)
			}
			return
		case <-deadline:
			t.Fatalf("no %q event", name)
		}
	}
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// The stream starts with the whole state, then says what changes: a new
// reservation ("on"), what it reserves ("usage", only the directions that
// moved), its end, and its deletion ("gone").
func TestEventsFollowTheManager(t *testing.T) {
	f := newFake(t, ring)
	f.agents = []*vonv1.Agent{{Node: "r1", Live: true, LastSeenTime: timestamppb.Now()}, {Node: "r2"}}
	_, srv := running(t, f, Options{})
	ch := stream(t, srv.URL)
	var s Snapshot
	next(t, ch, "state", &s)
	if s.Topology == nil || len(s.Topology.Nodes) != 6 || len(s.Topology.Links) != 6 || len(s.Usage) != 12 || len(s.ONs) != 0 {
		t.Fatalf("first state: %+v", s)
	}
	if s.Leader != "m1" || len(s.Agents) != 2 || !s.Agents[0].Live || s.Agents[1].Live || len(s.Legend.Paths) != 2 {
		t.Fatalf("leader, agents or legend: %+v", s)
	}
	for _, n := range s.Topology.Nodes {
		if n.X < 0 || n.Y < 0 || n.X > s.Topology.Width || n.Y > s.Topology.Height {
			t.Errorf("node %s at (%v, %v) is outside %v × %v", n.Name, n.X, n.Y, s.Topology.Width, s.Topology.Height)
		}
	}

	r := committed("video")
	charged := map[reservation.Charge]uint64{{Link: "h1-r1", Dir: reservation.AtoB}: 16_000_000, {Link: "r1-r2", Dir: reservation.AtoB}: 8_000_000}
	f.change(t, vonv1.ReservationEventType_RESERVATION_EVENT_TYPE_CREATED, r, charged)
	var on ON
	next(t, ch, "on", &on)
	if on.Name != "video" || on.State != "committed" || !on.Live || on.Rate != "8Mbit" || len(on.Paths) != 1 || len(on.Paths[0].Paths) != 2 ||
		on.LeaseExpires == nil || !on.Redundant || strings.Join(on.Members, ",") != "h1,h2" {
		t.Fatalf("on: %+v", on)
	}
	var u struct{ Usage []Usage }
	next(t, ch, "usage", &u)
	got := map[string]Usage{}
	for _, x := range u.Usage {
		got[x.Link+"/"+x.Dir] = x
	}
	if len(got) != 2 || got["h1-r1/ab"].ReservedBps != 16_000_000 || got["r1-r2/ab"].ReservedBps != 8_000_000 {
		t.Fatalf("usage: %+v", u.Usage)
	}
	if x := got["r1-r2/ab"]; x.Title != "r1 → r2 (link r1-r2): 8Mbit reserved of 16Mbit reservable (50%); capacity 20Mbit" || x.Color == s.Usage[0].Color {
		t.Errorf("r1-r2 a->b: %+v", x)
	}

	ended := committed("video")
	ended.State = vonv1.ReservationState_RESERVATION_STATE_RELEASED
	f.change(t, vonv1.ReservationEventType_RESERVATION_EVENT_TYPE_UPDATED, ended, map[reservation.Charge]uint64{})
	next(t, ch, "on", &on)
	if on.State != "released" || on.Live {
		t.Fatalf("released: %+v", on)
	}
	next(t, ch, "usage", &u)
	if len(u.Usage) != 2 || u.Usage[0].ReservedBps != 0 || u.Usage[1].ReservedBps != 0 {
		t.Fatalf("usage after release: %+v", u.Usage)
	}
	f.change(t, vonv1.ReservationEventType_RESERVATION_EVENT_TYPE_DELETED, ended, nil)
	var g struct{ Name string }
	next(t, ch, "gone", &g)
	if g.Name != "video" {
		t.Fatalf("gone: %+v", g)
	}

	// An agent going down is a "status" at the next poll.
	f.mu.Lock()
	f.agents = []*vonv1.Agent{{Node: "r1"}, {Node: "r2"}}
	f.mu.Unlock()
	var st Status
	for deadline := time.Now().Add(5 * time.Second); ; {
		next(t, ch, "status", &st)
		if len(st.Agents) == 2 && !st.Agents[0].Live {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: %+v", st)
		}
	}
	// What agents measure an ON carried is a "status" too.
	f.mu.Lock()
	f.measured = map[uint32]uint64{7: 6_100_000}
	f.mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); ; {
		next(t, ch, "status", &st)
		if st.Measured[7] == 6_100_000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status without the measured rate: %+v", st)
		}
	}
}

// /api/state is the snapshot; /topology.svg the picture, coloured by it; the
// page and its two files are embedded; nothing but GET is served.
func TestEndpoints(t *testing.T) {
	f := newFake(t, ring)
	f.ons["video"] = committed("video")
	f.reserved = map[reservation.Charge]uint64{{Link: "r1-r2", Dir: reservation.BtoA}: 16_000_000}
	_, srv := running(t, f, Options{})
	code, body, h := get(t, srv.URL+"/api/state")
	var s Snapshot
	if code != 200 || json.Unmarshal([]byte(body), &s) != nil || len(s.ONs) != 1 || s.ONs[0].Name != "video" {
		t.Fatalf("/api/state: %d %s", code, body)
	}
	if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("no CSP: %v", h)
	}
	code, body, h = get(t, srv.URL+"/topology.svg")
	if code != 200 || h.Get("Content-Type") != "image/svg+xml" {
		t.Fatalf("/topology.svg: %d %s", code, body)
	}
	if err := xml.Unmarshal([]byte(body), new(struct{})); err != nil {
		t.Fatalf("topology.svg is not XML: %v", err)
	}
	for _, n := range []string{"h1", "h2", "r1", "r2", "r3", "r4"} {
		if !strings.Contains(body, `data-node="`+n+`"`) {
			t.Errorf("topology.svg lacks node %s", n)
		}
	}
	full := topology.FormatRate(16_000_000)
	if !strings.Contains(body, `id="d-1-ba"`) || !strings.Contains(body, "r2 → r1 (link r1-r2): "+full+" reserved of 16Mbit reservable (100%)") {
		t.Errorf("topology.svg lacks r1-r2's b->a figures:\n%s", body)
	}
	for path, typ := range map[string]string{"/": "text/html; charset=utf-8", "/dashboard.js": "text/javascript; charset=utf-8", "/dashboard.css": "text/css; charset=utf-8"} {
		code, body, h := get(t, srv.URL+path)
		if code != 200 || h.Get("Content-Type") != typ || len(body) < 100 {
			t.Errorf("%s: %d %q %d bytes", path, code, h.Get("Content-Type"), len(body))
		}
		if body := strings.ReplaceAll(body, "http://www.w3.org/2000/svg", ""); strings.Contains(body, "http://") || strings.Contains(body, "https://") || strings.Contains(body, "//cdn") {
			t.Errorf("%s refers to another site: the page must work offline", path)
		}
	}
	if code, _, _ := get(t, srv.URL+"/nope"); code != 404 {
		t.Errorf("/nope: %d", code)
	}
	resp, err := http.Post(srv.URL+"/api/state", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/state: %s", resp.Status)
	}
}

// A new topology is a new "state"; a failed watch is followed by a fresh
// read of everything, not by a stale list.
func TestStartsOverOnTopologyChangeAndWatchFailure(t *testing.T) {
	f := newFake(t, ring)
	_, srv := running(t, f, Options{})
	ch := stream(t, srv.URL)
	var s Snapshot
	next(t, ch, "state", &s)
	f.setTopology(t, ring+"  - {a: r2, b: r3, capacity: 1Gbit}\n", 2)
	next(t, ch, "state", &s)
	if s.Topology.Revision != 2 || len(s.Topology.Links) != 7 {
		t.Fatalf("after the new topology: %+v", s.Topology)
	}
	f.mu.Lock()
	f.ons["late"] = committed("late")
	lists := f.lists
	f.mu.Unlock()
	select {
	case f.fail <- errors.New("etcd: mvcc: required revision has been compacted"):
	case <-time.After(5 * time.Second):
		t.Fatal("no watch to fail")
	}
	next(t, ch, "state", &s) // after a second of backoff
	if len(s.ONs) != 1 || s.ONs[0].Name != "late" {
		t.Fatalf("after the watch failed: %+v", s.ONs)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lists != lists+1 {
		t.Errorf("listed %d times after the failure, want once", f.lists-lists)
	}
}

// A page that does not read its stream is cut off instead of holding the
// others up; a page beyond MaxClients is refused.
func TestSlowAndSurplusPages(t *testing.T) {
	f := newFake(t, ring)
	d, srv := running(t, f, Options{MaxClients: 2, Queue: 20})
	fast := stream(t, srv.URL)
	var s Snapshot
	next(t, fast, "state", &s)
	// A subscriber that never reads: its queue fills and it is dropped.
	d.mu.Lock()
	slow, _, ok := d.subscribeLocked()
	d.mu.Unlock()
	if !ok {
		t.Fatal("second page refused")
	}
	if code, _, _ := get(t, srv.URL+"/events"); code != http.StatusServiceUnavailable {
		t.Errorf("third page: %d, want 503", code)
	}
	var on ON
	for i := range 50 {
		r := committed(fmt.Sprintf("on-%d", i))
		f.change(t, vonv1.ReservationEventType_RESERVATION_EVENT_TYPE_CREATED, r, nil)
		next(t, fast, "on", &on)
	}
	n := 0
	for range slow.ch {
		n++
	}
	if n != cap(slow.ch) {
		t.Errorf("the slow page got %d events before it was cut off, want %d", n, cap(slow.ch))
	}
	d.unsubscribe(slow) // no double close
}

// The dashboard reads nothing until someone asks, and stops reading when
// nobody has looked for Options.Idle.
func TestIdleUntilAsked(t *testing.T) {
	f := newFake(t, ring)
	d, srv := running(t, f, Options{Poll: 20 * time.Millisecond, Idle: 100 * time.Millisecond})
	lists := func() int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.lists
	}
	time.Sleep(200 * time.Millisecond)
	if n := lists(); n != 0 {
		t.Fatalf("read the manager %d times before anyone asked", n)
	}
	if code, _, _ := get(t, srv.URL+"/api/state"); code != 200 || lists() != 1 {
		t.Fatalf("/api/state: %d after %d reads", code, lists())
	}
	// A page that follows keeps it awake.
	ch := stream(t, srv.URL)
	var s Snapshot
	next(t, ch, "state", &s)
	time.Sleep(300 * time.Millisecond)
	if d.Snapshot() == nil {
		t.Fatal("went idle while a page follows")
	}
	f.change(t, vonv1.ReservationEventType_RESERVATION_EVENT_TYPE_CREATED, committed("x"), nil)
	var on ON
	next(t, ch, "on", &on)
	if on.Name != "x" {
		t.Errorf("on: %+v", on)
	}
}

// Without a page, it goes idle after Options.Idle and wakes at the next request.
func TestGoesIdle(t *testing.T) {
	f := newFake(t, ring)
	d, srv := running(t, f, Options{Poll: 20 * time.Millisecond, Idle: 100 * time.Millisecond})
	if code, _, _ := get(t, srv.URL+"/api/state"); code != 200 {
		t.Fatal(code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for d.Snapshot() != nil {
		if time.Now().After(deadline) {
			t.Fatal("never went idle")
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.mu.Lock()
	n := f.lists
	f.mu.Unlock()
	time.Sleep(200 * time.Millisecond)
	f.mu.Lock()
	idleReads := f.lists - n
	f.mu.Unlock()
	if idleReads != 0 {
		t.Errorf("%d reads while idle", idleReads)
	}
	code, body, _ := get(t, srv.URL+"/topology.svg")
	if code != 200 || !strings.Contains(body, `data-node="r4"`) {
		t.Fatalf("after idle: %d %.100s", code, body)
	}
}

func TestRate(t *testing.T) {
	for in, want := range map[uint64]string{0: "0bit", 16_000_000: "16Mbit", 1_500_000: "1500kbit", 12_345_678: "12.3Mbit", 999: "999bit", 1_234_567_891: "1.23Gbit"} {
		if got := rate(in); got != want {
			t.Errorf("rate(%d) = %q, want %q", in, got, want)
		}
	}
}
