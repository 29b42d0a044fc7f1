package dashboard

import (
	"bytes"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"time"

	"github.com/vonproject/von/internal/topodraw"
)

// web holds the page: one HTML file, one script, one style sheet. Nothing
// else is loaded, from here or from anywhere (the Content-Security-Policy
// says so to the browser).
//
//go:embed web/index.html web/dashboard.js web/dashboard.css
var web embed.FS

const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// routes are the dashboard's pages; every one is a GET (or HEAD).
func (d *Dashboard) routes() *http.ServeMux {
	mux := http.NewServeMux()
	files, _ := fs.Sub(web, "web")
	static := http.FileServerFS(files)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		d.want() // the page asks for /events next: start reading now
		b, _ := fs.ReadFile(files, "index.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(b)
	})
	mux.Handle("GET /dashboard.js", static)
	mux.Handle("GET /dashboard.css", static)
	mux.HandleFunc("GET /api/state", d.serveState)
	mux.HandleFunc("GET /topology.svg", d.serveSVG)
	mux.HandleFunc("GET /events", d.serveEvents)
	return mux
}

// ServeHTTP serves the dashboard: / (the page), /dashboard.js,
// /dashboard.css, /api/state (the Snapshot as JSON), /topology.svg (the
// network, coloured by what is reserved) and /events (server-sent events: a
// "state" snapshot, then "on", "gone", "usage" and "status" changes).
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	d.mux.ServeHTTP(w, r)
}

// withState wakes the dashboard if it is idle, waits (up to 10 s) until it
// follows the manager, and calls fn with its state, under d.mu. It answers
// 503 itself when it cannot.
func (d *Dashboard) withState(w http.ResponseWriter, r *http.Request, fn func(*state)) bool {
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-d.want():
		case <-d.stopped:
			http.Error(w, "dashboard: stopped", http.StatusServiceUnavailable)
			return false
		case <-t.C:
			http.Error(w, "dashboard: still reading the manager; try again", http.StatusServiceUnavailable)
			return false
		case <-r.Context().Done():
			return false
		}
		d.mu.Lock()
		if d.st != nil {
			fn(d.st)
			d.mu.Unlock()
			return true
		}
		d.mu.Unlock() // it went idle just now: wake it again
	}
}

func (d *Dashboard) serveState(w http.ResponseWriter, r *http.Request) {
	var snap *Snapshot
	if !d.withState(w, r, func(*state) { snap = d.snapshotLocked() }) {
		return
	}
	b, err := json.Marshal(snap)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}

// serveSVG draws the topology with every link direction coloured by what is
// reserved on it (404 while no topology is applied).
func (d *Dashboard) serveSVG(w http.ResponseWriter, r *http.Request) {
	// What d.st points to is replaced, never changed in place.
	var st state
	if !d.withState(w, r, func(s *state) { st = *s }) {
		return
	}
	if st.topo == nil {
		http.Error(w, "no topology applied yet (vonctl topology apply -f FILE)", http.StatusNotFound)
		return
	}
	pic := topodraw.Picture{Topo: st.topo.Topo, Layout: st.layout, Direction: func(link int, dir topodraw.Dir) (string, string) {
		u := st.usage[2*link+int(dir)]
		return u.Color, u.Title
	}}
	var b bytes.Buffer
	if err := pic.Write(&b); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	_, _ = w.Write(b.Bytes())
}

// serveEvents streams the state: a "state" snapshot first, then the changes,
// and a comment every 15 s so that dead connections are noticed. A page too
// slow to take the changes is cut off and, reconnecting, starts afresh.
func (d *Dashboard) serveEvents(w http.ResponseWriter, r *http.Request) {
	var (
		c    *client
		snap *Snapshot
		ok   bool
	)
	if !d.withState(w, r, func(*state) { c, snap, ok = d.subscribeLocked() }) {
		return
	}
	if !ok {
		http.Error(w, "dashboard: too many pages follow it; close some", http.StatusServiceUnavailable)
		return
	}
	defer d.unsubscribe(c)
	rc := http.NewResponseController(w)
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }() // the connection may serve another request
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write(append([]byte("retry: 2000\n\n"), event("state", snap)...)) {
		return
	}
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-d.stopped:
			return
		case b, ok := <-c.ch:
			if !ok || !write(b) {
				return
			}
		case <-ping.C:
			if !write([]byte(": ping\n\n")) {
				return
			}
		}
	}
}
