// Package dashboard is von-manager's read-only web dashboard: while someone
// looks, it follows the manager (the topology, the reservations through their
// watch, the ledger, the agents) and serves a page that draws the network with
// what is reserved on every link direction, lists the ONs and highlights their
// paths, lists the agents, and updates itself through server-sent events.
// Everything it serves is embedded; it changes nothing. See docs/dashboard.md.
package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vonproject/von/internal/topodraw"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/reservation"
)

// Source is what the dashboard reads; *reservation.Manager provides all of
// it (FromManager). Every method is a read.
type Source interface {
	// Topology is the applied topology (reservation.ErrNoTopology if none).
	Topology(ctx context.Context) (*reservation.TopologyState, error)
	// List returns every reservation and the store revision read.
	List(ctx context.Context) ([]*vonv1.Reservation, int64, error)
	// Watch calls fn with every change after revision rev until ctx ends.
	Watch(ctx context.Context, rev int64, fn func(vonv1.ReservationEventType, *vonv1.Reservation) error) error
	// Agents returns every registered agent with its liveness.
	Agents(ctx context.Context) ([]*vonv1.Agent, error)
	// Reserved is the bit/s reserved on every link direction that has any.
	Reserved(ctx context.Context) (map[reservation.Charge]uint64, error)
	// Leader names the manager that leads ("" while none does).
	Leader(ctx context.Context) (string, error)
	// Measured is the bit/s each ON carried lately, as its routers' agents
	// report it (the busiest class of the ON on any router); ONs that carried
	// nothing are left out.
	Measured(ctx context.Context) (map[uint32]uint64, error)
}

// FromManager reads a manager (leader or standby: everything comes from etcd).
func FromManager(m *reservation.Manager) Source { return managerSource{m} }

type managerSource struct{ *reservation.Manager }

func (s managerSource) Reserved(ctx context.Context) (map[reservation.Charge]uint64, error) {
	return s.Store().Ledger.Reserved(ctx)
}

func (s managerSource) Measured(context.Context) (map[uint32]uint64, error) {
	return s.MeasuredRates(), nil
}

// Options tune a Dashboard. Zero values take the defaults shown.
type Options struct {
	Logger *slog.Logger // nil: discard
	// Poll is how often the agents, the leader and the topology are read
	// again (2s); the ledger is read again every fifth poll, and at once
	// (after Settle) when a reservation changes.
	Poll time.Duration
	// Settle is how long after a reservation change the ledger is read
	// (100ms): changes in a burst are read once.
	Settle time.Duration
	// MaxClients bounds the pages following the event stream at once (64).
	MaxClients int
	// Queue is how many events may wait for one page (1024): a page further
	// behind is cut off, and its browser reconnects and starts afresh.
	Queue int
	// Idle is how long the dashboard keeps following the manager after the
	// last page left and the last request (1m); then it drops what it holds
	// and reads nothing until the next request.
	Idle time.Duration
	// CallTimeout bounds each read of the manager (10s).
	CallTimeout time.Duration
}

// Dashboard follows a Source (Run) and serves the page (ServeHTTP).
type Dashboard struct {
	src Source
	opt Options
	log *slog.Logger
	mux *http.ServeMux

	mu      sync.Mutex
	st      *state // nil while idle
	subs    map[*client]struct{}
	loaded  chan struct{} // closed once st is set; a new one when st goes back to nil
	stopped chan struct{} // closed when Run returns

	demand  chan struct{} // a request wants the state (Run wakes up)
	lastUse atomic.Int64  // unix nanoseconds of the last request

	// drawn is the layout of the topology revision laid out last, kept
	// while idle (Run's goroutine only).
	drawn struct {
		layout *topodraw.Layout
		tj     *Topology
	}
}

// state is what the dashboard knows. Values it points to are never changed
// once published (ONs and agents are replaced, not edited), so a snapshot may
// share them.
type state struct {
	topo     *reservation.TopologyState // nil: no topology applied
	layout   *topodraw.Layout
	tj       *Topology
	ons      map[string]*ON
	reserved map[reservation.Charge]uint64
	usage    []Usage // 2 per link, in link order (ab, ba)
	agents   []Agent
	measured map[uint32]uint64 // bit/s by ON id (Source.Measured)
	leader   string
	leadErr  string
}

// client is one page following /events: encoded events, dropped when full.
type client struct{ ch chan []byte }

// New returns a dashboard over src; call Run to follow it.
func New(src Source, opt Options) *Dashboard {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Poll <= 0 {
		opt.Poll = 2 * time.Second
	}
	if opt.Settle <= 0 {
		opt.Settle = 100 * time.Millisecond
	}
	if opt.MaxClients <= 0 {
		opt.MaxClients = 64
	}
	if opt.Queue <= 0 {
		opt.Queue = 1024
	}
	if opt.CallTimeout <= 0 {
		opt.CallTimeout = 10 * time.Second
	}
	if opt.Idle <= 0 {
		opt.Idle = time.Minute
	}
	d := &Dashboard{src: src, opt: opt, log: opt.Logger, subs: map[*client]struct{}{},
		loaded: make(chan struct{}), stopped: make(chan struct{}), demand: make(chan struct{}, 1)}
	d.mux = d.routes()
	return d
}

// Run serves the dashboard's requests until ctx ends. It reads nothing until
// a request comes; then it reads everything, follows the reservations' watch
// and polls the rest, starts over (after a backoff) when the watch or a read
// fails, and goes back to sleep after Options.Idle without a request or a
// page. Pages following /events are ended when it returns.
func (d *Dashboard) Run(ctx context.Context) error {
	defer close(d.stopped)
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.demand:
		}
		d.log.Debug("dashboard: following the manager")
		for {
			t0 := time.Now()
			err := d.follow(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, errIdle) || d.idle() {
				d.log.Debug("dashboard: nobody looks; idle")
				break
			}
			if errors.Is(err, errTopologyChanged) {
				d.log.Info("dashboard: the topology changed; reading everything again")
				continue
			}
			if time.Since(t0) > time.Minute {
				backoff = time.Second
			}
			d.log.Warn("dashboard: following the manager failed; reading it again", "err", err, "in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			backoff = min(2*backoff, 30*time.Second)
		}
		select { // requests made while it followed
		case <-d.demand:
		default:
		}
		d.mu.Lock()
		d.st, d.loaded = nil, make(chan struct{})
		d.mu.Unlock()
	}
}

// errIdle ends follow when nobody has looked for Options.Idle.
var errIdle = errors.New("idle")

// want notes a request and wakes Run; the channel is closed once the state
// is loaded.
func (d *Dashboard) want() <-chan struct{} {
	d.lastUse.Store(time.Now().UnixNano())
	select {
	case d.demand <- struct{}{}:
	default:
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loaded
}

// idle says whether no page follows and no request came for Options.Idle.
func (d *Dashboard) idle() bool {
	d.mu.Lock()
	n := len(d.subs)
	d.mu.Unlock()
	return n == 0 && time.Since(time.Unix(0, d.lastUse.Load())) > d.opt.Idle
}

type change struct {
	typ vonv1.ReservationEventType
	r   *vonv1.Reservation
}

// follow loads the state, then keeps it current until ctx ends or something fails.
func (d *Dashboard) follow(ctx context.Context) error {
	rev, err := d.load(ctx)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	events := make(chan change, 256)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- d.src.Watch(wctx, rev, func(t vonv1.ReservationEventType, r *vonv1.Reservation) error {
			select {
			case events <- change{t, r}:
				return nil
			case <-wctx.Done():
				return wctx.Err()
			}
		})
	}()
	defer func() {
		cancel()
		if watchDone != nil {
			<-watchDone
		}
	}()
	poll := time.NewTicker(d.opt.Poll)
	defer poll.Stop()
	var settle <-chan time.Time
	for polls := 1; ; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-watchDone:
			watchDone = nil
			if err == nil {
				err = errors.New("the watch ended")
			}
			return err
		case c := <-events:
			d.applyChange(c)
			if settle == nil {
				settle = time.After(d.opt.Settle)
			}
		case <-settle:
			settle = nil
			if err := d.refreshUsage(ctx); err != nil {
				return err
			}
		case <-poll.C:
			polls++
			if err := d.poll(ctx, polls); err != nil {
				return err
			}
		}
	}
}

func (d *Dashboard) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d.opt.CallTimeout)
}

// load reads everything and publishes it as a "state" event.
func (d *Dashboard) load(ctx context.Context) (int64, error) {
	cctx, cancel := d.call(ctx)
	defer cancel()
	st := &state{ons: map[string]*ON{}}
	ts, err := d.src.Topology(cctx)
	switch {
	case errors.Is(err, reservation.ErrNoTopology):
	case err != nil:
		return 0, err
	default:
		st.topo = ts
	}
	list, rev, err := d.src.List(cctx)
	if err != nil {
		return 0, err
	}
	for _, r := range list {
		st.ons[r.GetName()] = onOf(r)
	}
	if st.reserved, err = d.src.Reserved(cctx); err != nil {
		return 0, err
	}
	agents, err := d.src.Agents(cctx)
	if err != nil {
		return 0, err
	}
	st.agents = agentsOf(agents)
	if st.measured, err = d.src.Measured(cctx); err != nil {
		return 0, err
	}
	st.leader, st.leadErr = d.leader(cctx)
	if st.topo != nil {
		if d.drawn.tj == nil || d.drawn.tj.Revision != st.topo.Revision {
			l := topodraw.Compute(st.topo.Topo)
			d.drawn.layout, d.drawn.tj = l, topologyOf(st.topo, l)
		}
		st.layout, st.tj = d.drawn.layout, d.drawn.tj
	}
	st.usage = usageAll(st.topo, st.reserved)
	d.mu.Lock()
	d.st = st
	if len(d.subs) > 0 {
		d.publishLocked("state", d.snapshotLocked())
	}
	select {
	case <-d.loaded:
	default:
		close(d.loaded)
	}
	d.mu.Unlock()
	return rev, nil
}

func (d *Dashboard) leader(ctx context.Context) (string, string) {
	l, err := d.src.Leader(ctx)
	if err != nil {
		return "", err.Error()
	}
	return l, ""
}

func agentsOf(as []*vonv1.Agent) []Agent {
	out := make([]Agent, 0, len(as))
	for _, a := range as {
		out = append(out, agentOf(a))
	}
	slices.SortFunc(out, func(a, b Agent) int { return strings.Compare(a.Node, b.Node) })
	return out
}

func usageAll(ts *reservation.TopologyState, reserved map[reservation.Charge]uint64) []Usage {
	if ts == nil {
		return []Usage{}
	}
	out := make([]Usage, 0, 2*len(ts.Topo.Links))
	for _, l := range ts.Topo.Links {
		out = append(out, usageOf(l, topodraw.AtoB, reserved), usageOf(l, topodraw.BtoA, reserved))
	}
	return out
}

// applyChange publishes one reservation change: "on" with the record, or
// "gone" with its name.
func (d *Dashboard) applyChange(c change) {
	name := c.r.GetName()
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.typ == vonv1.ReservationEventType_RESERVATION_EVENT_TYPE_DELETED {
		delete(d.st.ons, name)
		d.publishLocked("gone", map[string]string{"name": name})
		return
	}
	o := onOf(c.r)
	d.st.ons[name] = o
	d.publishLocked("on", o)
}

// refreshUsage reads the ledger and publishes the link directions whose
// figures changed ("usage").
func (d *Dashboard) refreshUsage(ctx context.Context) error {
	cctx, cancel := d.call(ctx)
	defer cancel()
	reserved, err := d.src.Reserved(cctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	next := usageAll(d.st.topo, reserved)
	var changed []Usage
	for i, u := range next {
		if i >= len(d.st.usage) || d.st.usage[i] != u {
			changed = append(changed, u)
		}
	}
	d.st.reserved, d.st.usage = reserved, next
	if len(changed) > 0 {
		d.publishLocked("usage", map[string]any{"usage": changed})
	}
	return nil
}

// poll reads the topology's revision, the agents and the leader. A new
// topology starts over (a full "state"); changed agents or leader are
// published as "status", and every fifth poll anyway (last-seen times move).
func (d *Dashboard) poll(ctx context.Context, n int) error {
	if d.idle() {
		return errIdle
	}
	cctx, cancel := d.call(ctx)
	defer cancel()
	ts, err := d.src.Topology(cctx)
	switch {
	case errors.Is(err, reservation.ErrNoTopology):
		ts = nil
	case err != nil:
		return err
	}
	d.mu.Lock()
	cur := d.st.topo
	d.mu.Unlock()
	if (ts == nil) != (cur == nil) || (ts != nil && ts.Revision != cur.Revision) {
		return errTopologyChanged
	}
	as, err := d.src.Agents(cctx)
	if err != nil {
		return err
	}
	agents := agentsOf(as)
	measured, err := d.src.Measured(cctx)
	if err != nil {
		return err
	}
	leader, leadErr := d.leader(cctx)
	d.mu.Lock()
	changed := leader != d.st.leader || leadErr != d.st.leadErr || !sameAgents(agents, d.st.agents) || !maps.Equal(measured, d.st.measured)
	d.st.agents, d.st.measured, d.st.leader, d.st.leadErr = agents, measured, leader, leadErr
	if changed || n%5 == 0 {
		d.publishLocked("status", d.statusLocked())
	}
	d.mu.Unlock()
	if n%5 == 0 {
		return d.refreshUsage(ctx)
	}
	return nil
}

// errTopologyChanged ends follow so that Run starts over at once with the new
// topology (a full "state").
var errTopologyChanged = errors.New("the topology changed")

func sameAgents(a, b []Agent) bool {
	return slices.EqualFunc(a, b, func(x, y Agent) bool {
		return x.Node == y.Node && x.Live == y.Live && x.Version == y.Version && x.Endpoint == y.Endpoint
	})
}

// Status is the "status" event: the agents, the measured rates and the
// leader, with the time.
type Status struct {
	Now         time.Time         `json:"now"`
	Leader      string            `json:"leader"`
	LeaderError string            `json:"leader_error,omitempty"`
	Agents      []Agent           `json:"agents"`
	Measured    map[uint32]uint64 `json:"measured"` // bit/s by ON id, as agents report it
}

func (d *Dashboard) statusLocked() Status {
	return Status{Now: time.Now(), Leader: d.st.leader, LeaderError: d.st.leadErr, Agents: d.st.agents, Measured: d.st.measured}
}

// snapshotLocked is the whole state; it shares what it points to with d.st.
func (d *Dashboard) snapshotLocked() *Snapshot {
	st := d.st
	s := &Snapshot{Now: time.Now(), Leader: st.leader, LeaderError: st.leadErr, Topology: st.tj,
		Usage: st.usage, Agents: st.agents, Measured: st.measured, ONs: make([]*ON, 0, len(st.ons)), Legend: legend}
	for _, o := range st.ons {
		s.ONs = append(s.ONs, o)
	}
	slices.SortFunc(s.ONs, func(a, b *ON) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// event encodes one server-sent event.
func event(name string, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen: the types are plain
		b = []byte(`{}`)
	}
	out := make([]byte, 0, len(b)+len(name)+16)
	out = append(out, "event: "...)
	out = append(out, name...)
	out = append(out, "\ndata: "...)
	out = append(out, b...)
	return append(out, "\n\n"...)
}

// publishLocked encodes an event for every page, if any follows.
func (d *Dashboard) publishLocked(name string, v any) {
	if len(d.subs) > 0 {
		d.broadcastLocked(event(name, v))
	}
}

// broadcastLocked queues an event for every page; a page whose queue is full
// is dropped (its stream ends, and the browser reconnects and starts afresh).
func (d *Dashboard) broadcastLocked(ev []byte) {
	for c := range d.subs {
		select {
		case c.ch <- ev:
		default:
			close(c.ch)
			delete(d.subs, c)
		}
	}
}

// subscribeLocked registers a page and returns the snapshot its stream
// starts with; every later change is queued on the client.
func (d *Dashboard) subscribeLocked() (*client, *Snapshot, bool) {
	if len(d.subs) >= d.opt.MaxClients {
		return nil, nil, false
	}
	c := &client{ch: make(chan []byte, d.opt.Queue)}
	d.subs[c] = struct{}{}
	return c, d.snapshotLocked(), true
}

func (d *Dashboard) unsubscribe(c *client) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.subs[c]; ok {
		delete(d.subs, c)
		close(c.ch)
	}
}

// Snapshot is the current state (nil while idle).
func (d *Dashboard) Snapshot() *Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.st == nil {
		return nil
	}
	return d.snapshotLocked()
}
