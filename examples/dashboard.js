// The demo's dashboard: reads the feed at /events (Server-Sent Events) and draws plain SVG.
//   hello   { routes: { [path]: { interval, timeout, closeTimeout } }, snapshotPeriodMs, samplePeriodMs, history: Sample[] }
//   stats   { at, stats }   app.heartbeat.stats(), every snapshotPeriodMs
//   sample  Sample          { at, connections: { [path]: n }, terminations: { [reason]: n }, eventLoop: { p99Ms, maxMs }, overloaded }, every samplePeriodMs
// With REDIS_URL, each `stats` event also has `cluster` (examples/cluster.mjs): the cluster's view,
// shown in the section #cluster below the rest; without it, that section stays hidden.
'use strict';

const REASONS = ['timeout', 'close-timeout', 'backpressure', 'shutdown'];
const WINDOW_MS = 120_000;
const TEST_PATH = '/ws/fast';
const TEST_COUNT = 5;
const RECONNECT_MS = 2000;
const SVG_NS = 'http://www.w3.org/2000/svg';
/** The routes whose connections the cluster table shows per node (its header names them). */
const CLUSTER_ROUTES = ['/ws/echo', '/ws/fast'];

/** What the page has from the feed; `clusterShown` once it drew a cluster view (REDIS_URL set). */
const feed = { routes: {}, samplePeriodMs: 1000, history: [], latest: undefined, clusterShown: false };

// --- drawing helpers -------------------------------------------------------------------------

function el(name, attributes = {}, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function color(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(`--${name}`).trim();
}

function formatMs(value) {
  if (value === null || value === undefined) return '–';
  if (value === 0) return '0';
  if (value >= 1000) return `${(value / 1000).toFixed(value >= 10_000 ? 1 : 2)} s`;
  if (value >= 10) return `${Math.round(value)} ms`;
  if (value >= 1) return `${value.toFixed(1)} ms`;
  return `${value.toFixed(2)} ms`;
}

function formatBound(value) {
  return value >= 1000 ? `${value / 1000} s` : `${value} ms`;
}

/** A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten, at least `value`. */
function niceCeil(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/** An axis of four equal steps, each a "nice" number, reaching at least `max`. */
function niceScale(max) {
  return 4 * niceCeil(max / 4);
}

function setText(selector, text) {
  for (const node of document.querySelectorAll(selector)) if (node.textContent !== text) node.textContent = text;
}

/** Axes of a time chart over the last two minutes: y grid lines with labels, x labels. */
function timeAxes(svg, { width, height, left, bottom, yMax, yLabel }) {
  svg.replaceChildren();
  const plotHeight = height - bottom - 6;
  for (let i = 0; i <= 4; i++) {
    const y = 6 + plotHeight - (plotHeight * i) / 4;
    svg.append(el('line', { class: 'grid', x1: left, x2: width, y1: y, y2: y }));
    svg.append(el('text', { x: left - 6, y: y + 4, 'text-anchor': 'end' }, yLabel((yMax * i) / 4)));
  }
  for (const [seconds, anchor] of [[120, 'start'], [90, 'middle'], [60, 'middle'], [30, 'middle'], [0, 'end']]) {
    const x = left + ((WINDOW_MS - seconds * 1000) / WINDOW_MS) * (width - left);
    svg.append(el('text', { x, y: height - 4, 'text-anchor': anchor }, seconds === 0 ? 'now' : `−${seconds} s`));
  }
  return { plotHeight, top: 6 };
}

// --- figures ---------------------------------------------------------------------------------

function renderConnections(stats) {
  setText('#connections-total', String(stats.connections));
  setText('#pings-sent', String(stats.pingsSent));
  setText('#pongs-received', String(stats.pongsReceived));
  for (const node of document.querySelectorAll('[data-figure="connections"]')) {
    const route = stats.routes[node.dataset.route];
    const text = route ? String(route.connections) : '–';
    if (node.textContent !== text) node.textContent = text;
  }
  for (const node of document.querySelectorAll('[data-bound]')) {
    const settings = feed.routes[node.dataset.bound];
    const route = stats.routes[node.dataset.bound];
    if (!settings || !route) continue;
    const text =
      `ping after ${formatBound(settings.interval)} idle, terminate ${formatBound(settings.timeout)} later · ` +
      `pings ${route.pingsSent}, pongs ${route.pongsReceived}`;
    if (node.textContent !== text) node.textContent = text;
  }
}

function renderSparklines() {
  const samples = feed.history;
  for (const svg of document.querySelectorAll('svg[data-spark]')) {
    const route = svg.dataset.spark;
    const width = Number(svg.getAttribute('width'));
    const height = Number(svg.getAttribute('height'));
    svg.replaceChildren();
    if (samples.length < 2) continue;
    const end = samples[samples.length - 1].at;
    const yMax = niceCeil(Math.max(1, ...samples.map((s) => s.connections[route] ?? 0)));
    const points = samples
      .filter((s) => s.at > end - WINDOW_MS)
      .map((s) => `${(((s.at - (end - WINDOW_MS)) / WINDOW_MS) * width).toFixed(1)},${(height - 2 - ((s.connections[route] ?? 0) / yMax) * (height - 14)).toFixed(1)}`);
    const stroke = color(route === '/ws/fast' ? 'fast' : 'echo');
    svg.append(el('polyline', { points: points.join(' '), fill: 'none', stroke, 'stroke-width': 2, 'stroke-linejoin': 'round' }));
    svg.append(el('text', { x: width, y: 10, 'text-anchor': 'end' }, `2 min, max ${yMax}`));
  }
}

/** Per-bucket counts of a cumulative histogram, with a label for each upper bound. */
function bucketCounts(buckets) {
  let previous = 0;
  return buckets.map(({ le, count }) => {
    const own = count - previous;
    previous = count;
    return { label: le === '+Inf' ? '∞' : le >= 1000 ? `${le / 1000}s` : String(le), own };
  });
}

function renderRtt(panel, route) {
  const svg = panel.querySelector('svg[data-rtt]');
  const title = panel.querySelector('[data-rtt-title]');
  const { rtt } = route;
  title.innerHTML =
    rtt.count === 0
      ? 'RTT, ping → pong'
      : `RTT p50 <b>${formatMs(rtt.p50)}</b> · p99 <b>${formatMs(rtt.p99)}</b> · n=${rtt.count}`;
  const width = Number(svg.getAttribute('width'));
  const height = Number(svg.getAttribute('height'));
  const left = 28;
  const bottom = 30;
  svg.replaceChildren();
  const bins = bucketCounts(rtt.buckets);
  const yMax = niceCeil(Math.max(1, ...bins.map((b) => b.own)));
  const plotHeight = height - bottom - 6;
  for (let i = 0; i <= 2; i++) {
    const y = 6 + plotHeight - (plotHeight * i) / 2;
    svg.append(el('line', { class: 'grid', x1: left, x2: width, y1: y, y2: y }));
    svg.append(el('text', { x: left - 5, y: y + 4, 'text-anchor': 'end' }, String((yMax * i) / 2)));
  }
  const slot = (width - left) / bins.length;
  const fill = color(panel.dataset.routePanel === '/ws/fast' ? 'fast' : 'echo');
  bins.forEach((bin, i) => {
    const x = left + i * slot;
    const h = (bin.own / yMax) * plotHeight;
    if (bin.own > 0) svg.append(el('rect', { x: x + 1.5, y: 6 + plotHeight - h, width: slot - 3, height: h, fill, rx: 1.5 }));
    const labelY = height - bottom + 14 + (i % 2) * 12;
    svg.append(el('text', { x: x + slot / 2, y: labelY, 'text-anchor': 'middle' }, bin.label));
  });
  svg.append(el('text', { x: 0, y: height - bottom + 14 }, 'ms'));
  if (rtt.count === 0) svg.append(el('text', { x: (left + width) / 2, y: height / 2 - 8, 'text-anchor': 'middle' }, 'no pongs yet'));
}

/** Detection latency against the route's bound: a scale with the bound marked, p50 and max on it. */
function renderDetection(panel, route, settings) {
  const svg = panel.querySelector('svg[data-detection]');
  const title = panel.querySelector('[data-detection-title]');
  const { detection } = route;
  const bound = settings.interval + settings.timeout;
  const path = panel.dataset.routePanel;
  title.innerHTML = `last sign of life → termination · bound <b>${formatBound(bound)}</b>`;
  const width = Number(svg.getAttribute('width'));
  const height = Number(svg.getAttribute('height'));
  const left = 8;
  const right = width - 12;
  const scaleMax = Math.max(bound * 1.25, (detection.max ?? 0) * 1.1);
  const x = (value) => left + (value / scaleMax) * (right - left);
  svg.replaceChildren();
  const axisY = 92;
  svg.append(el('rect', { x: left, y: axisY - 12, width: x(bound) - left, height: 24, fill: '#1f2a36', rx: 3 }));
  svg.append(el('line', { x1: left, x2: right, y1: axisY, y2: axisY, stroke: '#4a5460', 'stroke-width': 1 }));
  svg.append(el('line', { x1: x(bound), x2: x(bound), y1: axisY - 30, y2: axisY + 22, stroke: color('text'), 'stroke-width': 2, 'stroke-dasharray': '4 3' }));
  svg.append(el('text', { x: x(bound), y: axisY - 36, 'text-anchor': 'middle', style: `fill: ${color('text')}` }, 'interval + timeout'));
  for (const value of [0, bound / 2, bound]) {
    svg.append(el('text', { x: x(value), y: axisY + 38, 'text-anchor': value === 0 ? 'start' : 'middle' }, value === 0 ? '0' : formatBound(value)));
  }
  const figures = el('text', { x: left, y: height - 28, 'data-figure': 'detection', 'data-route': path, style: `fill: ${color('text')}; font-size: 13px` });
  const lateness = el('text', { x: left, y: height - 8 });
  svg.append(el('circle', { cx: left + 5, cy: 16, r: 5, fill: color('timeout') }));
  svg.append(el('text', { x: left + 14, y: 20 }, 'p50'));
  svg.append(el('rect', { x: left + 46, y: 9, width: 3, height: 14, fill: color('max') }));
  svg.append(el('text', { x: left + 54, y: 20 }, 'max'));
  if (detection.count === 0) {
    figures.textContent = 'no timeouts yet';
  } else {
    svg.append(el('circle', { cx: x(detection.p50), cy: axisY, r: 7, fill: color('timeout') }));
    svg.append(el('line', { x1: x(detection.max), x2: x(detection.max), y1: axisY - 14, y2: axisY + 14, stroke: color('max'), 'stroke-width': 3 }));
    figures.textContent = `p50 ${formatMs(detection.p50)} · max ${formatMs(detection.max)} · n=${detection.count}`;
    const late = detection.max - bound;
    lateness.textContent = late >= 0 ? `max: ${formatMs(late)} after the bound (tick and timers)` : `max: ${formatMs(-late)} before the bound`;
  }
  svg.append(lateness);
  svg.append(figures);
}

/** Stacked bars, one per sample: the terminations counted since the sample before it. */
function renderTerminations(stats) {
  for (const node of document.querySelectorAll('[data-figure="terminations"]')) {
    const text = String(stats.terminations[node.dataset.reason] ?? 0);
    if (node.textContent !== text) node.textContent = text;
  }
  const svg = document.getElementById('terminations-chart');
  const width = Number(svg.getAttribute('width'));
  const height = Number(svg.getAttribute('height'));
  const samples = feed.history;
  const bars = [];
  for (let i = 1; i < samples.length; i++) {
    const delta = {};
    for (const reason of REASONS) delta[reason] = Math.max(0, samples[i].terminations[reason] - samples[i - 1].terminations[reason]);
    bars.push({ at: samples[i].at, delta, total: REASONS.reduce((sum, reason) => sum + delta[reason], 0) });
  }
  const yMax = niceScale(Math.max(4, ...bars.map((bar) => bar.total)));
  const left = 34;
  const { plotHeight, top } = timeAxes(svg, { width, height, left, bottom: 18, yMax, yLabel: (v) => String(v) });
  const end = samples.length > 0 ? samples[samples.length - 1].at : Date.now();
  const slot = ((width - left) * feed.samplePeriodMs) / WINDOW_MS;
  for (const bar of bars) {
    if (bar.at <= end - WINDOW_MS || bar.total === 0) continue;
    const x = left + ((bar.at - (end - WINDOW_MS)) / WINDOW_MS) * (width - left) - slot;
    let y = top + plotHeight;
    for (const reason of REASONS) {
      const h = (bar.delta[reason] / yMax) * plotHeight;
      if (h === 0) continue;
      y -= h;
      svg.append(el('rect', { x: x + 0.5, y, width: Math.max(1.5, slot - 1), height: h, fill: color(reason) }));
    }
  }
  if (!bars.some((bar) => bar.total > 0)) {
    svg.append(el('text', { x: (left + width) / 2, y: top + plotHeight / 2, 'text-anchor': 'middle' }, 'no terminations in the last 2 minutes'));
  }
}

function renderEventLoop(stats) {
  setText('#event-loop-p99', formatMs(stats.eventLoop.p99Ms));
  setText('#event-loop-max', formatMs(stats.eventLoop.maxMs));
  setText('#overload-threshold', formatMs(stats.overloadThreshold));
  const flag = document.getElementById('overloaded');
  flag.dataset.overloaded = String(stats.overloaded);
  flag.textContent = stats.overloaded ? 'event loop OVERLOADED' : `event loop ok · p99 ${formatMs(stats.eventLoop.p99Ms)}`;

  const svg = document.getElementById('event-loop-chart');
  const width = Number(svg.getAttribute('width'));
  const height = Number(svg.getAttribute('height'));
  const samples = feed.history;
  // Scaled to what was measured, so that a healthy loop's few milliseconds stay visible.
  const yMax = niceScale(Math.max(2, ...samples.map((s) => s.eventLoop.maxMs * 1.2)));
  const left = 50;
  const { plotHeight, top } = timeAxes(svg, { width, height, left, bottom: 18, yMax, yLabel: formatMs });
  const end = samples.length > 0 ? samples[samples.length - 1].at : Date.now();
  const x = (at) => left + ((at - (end - WINDOW_MS)) / WINDOW_MS) * (width - left);
  const y = (value) => top + plotHeight - (Math.min(value, yMax) / yMax) * plotHeight;
  const visible = samples.filter((s) => s.at > end - WINDOW_MS);
  const slot = ((width - left) * feed.samplePeriodMs) / WINDOW_MS;
  for (const s of visible) {
    if (s.overloaded) svg.append(el('rect', { x: x(s.at) - slot, y: top, width: slot, height: plotHeight, fill: 'rgba(255,107,107,.25)' }));
  }
  if (stats.overloadThreshold <= yMax) {
    svg.append(el('line', { x1: left, x2: width, y1: y(stats.overloadThreshold), y2: y(stats.overloadThreshold), stroke: color('bad'), 'stroke-dasharray': '5 4', 'stroke-width': 1 }));
  }
  for (const [key, name] of [['p99Ms', 'p99'], ['maxMs', 'max']]) {
    if (visible.length < 2) break;
    const points = visible.map((s) => `${x(s.at).toFixed(1)},${y(s.eventLoop[key]).toFixed(1)}`).join(' ');
    svg.append(el('polyline', { points, fill: 'none', stroke: color(name), 'stroke-width': 2, 'stroke-linejoin': 'round' }));
  }
}

// --- the cluster -----------------------------------------------------------------------------

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function formatAge(value) {
  const seconds = Math.floor(value / 1000);
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

function cell(content, attributes = {}) {
  const td = document.createElement('td');
  for (const [key, value] of Object.entries(attributes)) td.setAttribute(key, String(value));
  td.append(content);
  return td;
}

/** The lease's age, and a bar that fills up to the moment the node would be dead (interval + timeout). */
function leaseCell(node, view) {
  const deadAfter = view.interval + view.timeout;
  const bar = document.createElement('span');
  bar.className = 'lease';
  bar.dataset.late = String(node.leaseAge > view.interval);
  bar.title = `renewed every ${formatBound(view.interval)}; dead ${formatBound(deadAfter)} after its last renewal`;
  const fill = document.createElement('span');
  fill.style.width = `${Math.min(100, (node.leaseAge / deadAfter) * 100)}%`;
  bar.append(fill);
  const td = cell(formatMs(node.leaseAge), { 'data-figure': 'lease-age' });
  td.append(bar);
  return td;
}

function renderClusterNodes(view) {
  const rows = view.nodes.map((node) => {
    const row = document.createElement('tr');
    row.dataset.node = node.id;
    row.dataset.pid = String(node.pid);
    row.dataset.self = String(node.id === view.self);
    const name = cell(`${node.host}:${node.pid}`);
    if (node.id === view.self) {
      const tag = document.createElement('span');
      tag.className = 'self-tag';
      tag.textContent = 'this process';
      name.append(tag);
    }
    row.append(
      name,
      cell(formatAge(node.age)),
      leaseCell(node, view),
      cell(String(node.connections), { 'data-figure': 'node-connections' }),
      ...CLUSTER_ROUTES.map((route) => cell(String(node.routes[route]?.connections ?? 0), { 'data-figure': 'node-route-connections', 'data-route': route })),
      cell(formatMs(node.rttP99)),
      cell(formatMs(node.eventLoopP99)),
      cell(node.overloaded ? 'OVERLOADED' : 'no', { 'data-overloaded': node.overloaded }),
    );
    return row;
  });
  document.getElementById('cluster-nodes').replaceChildren(...rows);
  const { totals } = view;
  const bold = (text) => Object.assign(document.createElement('b'), { textContent: text });
  document.getElementById('cluster-totals').replaceChildren(
    cell(`all ${plural(totals.nodes, 'node')}`),
    cell(''),
    cell(''),
    cell(bold(String(totals.connections)), { 'data-figure': 'cluster-connections' }),
    ...CLUSTER_ROUTES.map((route) => cell(String(view.nodes.reduce((sum, node) => sum + (node.routes[route]?.connections ?? 0), 0)))),
    cell(formatMs(totals.rttP99)),
    cell(formatMs(totals.eventLoopP99)),
    cell(`${totals.overloaded} of ${totals.nodes}`),
  );
}

function renderPresence(view) {
  const { presence } = view;
  setText('#cluster-online', String(presence.online));
  for (const node of document.querySelectorAll('[data-figure="room-connections"]')) {
    const text = String(presence.rooms[node.dataset.route] ?? 0);
    if (node.textContent !== text) node.textContent = text;
  }
  const items = presence.users.keys.map((key) => {
    const item = document.createElement('li');
    item.dataset.figure = 'online-user';
    item.textContent = key;
    return item;
  });
  if (presence.users.more) items.push(Object.assign(document.createElement('li'), { textContent: 'and more' }));
  if (items.length === 0) items.push(Object.assign(document.createElement('li'), { textContent: 'no user: keys online' }));
  document.getElementById('cluster-users').replaceChildren(...items);
}

/** The cluster's view (REDIS_URL set): its nodes and presence, or why Redis cannot give them. */
function renderCluster(view) {
  const section = document.getElementById('cluster');
  const pill = document.getElementById('cluster-status');
  const problem = document.getElementById('cluster-problem');
  document.querySelector('main').classList.add('with-cluster');
  section.hidden = false;
  pill.hidden = false;
  section.dataset.state = view.state;
  pill.dataset.state = view.state;
  problem.hidden = view.state === 'available' || view.state === 'starting';
  if (view.state === 'starting') {
    pill.textContent = 'cluster · starting';
  } else if (view.state === 'available') {
    pill.textContent = `cluster · ${plural(view.totals.nodes, 'node')}`;
    setText(
      '#cluster-summary',
      `${plural(view.totals.nodes, 'node')} on ${view.redis} · leases renewed every ${formatBound(view.interval)}, ` +
        `dead ${formatBound(view.interval + view.timeout)} after the last renewal`,
    );
    renderClusterNodes(view);
    renderPresence(view);
    feed.clusterShown = true;
  } else if (view.state === 'unavailable') {
    pill.textContent = 'cluster · Redis unavailable';
    setText('#cluster-summary', `Redis unavailable · ${view.redis}`);
    setText(
      '#cluster-problem',
      `Redis unavailable at ${view.redis} for ${formatAge(view.at - view.since)}: this process keeps serving its WebSockets ` +
        `on its own, and the view comes back once Redis answers.${feed.clusterShown ? ' The figures below are the last ones read.' : ''}`,
    );
  } else {
    pill.textContent = 'cluster · error';
    setText('#cluster-summary', `error · ${view.redis}`);
    setText('#cluster-problem', `Reading the cluster failed: ${view.error}`);
  }
}

function render() {
  const { latest } = feed;
  if (!latest) return;
  if (latest.cluster) renderCluster(latest.cluster);
  const { stats } = latest;
  renderConnections(stats);
  renderSparklines();
  for (const panel of document.querySelectorAll('[data-route-panel]')) {
    const route = stats.routes[panel.dataset.routePanel];
    const settings = feed.routes[panel.dataset.routePanel];
    if (!route || !settings) continue;
    renderRtt(panel, route);
    renderDetection(panel, route, settings);
  }
  renderTerminations(stats);
  renderEventLoop(stats);
}

// --- the feed --------------------------------------------------------------------------------

function setFeedStatus(state, text) {
  const node = document.getElementById('feed-status');
  node.dataset.state = state;
  node.textContent = text;
}

function connectFeed() {
  const source = new EventSource('/events');
  source.addEventListener('hello', (event) => {
    const hello = JSON.parse(event.data);
    feed.routes = hello.routes;
    feed.samplePeriodMs = hello.samplePeriodMs;
    feed.history = hello.history;
    setFeedStatus('live', `live · every ${hello.snapshotPeriodMs} ms`);
  });
  source.addEventListener('stats', (event) => {
    feed.latest = JSON.parse(event.data);
    render();
  });
  source.addEventListener('sample', (event) => {
    feed.history.push(JSON.parse(event.data));
    while (feed.history.length > 0 && feed.history[0].at <= feed.history[feed.history.length - 1].at - WINDOW_MS - feed.samplePeriodMs) feed.history.shift();
  });
  source.addEventListener('error', () => {
    setFeedStatus('offline', 'offline · reconnecting');
    // The browser retries by itself after a stream ended, but gives up after a refusal (a 503 while closing).
    if (source.readyState === EventSource.CLOSED) setTimeout(connectFeed, RECONNECT_MS);
  });
}

// --- test connections ------------------------------------------------------------------------

/** The page's own WebSockets to /ws/fast, opened by the button. */
window.testSockets = [];
const STATE_NAMES = ['connecting', 'open', 'closing', 'closed'];

function renderTestSockets() {
  const list = document.getElementById('test-sockets');
  list.replaceChildren(
    ...window.testSockets.map((ws, i) => {
      const item = document.createElement('li');
      item.dataset.figure = 'test-socket';
      item.dataset.state = STATE_NAMES[ws.readyState];
      item.title = `test connection ${i + 1}: ${STATE_NAMES[ws.readyState]}`;
      item.textContent = ws.readyState === WebSocket.CONNECTING ? '…' : STATE_NAMES[ws.readyState];
      return item;
    }),
  );
  const anyOpen = window.testSockets.some((ws) => ws.readyState <= WebSocket.OPEN);
  document.getElementById('test-connections').textContent = anyOpen ? 'Close the test connections' : `Open ${TEST_COUNT} test connections to ${TEST_PATH}`;
}

function toggleTestSockets() {
  if (window.testSockets.some((ws) => ws.readyState <= WebSocket.OPEN)) {
    for (const ws of window.testSockets) ws.close(1000, 'closed from the dashboard');
    return;
  }
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${TEST_PATH}`;
  window.testSockets = Array.from({ length: TEST_COUNT }, () => {
    const ws = new WebSocket(url);
    for (const event of ['open', 'close', 'error']) ws.addEventListener(event, renderTestSockets);
    return ws;
  });
  renderTestSockets();
}

document.getElementById('test-connections').addEventListener('click', toggleTestSockets);
connectFeed();
