// The VON dashboard's page: it follows /events (a "state" snapshot, then
// "on", "gone", "usage" and "status" changes), draws topology.svg and colours
// and highlights it. No framework, nothing loaded from elsewhere.
'use strict';
(function () {
  const SVGNS = 'http://www.w3.org/2000/svg';
  const MAXROWS = 500; // rows drawn at once; the filter narrows the rest

  const S = {
    topo: null, // the snapshot's topology (null: none applied)
    svgRev: -1, // revision of the drawn picture
    linkIdx: new Map(), nodeIdx: new Map(),
    usage: new Map(), // "link/dir" → usage
    ons: new Map(), // name → ON
    agents: [], leader: '', leaderError: '',
    measured: {}, // on_id → bit/s the agents measured it carrying
    legend: null,
    skew: 0, // manager clock − this clock, ms
    selected: '', showEnded: false, filter: '',
    renderTimer: 0,
  };
  const $ = (id) => document.getElementById(id);

  function make(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const now = () => Date.now() + S.skew;
  const clock = (iso) => { if (iso) S.skew = Date.parse(iso) - Date.now(); };

  // ---- the event stream

  function connect() {
    const es = new EventSource('events');
    const conn = $('conn');
    es.onopen = () => { conn.textContent = 'live'; conn.className = 'conn up'; };
    es.onerror = () => { conn.textContent = 'reconnecting…'; conn.className = 'conn down'; };
    es.addEventListener('state', (e) => onState(JSON.parse(e.data)));
    es.addEventListener('on', (e) => {
      const o = JSON.parse(e.data);
      S.ons.set(o.name, o);
      if (o.name === S.selected) highlight();
      later();
    });
    es.addEventListener('gone', (e) => {
      const g = JSON.parse(e.data);
      S.ons.delete(g.name);
      if (g.name === S.selected) highlight();
      later();
    });
    es.addEventListener('usage', (e) => {
      const list = JSON.parse(e.data).usage || [];
      for (const u of list) S.usage.set(u.link + '/' + u.dir, u);
      paintUsage(list);
    });
    es.addEventListener('status', (e) => {
      const s = JSON.parse(e.data);
      clock(s.now);
      S.agents = s.agents || []; S.leader = s.leader; S.leaderError = s.leader_error || '';
      S.measured = s.measured || {};
      paintNodes();
      later();
    });
  }

  function onState(s) {
    clock(s.now);
    S.leader = s.leader; S.leaderError = s.leader_error || '';
    S.ons = new Map((s.ons || []).map((o) => [o.name, o]));
    S.agents = s.agents || [];
    S.measured = s.measured || {};
    S.usage = new Map((s.usage || []).map((u) => [u.link + '/' + u.dir, u]));
    S.topo = s.topology;
    if (!S.legend) drawLegend(s.legend);
    S.legend = s.legend;
    const rev = S.topo ? S.topo.revision : 0;
    if (rev !== S.svgRev) {
      loadSVG(rev);
    } else {
      paintUsage(); paintNodes(); highlight();
    }
    render();
  }

  // ---- the picture

  function loadSVG(rev) {
    S.svgRev = rev;
    const box = $('topo');
    if (!rev) {
      box.replaceChildren(make('p', { class: 'empty' }, 'No topology applied yet: vonctl topology apply -f FILE'));
      return;
    }
    S.linkIdx = new Map(S.topo.links.map((l, i) => [l.name, i]));
    S.nodeIdx = new Map(S.topo.nodes.map((n, i) => [n.name, i]));
    fetch('topology.svg?rev=' + rev).then((r) => {
      if (!r.ok) throw new Error('topology.svg: HTTP ' + r.status);
      return r.text();
    }).then((text) => {
      if (S.svgRev !== rev) return; // a newer topology is on its way
      box.innerHTML = text; // our own picture: every name in it is escaped
      box.dataset.rev = String(rev);
      const pic = svg();
      if (pic) pic.style.maxHeight = Math.round(1.5 * S.topo.height) + 'px'; // enlarge a small network a little only (CSSOM: allowed by the CSP)
      paintUsage(); paintNodes(); highlight();
    }).catch((err) => {
      S.svgRev = -1;
      box.replaceChildren(make('p', { class: 'empty' }, 'Could not draw the topology: ' + err.message));
    });
  }

  function svg() { return $('topo').querySelector('svg'); }

  // paintUsage colours link directions (all, or those listed) and sets their titles.
  function paintUsage(list) {
    if (!svg()) return;
    for (const u of list || S.usage.values()) {
      const line = document.getElementById('d-' + S.linkIdx.get(u.link) + '-' + u.dir);
      if (!line) continue;
      line.setAttribute('stroke', u.color);
      const t = line.querySelector('title');
      if (t) t.textContent = u.title;
    }
  }

  // paintNodes marks each router by its agent: live, down, or none registered.
  function paintNodes() {
    const pic = svg();
    if (!pic || !S.topo) return;
    const agents = new Map(S.agents.map((a) => [a.node, a]));
    S.topo.nodes.forEach((n, i) => {
      const g = document.getElementById('n-' + i);
      if (!g || n.kind !== 'router') return;
      const a = agents.get(n.name);
      g.classList.toggle('agent-live', !!(a && a.live));
      g.classList.toggle('agent-down', !!(a && !a.live));
      g.classList.toggle('agent-none', !a);
      const t = g.querySelector('title');
      if (t) t.textContent = n.name + ' (router): ' + (a ? (a.live ? 'agent live' : 'agent DOWN') + ', last seen ' + ago(a.last_seen) : 'no agent registered');
    });
  }

  // highlight draws the selected ON's paths over the links (path 0 and 1 in
  // their own styles) and marks its members and routers.
  function highlight() {
    const pic = svg();
    if (!pic) return;
    let g = pic.querySelector('#hl');
    if (!g) {
      g = document.createElementNS(SVGNS, 'g');
      g.setAttribute('id', 'hl');
      g.setAttribute('pointer-events', 'none');
      const nodes = pic.querySelector('g.nodes');
      nodes.parentNode.insertBefore(g, nodes);
    }
    g.replaceChildren();
    pic.querySelectorAll('g.node.member, g.node.onpath').forEach((n) => n.classList.remove('member', 'onpath'));
    const o = S.ons.get(S.selected);
    if (!o || !o.live) return;
    const styles = (S.legend && S.legend.paths) || [];
    const drawn = new Set();
    for (const pair of o.paths || []) {
      for (const p of pair.paths || []) {
        for (const n of p.nodes || []) {
          const e = document.getElementById('n-' + S.nodeIdx.get(n));
          if (e) e.classList.add('onpath');
        }
        for (const ln of p.links || []) {
          const key = p.index + '/' + ln;
          const lg = document.getElementById('l-' + S.linkIdx.get(ln));
          if (drawn.has(key) || !lg) continue;
          drawn.add(key);
          const st = styles.length ? styles[p.index % styles.length] : { color: '#1565c0', dash: '' };
          const line = document.createElementNS(SVGNS, 'line');
          for (const k of ['x1', 'y1', 'x2', 'y2']) line.setAttribute(k, lg.dataset[k]);
          line.setAttribute('class', 'path p' + p.index);
          line.setAttribute('data-link', ln);
          line.setAttribute('stroke', st.color);
          line.setAttribute('stroke-width', '5');
          line.setAttribute('stroke-linecap', 'round');
          line.setAttribute('opacity', '0.9');
          if (st.dash) line.setAttribute('stroke-dasharray', st.dash);
          g.appendChild(line);
        }
      }
    }
    for (const m of o.members || []) {
      const e = document.getElementById('n-' + S.nodeIdx.get(m));
      if (e) e.classList.add('member');
    }
  }

  function drawLegend(lg) {
    if (!lg) return;
    const box = $('legend');
    box.replaceChildren();
    const swatch = (s, cls) => {
      const k = make('span', { class: 'key' });
      const svgEl = document.createElementNS(SVGNS, 'svg');
      svgEl.setAttribute('width', '26'); svgEl.setAttribute('height', '10'); svgEl.setAttribute('class', cls);
      const l = document.createElementNS(SVGNS, 'line');
      l.setAttribute('x1', '1'); l.setAttribute('y1', '5'); l.setAttribute('x2', '25'); l.setAttribute('y2', '5');
      l.setAttribute('stroke', s.color); l.setAttribute('stroke-width', cls === 'pl' ? '5' : '4');
      if (s.dash) l.setAttribute('stroke-dasharray', s.dash);
      svgEl.appendChild(l);
      k.appendChild(svgEl);
      k.appendChild(document.createTextNode(s.label));
      return k;
    };
    box.appendChild(make('span', { class: 'key head' }, 'Reserved of reservable, per direction:'));
    for (const s of lg.usage) box.appendChild(swatch(s, 'sw'));
    box.appendChild(make('span', { class: 'key head' }, 'Selected ON:'));
    for (const s of lg.paths) box.appendChild(swatch(s, 'pl'));
    box.appendChild(make('span', { class: 'key text' }, 'Each link direction is drawn on its right-hand side; hover it for the figures.'));
  }

  // ---- the lists

  function later() {
    if (!S.renderTimer) S.renderTimer = setTimeout(render, 50);
  }

  function matches(o) {
    if (!S.filter) return true;
    const f = S.filter.toLowerCase();
    return o.name.toLowerCase().includes(f) || (o.members || []).some((m) => m.toLowerCase().includes(f));
  }

  function render() {
    clearTimeout(S.renderTimer); S.renderTimer = 0;
    renderONs(); renderAgents(); renderHeader(); renderDetail();
  }

  function renderONs() {
    const all = [...S.ons.values()];
    const liveN = all.filter((o) => o.live).length;
    const rows = all.filter((o) => (S.showEnded || o.live) && matches(o)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    $('oncount').textContent = liveN + ' live';
    $('endedcount').textContent = '(' + (all.length - liveN) + ')';
    $('ons').tBodies[0].replaceChildren(...rows.slice(0, MAXROWS).map(onRow));
    $('onsnote').textContent = rows.length > MAXROWS ? (rows.length - MAXROWS) + ' more: filter to narrow'
      : rows.length === 0 ? (all.length ? 'none match' : 'no reservations') : '';
  }

  function onRow(o) {
    const tr = make('tr', { 'data-name': o.name });
    tr.className = [o.name === S.selected ? 'sel' : '', o.live ? '' : 'ended', o.degraded ? 'degraded' : ''].join(' ').trim();
    tr.appendChild(make('td', { class: 'name' }, o.name));
    tr.appendChild(make('td', { class: 'id', title: '0x' + (o.on_id >>> 0).toString(16).padStart(8, '0') }, String(o.on_id)));
    const st = make('td', { class: 'state ' + o.state }, o.state);
    if (o.not_enforced && o.not_enforced.length) {
      st.appendChild(make('span', { class: 'badge warn', title: o.not_enforced.join('\n') }, 'not enforced on ' + o.not_enforced.length));
    }
    tr.appendChild(st);
    tr.appendChild(make('td', { class: 'rate' }, o.rate));
    const m = o.live ? S.measured[o.on_id] : undefined;
    tr.appendChild(make('td', { class: 'measured', title: m ? 'the busiest of its classes on any router, as the agents report it' : 'nothing measured lately' },
      m ? fmtRate(m) + ' (' + Math.round(100 * m / o.rate_bps) + '%)' : '—'));
    const ms = o.members || [];
    tr.appendChild(make('td', { class: 'members', title: ms.join(', ') }, ms.length > 4 ? ms.slice(0, 4).join(', ') + ' … (' + ms.length + ')' : ms.join(', ')));
    tr.appendChild(make('td', { class: 'lease', 'data-expires': o.live && o.lease_expires ? o.lease_expires : '' }, leaseLeft(o)));
    tr.appendChild(make('td', { class: 'redundant' }, o.redundant ? (o.node_disjoint ? 'yes, node-disjoint' : 'yes') : 'no'));
    tr.appendChild(make('td', { class: 'degraded', title: o.degraded || '' }, o.degraded ? 'yes' : '—'));
    tr.addEventListener('click', () => select(o.name === S.selected ? '' : o.name));
    return tr;
  }

  // fmtRate is bit/s to three significant digits: "6.1Mbit".
  function fmtRate(bps) {
    for (const [div, unit] of [[1e12, 'Tbit'], [1e9, 'Gbit'], [1e6, 'Mbit'], [1e3, 'kbit']]) {
      if (bps >= div) return Number((bps / div).toPrecision(3)) + unit;
    }
    return bps + 'bit';
  }

  function renderDetail() {
    const box = $('detail');
    const o = S.ons.get(S.selected);
    if (!o) { box.hidden = true; box.replaceChildren(); return; }
    box.hidden = false;
    const items = [make('h3', {}, o.name + ' — ' + o.state + ', ' + o.rate + (o.redundant ? ', redundant' : ''))];
    if (o.live && S.measured[o.on_id]) items.push(make('p', {}, 'measured: ' + fmtRate(S.measured[o.on_id]) + ' of ' + o.rate + ' reserved'));
    if (o.owner) items.push(make('p', {}, 'owner: ' + o.owner));
    if (o.degraded) items.push(make('p', { class: 'bad' }, 'degraded: ' + o.degraded));
    for (const ne of o.not_enforced || []) items.push(make('p', { class: 'bad' }, 'not enforced on ' + ne));
    if (o.reason) items.push(make('p', {}, o.reason));
    if (!o.live) items.push(make('p', { class: 'note' }, 'ended: its paths hold nothing and are not drawn'));
    for (const pair of o.paths || []) {
      for (const p of pair.paths || []) {
        const line = make('p', { class: 'pathline' });
        const tag = make('span', { class: 'tag p' + p.index }, 'path ' + p.index);
        const styles = (S.legend && S.legend.paths) || [];
        if (styles.length) tag.style.background = styles[p.index % styles.length].color; // CSSOM: allowed by the CSP
        line.appendChild(tag);
        line.appendChild(document.createTextNode(' ' + pair.from + ' → ' + pair.to + ': ' + (p.nodes || []).join(' → ')));
        items.push(line);
      }
    }
    box.replaceChildren(...items);
  }

  function renderAgents() {
    const agents = new Map(S.agents.map((a) => [a.node, a]));
    const routers = S.topo ? S.topo.nodes.filter((n) => n.kind === 'router').map((n) => n.name) : [];
    const names = [...new Set([...routers, ...agents.keys()])].sort();
    let liveN = 0;
    const rows = names.map((name) => {
      const a = agents.get(name);
      if (a && a.live) liveN++;
      const tr = make('tr', { 'data-node': name, class: a ? (a.live ? 'live' : 'down') : 'none' });
      tr.appendChild(make('td', {}, name));
      tr.appendChild(make('td', { class: 'agentstate' }, a ? (a.live ? 'live' : 'down') : 'no agent'));
      tr.appendChild(make('td', { class: 'seen', 'data-seen': a && a.last_seen ? a.last_seen : '' }, a ? ago(a.last_seen) : '—'));
      tr.appendChild(make('td', {}, a ? a.version || '' : ''));
      return tr;
    });
    $('agents').tBodies[0].replaceChildren(...rows);
    $('agentcount').textContent = liveN + ' of ' + names.length + ' live';
  }

  function renderHeader() {
    const l = $('leader');
    l.textContent = S.leaderError ? 'leader: unknown (' + S.leaderError + ')' : S.leader ? 'leader: ' + S.leader : 'no leader';
    l.className = 'leader ' + (S.leader && !S.leaderError ? 'up' : 'down');
    const t = S.topo;
    $('summary').textContent = t ? t.nodes.length + ' nodes, ' + t.links.length + ' links' : 'no topology';
  }

  function select(name) {
    S.selected = name;
    history.replaceState(null, '', name ? '#on=' + encodeURIComponent(name) : location.pathname + location.search);
    highlight();
    render();
  }

  // ---- times

  function leaseLeft(o) {
    if (!o.live || !o.lease_expires) return '—';
    return left(Date.parse(o.lease_expires) - now());
  }

  function left(ms) {
    if (ms <= 0) return 'expiring';
    let s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + s + 's';
    return s + 's';
  }

  function ago(iso) {
    if (!iso) return 'never';
    const s = Math.max(0, Math.round((now() - Date.parse(iso)) / 1000));
    return s < 90 ? s + ' s ago' : left(s * 1000) + ' ago';
  }

  function tick() {
    document.querySelectorAll('td.lease').forEach((td) => {
      if (td.dataset.expires) td.textContent = left(Date.parse(td.dataset.expires) - now());
    });
    document.querySelectorAll('td.seen').forEach((td) => {
      if (td.dataset.seen) td.textContent = ago(td.dataset.seen);
    });
  }

  // ---- start

  function start() {
    const m = /^#on=(.+)$/.exec(location.hash);
    if (m) S.selected = decodeURIComponent(m[1]);
    $('filter').addEventListener('input', (e) => { S.filter = e.target.value.trim(); render(); });
    $('ended').addEventListener('change', (e) => { S.showEnded = e.target.checked; render(); });
    $('zoom').addEventListener('click', (e) => {
      const full = $('topo').classList.toggle('natural');
      e.target.textContent = full ? 'fit' : 'full size';
    });
    setInterval(tick, 1000);
    connect();
  }
  start();
})();
