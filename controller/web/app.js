// The blocked-flow page: the flow table, the group map, nodes and rule
// hits, from the controller's JSON API (/api/), refreshed every 2 s.
// Hand-written, no library; every value from the API goes into the page
// as text (textContent, attributes), never as markup.
'use strict';
(function () {
  const COLORS = { deny: '#d32f2f', audit: '#f9a825', allow: '#43a047' };
  const VERDICTS = ['deny', 'audit', 'allow'];
  const FIELDS = ['since', 'node', 'group', 'verdict', 'port'];
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);
  const form = $('filters');
  // The pair of groups an edge click chose (and that edge's verdict).
  const pair = { src: '', dst: '', verdict: '' };
  let busy = false;

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function setField(name, value) {
    const f = form.elements[name];
    if (f.tagName === 'SELECT' && ![...f.options].some((o) => o.value === value)) f.append(new Option(value, value));
    f.value = value;
  }
  function fromURL() {
    const p = new URLSearchParams(location.search);
    for (const k of FIELDS) if (p.has(k)) setField(k, p.get(k));
    pair.src = p.get('src_group') || '';
    pair.dst = p.get('dst_group') || '';
    pair.verdict = p.get('pair_verdict') || '';
  }
  function filters() {
    const p = new URLSearchParams();
    for (const k of FIELDS) {
      const v = form.elements[k].value.trim();
      if (v !== '') p.set(k, v);
    }
    return p;
  }
  function toURL() {
    const p = filters();
    if (pair.src) p.set('src_group', pair.src);
    if (pair.dst) p.set('dst_group', pair.dst);
    if (pair.verdict) p.set('pair_verdict', pair.verdict);
    const q = p.toString();
    history.replaceState(null, '', q ? '?' + q : location.pathname);
  }
  function pick(p, keys) {
    const out = new URLSearchParams();
    for (const k of keys) if (p.has(k)) out.set(k, p.get(k));
    return out;
  }
  async function get(path, p) {
    const r = await fetch(path + '?' + p.toString(), { credentials: 'same-origin', cache: 'no-store' });
    const body = await r.json().catch(() => ({ ok: false, error: 'HTTP ' + r.status }));
    if (!r.ok || !body.ok) throw new Error(path + ': ' + (body.error || 'HTTP ' + r.status));
    return body;
  }
  function when(ms) {
    const d = new Date(ms), now = new Date();
    const t = d.toLocaleTimeString([], { hour12: false });
    return d.toDateString() === now.toDateString() ? t : d.toISOString().slice(0, 10) + ' ' + t;
  }
  function short(n) {
    return n >= 1e9 ? (n / 1e9).toFixed(1) + 'G' : n >= 1e6 ? (n / 1e6).toFixed(1) + 'M' : n >= 1e4 ? (n / 1e3).toFixed(0) + 'k' : String(n);
  }
  function replaceRows(table, rows) {
    const body = table.tBodies[0];
    body.replaceChildren(...rows);
  }
  function fillSelect(name, values) {
    const f = form.elements[name], keep = f.value;
    const opts = [new Option('any', '')];
    for (const v of values) opts.push(new Option(v, v));
    if (keep && !values.includes(keep)) opts.push(new Option(keep, keep));
    f.replaceChildren(...opts);
    f.value = keep;
  }

  // ---- the flow table ----
  function endCell(endpoint, addr, groups) {
    const td = el('td');
    td.append(el('span', endpoint || addr, 'end'));
    if (endpoint) td.title = addr;
    if (groups) td.append(' ', el('span', '(' + groups + ')', 'groups'));
    return td;
  }
  function protoText(f) {
    if (f.proto === 'icmp' || f.proto === 'icmpv6') return f.proto + '/' + f.icmp_type + '/' + f.icmp_code;
    return f.port !== null && f.port !== undefined ? f.proto + '/' + f.port : f.proto;
  }
  function renderFlows(data) {
    const rows = data.flows.map((f) => {
      const tr = el('tr', null, 'flow');
      tr.dataset.verdict = f.verdict;
      tr.append(el('td', when(f.last)), el('td', f.node),
        endCell(f.src_endpoint, f.src, f.src_groups), endCell(f.dst_endpoint, f.dst, f.dst_groups),
        el('td', protoText(f)));
      const v = el('td');
      v.append(el('span', f.verdict, 'v ' + f.verdict));
      tr.append(v, el('td', f.rule), el('td', f.count, 'num'));
      return tr;
    });
    replaceRows($('flows'), rows);
    $('flows-count').textContent = data.flows.length + (data.flows.length >= 200 ? '+ (newest 200)' : '');
    const lost = (data.lost || []).reduce((n, l) => n + l.enobufs + l.gap + l.spool, 0);
    $('lost').hidden = !lost;
    $('lost').textContent = lost ? lost + ' logged packet(s) lost by the agents in this period: the table may miss some' : '';
  }

  // ---- the group map: groups on a circle, an arc per direction and verdict ----
  function renderMap(data) {
    const map = $('map');
    const groups = data.groups.filter((g) => g.active || g.kind === 'label' || g.kind === 'network');
    const n = groups.length, C = 380, R = n > 12 ? 260 : 250;
    const pos = {};
    groups.forEach((g, i) => {
      const a = (2 * Math.PI * i) / Math.max(n, 1) - Math.PI / 2;
      pos[g.name] = { x: C + R * Math.cos(a), y: C + R * Math.sin(a), a };
    });
    const defs = svg('defs', {});
    for (const v of VERDICTS) {
      const m = svg('marker', { id: 'arrow-' + v, viewBox: '0 0 10 10', refX: '9', refY: '5', markerUnits: 'userSpaceOnUse', markerWidth: '9', markerHeight: '9', orient: 'auto-start-reverse' });
      m.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: COLORS[v] }));
      defs.append(m);
    }
    const edges = svg('g', { class: 'edges' + (data.edges.length > 25 ? ' many' : '') }), labels = svg('g', { class: 'counts' });
    // Counts on the largest arcs only (every arc has its count in its title).
    const all = [];
    for (const e of data.edges) for (const v of VERDICTS) if (e.verdicts[v]) all.push(e.verdicts[v].count);
    all.sort((x, y) => y - x);
    const labelFrom = all.length > 20 ? all[19] : 0;
    for (const e of data.edges) {
      const a = pos[e.src], b = pos[e.dst];
      if (!a || !b) continue;
      VERDICTS.filter((v) => e.verdicts[v]).forEach((v, k) => {
        const c = e.verdicts[v].count;
        let d, mx, my;
        if (e.src === e.dst) { // a loop outside the circle
          const o = 55 + 12 * k, s = 0.35;
          const p1x = a.x + o * Math.cos(a.a - s), p1y = a.y + o * Math.sin(a.a - s);
          const p2x = a.x + o * Math.cos(a.a + s), p2y = a.y + o * Math.sin(a.a + s);
          d = `M${a.x},${a.y} C${p1x},${p1y} ${p2x},${p2y} ${a.x},${a.y}`;
          mx = a.x + 0.8 * o * Math.cos(a.a); my = a.y + 0.8 * o * Math.sin(a.a);
        } else { // a curve bent to the right of its direction: both directions apart
          const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
          const bend = 0.12 * len + 14 * k;
          const cx = (a.x + b.x) / 2 + (dy / len) * bend, cy = (a.y + b.y) / 2 - (dx / len) * bend;
          // end short of the target's circle, so that the arrow shows
          const ex = b.x - ((b.x - cx) / Math.hypot(b.x - cx, b.y - cy)) * 8;
          const ey = b.y - ((b.y - cy) / Math.hypot(b.x - cx, b.y - cy)) * 8;
          d = `M${a.x},${a.y} Q${cx},${cy} ${ex},${ey}`;
          mx = 0.25 * a.x + 0.5 * cx + 0.25 * b.x; my = 0.25 * a.y + 0.5 * cy + 0.25 * b.y;
        }
        const w = Math.min(6, 1.2 + 0.6 * Math.log2(c + 1));
        const selected = pair.src === e.src && pair.dst === e.dst && (!pair.verdict || pair.verdict === v);
        const path = svg('path', { d, class: 'edge edge-' + v + (selected ? ' selected' : ''), stroke: COLORS[v], 'stroke-width': w.toFixed(1), 'marker-end': 'url(#arrow-' + v + ')' });
        path.dataset.src = e.src; path.dataset.dst = e.dst; path.dataset.verdict = v; path.dataset.count = c;
        const title = svg('title', {});
        title.textContent = `${e.src} → ${e.dst}: ${c} ${v} packet(s), ${e.verdicts[v].pairs} address pair(s)`;
        path.append(title);
        const t = svg('text', { x: mx.toFixed(1), y: my.toFixed(1), class: 'count', 'text-anchor': 'middle' });
        t.textContent = short(c);
        const choose = () => choosePair(e.src, e.dst, v);
        path.addEventListener('click', choose);
        t.addEventListener('click', choose);
        edges.append(path);
        if (c >= labelFrom) labels.append(t);
      });
    }
    const nodes = svg('g', { class: 'nodes' });
    for (const g of groups) {
      const p = pos[g.name];
      const cls = 'node' + (g.active ? '' : ' inactive') + (g.kind === 'none' || g.kind === 'former' ? ' none' : '');
      const node = svg('g', { class: cls });
      node.dataset.group = g.name;
      node.append(svg('circle', { cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: '6' }));
      const right = Math.cos(p.a) >= -0.01;
      const lx = p.x + 12 * Math.cos(p.a), ly = p.y + 12 * Math.sin(p.a);
      let t;
      if (n > 12) { // many groups: labels along the radius, so that neighbours do not overlap
        const deg = (p.a * 180) / Math.PI + (right ? 0 : 180);
        t = svg('text', { x: lx.toFixed(1), y: (ly + 4).toFixed(1), 'text-anchor': right ? 'start' : 'end', transform: `rotate(${deg.toFixed(1)} ${lx.toFixed(1)} ${ly.toFixed(1)})` });
      } else {
        t = svg('text', { x: lx.toFixed(1), y: (ly + 4).toFixed(1), 'text-anchor': Math.abs(Math.cos(p.a)) < 0.2 ? 'middle' : right ? 'start' : 'end' });
      }
      t.textContent = g.name + (g.kind === 'network' ? ' ⌁' : '');
      const title = svg('title', {});
      title.textContent = g.name + ' (' + g.kind + ' group)';
      node.append(t, title);
      nodes.append(node);
    }
    map.replaceChildren(defs, edges, nodes, labels);
    if (!data.edges.length) {
      const t = svg('text', { x: C, y: C, 'text-anchor': 'middle', class: 'muted' });
      t.textContent = 'no flows in this period';
      map.append(t);
    }
    fillSelect('group', data.groups.filter((g) => g.kind !== 'former').map((g) => g.name));
  }

  function choosePair(src, dst, verdict) {
    pair.src = src; pair.dst = dst; pair.verdict = verdict;
    changed();
  }
  function showPair() {
    $('pair').hidden = !pair.src && !pair.dst;
    $('pair-text').textContent = (pair.src || 'any') + ' → ' + (pair.dst || 'any') + (pair.verdict ? ' (' + pair.verdict + ')' : '');
  }

  // ---- nodes and hits ----
  function renderNodes(data) {
    $('revision').textContent = 'revision ' + (data.revision === null ? '– (no policy)' : data.revision);
    replaceRows($('nodes'), data.nodes.map((n) => {
      const state = !n.connected ? 'down' : n.up_to_date ? 'in sync' : 'behind';
      const tr = el('tr', null, 'node-row');
      tr.dataset.state = state;
      const errs = el('td', n.errors.length || '', n.errors.length ? 'error' : '');
      errs.title = n.errors.join('\n');
      tr.append(el('td', n.node), el('td', state, 'state ' + state.replace(' ', '-')), el('td', n.applied_revision === null ? '–' : n.applied_revision),
        el('td', n.endpoints, 'num'), errs);
      return tr;
    }));
    fillSelect('node', data.nodes.map((n) => n.node));
  }
  function renderHits(data) {
    replaceRows($('hits'), data.rules.map((h) => {
      const tr = el('tr', null, 'hit');
      const v = el('td');
      v.append(el('span', h.verdict, 'v ' + h.verdict));
      tr.append(el('td', h.policy || '–'), el('td', h.rule), v, el('td', h.hits, 'num'), el('td', h.count || '–', 'num'));
      return tr;
    }));
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    const p = filters();
    const fp = new URLSearchParams(p);
    if (pair.src) fp.set('src_group', pair.src);
    if (pair.dst) fp.set('dst_group', pair.dst);
    if (pair.verdict) fp.set('verdict', pair.verdict);
    try {
      const [flows, map, hits, nodes] = await Promise.all([
        get('/api/flows', fp), get('/api/groups', p),
        get('/api/hits', pick(p, ['since', 'node', 'group', 'verdict'])), get('/api/nodes', new URLSearchParams()),
      ]);
      renderNodes(nodes);
      renderMap(map);
      renderFlows(flows);
      renderHits(hits);
      $('updated').textContent = 'updated ' + when(flows.time);
      $('error').hidden = true;
      document.body.dataset.loaded = String((+document.body.dataset.loaded || 0) + 1);
    } catch (err) {
      $('error').hidden = false;
      $('error').textContent = err.message;
    } finally {
      busy = false;
    }
  }
  function changed() {
    showPair();
    toURL();
    refresh();
  }

  fromURL();
  showPair();
  form.addEventListener('change', changed);
  form.addEventListener('submit', (ev) => { ev.preventDefault(); changed(); });
  $('pair-clear').addEventListener('click', () => choosePair('', '', ''));
  setInterval(() => { if ($('live').checked && !document.hidden) refresh(); }, 2000);
  refresh();
})();
