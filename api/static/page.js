// The live page's script (api/page.py): polls the JSON endpoints every 2 s and draws what
// they say. Every value reaches the page as text (textContent, SVG attributes), never as
// markup. The API key lives only in its password field: it is sent as a bearer header,
// never stored, never put in a URL.
'use strict';

(() => {
  const POLL_MS = 2000;
  const TENANTS_EVERY = 15; // polls between two reads of the tenant list (30 s)
  const EVENTS_EVERY = 5; // and of the tenant's events (10 s), which only a request changes
  // The tenant's KPIs are read again when its reads changed, or once they are this old (a
  // day's theft verdict is judged in the background).
  const KPI_MAX_AGE_MS = 30000;
  const TENANT = /^[A-Za-z0-9_]{1,64}$/;
  const SVG = 'http://www.w3.org/2000/svg';
  const authReads = document.body.dataset.authReads === '1';
  const $ = (id) => document.getElementById(id);
  const number = (value) => (value === null || value === undefined ? '–' : Number(value).toLocaleString('en-US'));
  const percent = (share) => `${(100 * share).toFixed(1)}%`;

  // ---- elements -------------------------------------------------------------------------

  function element(tag, attributes = {}, text = undefined) {
    const svg = ['line', 'polyline', 'rect', 'text'].includes(tag);
    const node = svg ? document.createElementNS(SVG, tag) : document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function show(id, text) {
    $(id).textContent = text;
  }

  function fillTable(id, rows, cells) {
    const body = $(id).tBodies[0];
    body.replaceChildren(
      ...rows.map((row) => {
        const line = element('tr');
        for (const cell of cells(row)) line.append(element('td', {}, cell));
        return line;
      }),
    );
  }

  // Horizontal bars: [label, share of the longest bar (0..1), figure].
  function fillBars(id, bars) {
    $(id).replaceChildren(
      ...bars.map(([label, share, figure]) => {
        const bar = element('div', { class: 'bar' });
        const fill = element('span', { class: 'fill' });
        fill.style.width = `${Math.max(0, Math.min(1, share)) * 100}%`;
        bar.append(element('span', { class: 'label' }, label), fill, element('span', { class: 'figure' }, figure));
        return bar;
      }),
    );
  }

  // ---- the API --------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function key() {
    return $('key').value.trim();
  }

  async function call(path, options = {}) {
    const headers = { Accept: 'application/json', ...(options.headers || {}) };
    if (options.withKey || authReads) headers.Authorization = `Bearer ${key()}`;
    const response = await fetch(path, { ...options, headers, cache: 'no-store', credentials: 'omit' });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      throw new ApiError(response.status, (body && body.error) || `HTTP ${response.status}`);
    }
    return body;
  }

  // ---- rates and the queue --------------------------------------------------------------

  // The chart's seconds, kept here: the first poll reads all 10 minutes, each later one only
  // the seconds after the last it saw, and RATE_OVERLAP_S before them again (a consumer's
  // count of a second may still grow just after it).
  const WINDOW_S = 600;
  const RATE_OVERLAP_S = 3;
  const history = new Map(); // unix second -> [enqueued, ingested, refused]
  let historyEnd = null; // the second after the last one seen

  function ratesPath() {
    return historyEnd === null ? '/api/ami/scale/rates' : `/api/ami/scale/rates?after=${historyEnd - 1 - RATE_OVERLAP_S}`;
  }

  // The answer merged into the history: the last WINDOW_S seconds, as the API gives them.
  function merged(rates) {
    rates.enqueued.forEach((count, i) => history.set(rates.start + i, [count, rates.ingested[i], rates.refused[i]]));
    historyEnd = Math.max(historyEnd ?? 0, rates.start + rates.seconds);
    const start = historyEnd - WINDOW_S;
    for (const second of history.keys()) if (second < start) history.delete(second);
    const column = (n) => Array.from({ length: WINDOW_S }, (_, i) => (history.get(start + i) || [0, 0, 0])[n]);
    return { ...rates, start, seconds: WINDOW_S, enqueued: column(0), ingested: column(1), refused: column(2) };
  }

  function drawRates(rates) {
    const svg = $('rates');
    const [width, height, left, right, top, bottom] = [760, 220, 52, 12, 10, 24];
    const cap = rates.readsPerSecondLimit;
    const peak = Math.max(cap * 1.2, ...rates.enqueued, ...rates.ingested);
    const last = rates.seconds - 1;
    const x = (i) => left + ((width - left - right) * i) / Math.max(last, 1);
    const y = (value) => height - bottom - ((height - top - bottom) * value) / peak;
    const parts = [];
    for (let tick = 0; tick <= peak; tick += 1000) {
      parts.push(element('line', { x1: left, x2: width - right, y1: y(tick), y2: y(tick), class: 'grid' }));
      parts.push(element('text', { x: left - 6, y: y(tick) + 4, class: 'axis', 'text-anchor': 'end' }, number(tick)));
    }
    for (const [i, label] of [[0, `−${Math.round(rates.seconds / 60)} min`], [last / 2, `−${Math.round(rates.seconds / 120)} min`], [last, 'now']]) {
      parts.push(element('text', { x: x(i), y: height - 6, class: 'axis', 'text-anchor': 'middle' }, label));
    }
    parts.push(element('line', { x1: left, x2: width - right, y1: y(cap), y2: y(cap), class: 'cap' }));
    parts.push(element('text', { x: width - right, y: y(cap) - 4, class: 'cap-label', 'text-anchor': 'end' }, `cap ${number(cap)}/s`));
    rates.refused.forEach((count, i) => {
      if (count > 0) parts.push(element('rect', { x: x(i) - 1, y: height - bottom - 8, width: 3, height: 8, class: 'refused' }));
    });
    for (const series of ['enqueued', 'ingested']) { // enqueued wider, beneath: both show
      const points = rates[series].map((value, i) => `${x(i).toFixed(1)},${y(value).toFixed(1)}`).join(' ');
      parts.push(element('polyline', { points, class: `line ${series}` }));
    }
    svg.replaceChildren(...parts);
    // The latest complete second's figures, beside the legend.
    show('rate-enqueued', `${number(rates.enqueued[last])}/s`);
    show('rate-ingested', `${number(rates.ingested[last])}/s`);
    show('rate-cap', `${number(cap)}/s`);
    svg.dataset.enqueuedPeak = String(Math.max(...rates.enqueued));
    svg.dataset.ingestedPeak = String(Math.max(...rates.ingested));
  }

  function drawQueue(rates) {
    const queue = rates.queue;
    const depth = queue.waiting + queue.delayed;
    const limit = rates.queueDepthLimit;
    const refused = rates.refused.reduce((sum, count) => sum + count, 0);
    const [width, barHeight] = [320, 18];
    const share = Math.min(1, depth / limit);
    $('depth').replaceChildren(
      element('rect', { x: 0, y: 4, width, height: barHeight, class: 'track' }),
      element('rect', { x: 0, y: 4, width: width * share, height: barHeight, class: share >= 0.8 ? 'depth high' : 'depth' }),
      element('text', { x: 0, y: 40, class: 'axis' }, '0'),
      element('text', { x: width, y: 40, class: 'axis', 'text-anchor': 'end' }, `limit ${number(limit)} jobs`),
    );
    show('queue-depth', `${number(depth)} of ${number(limit)} (${number(queue.waiting)} + ${number(queue.delayed)})`);
    show('queue-pending', number(queue.active));
    show('queue-dead', number(queue.deadLettered));
    show('queue-refused', number(refused));
    show('queue-completed', number(queue.completed));
    show('refused-total', number(refused));
    show('consumers-alive', number(rates.consumersAlive));
    fillTable('consumers', Object.entries(rates.inFlightLimits), ([name, limit]) => [name, limit]);
  }

  // ---- the chosen tenant ----------------------------------------------------------------

  function chosenTenant() {
    const tenant = $('tenant').value.trim();
    return TENANT.test(tenant) ? tenant : null;
  }

  function drawStatus(status) {
    show('tenant-meters', number(status.totalDistinctMeters));
    show('tenant-reads', number(status.totalReads));
    show('tenant-latest', status.latestReadAt ? status.latestReadAt.replace('T', ' ') : 'none yet');
    show('tenant-late', number(status.lateReads));
  }

  function drawQuickcheck(check) {
    const completeness = (check.completeness || []).slice().reverse();
    fillBars('completeness', completeness.map((row) => [row.readAt.slice(5, 16).replace('T', ' '), row.completeness, `${percent(row.completeness)} · ${number(row.readsReceived)} of ${number(row.metersExpected)}`]));
    const load = check.feederLoad || [];
    const most = Math.max(1e-9, ...load.map((row) => row.kwhNet));
    const at = check.latestReadAt ? `at ${check.latestReadAt}` : '';
    show('load-at', at);
    show('volt-at', at);
    fillBars('feeder-load', load.map((row) => [row.feederId, row.kwhNet / most, `${number(row.kwhNet)} kWh · ${number(row.metersReporting)} meters`]));
    const voltage = check.voltageAnomalies || { readsOutsideRangeA: null, readsOutsideRangeB: null, feeders: [] };
    show('volt-a', number(voltage.readsOutsideRangeA));
    show('volt-b', number(voltage.readsOutsideRangeB));
    fillTable('volt-feeders', voltage.feeders, (row) => [row.feederId, number(row.reads), number(row.outsideRangeA), number(row.outsideRangeB), row.voltageMin, row.voltageMax]);
    drawTheft(check.theftSuspects);
  }

  function drawTheft(theft) {
    const judged = Boolean(theft && theft.computed);
    show('theft-day', theft ? `day ${theft.day}` : '');
    if (!theft) show('theft-summary', 'no reads yet');
    else if (!judged) show('theft-summary', `not computed: ${theft.reason}`);
    else show('theft-summary', `${number(theft.count)} suspect(s) · near-zero use (vacancy, not theft): ${number(theft.nearZero.count)}`);
    fillTable('theft', judged ? theft.top : [], (row) => [row.meterId, row.feederId, (row.reasons || []).join(', ')]);
    const unjudged = judged ? theft.insufficientData : null;
    show('theft-unjudged', !unjudged ? '' : `insufficient data: ${number(unjudged.count)} meter-day(s) with too few reads to judge` + (unjudged.top.length ? `, e.g. ${unjudged.top.map((row) => `${row.meterId} (${percent(row.completeness)})`).join(', ')}` : ''));
  }

  function drawEvents(events) {
    fillTable('events', events.events, (event) => {
      const { id, type, feederId, startsAt, endsAt, tenantId, ...detail } = event;
      return [id, type, feederId, startsAt, endsAt, Object.entries(detail).map(([name, value]) => `${name} ${value}`).join(' · ')];
    });
  }

  function fillTenants(list) {
    $('tenants').replaceChildren(...list.tenants.map((tenant) => element('option', { value: tenant })));
    if (!$('tenant').value && list.tenants.length) $('tenant').value = list.tenants.includes('DEMO_TENANT') ? 'DEMO_TENANT' : list.tenants[0];
  }

  // What the tenant's panels show: whose, as of which reads, read when.
  let shown = { tenant: null, reads: null, latest: null, kpiAt: 0 };

  // The chosen tenant's status; its KPIs if its reads changed (or they are old), and its
  // events every EVENTS_EVERY polls; everything when the tenant is another.
  async function readTenant(tenant) {
    const query = `?tenantId=${encodeURIComponent(tenant)}`;
    const status = await call(`/api/ami/scale/status${query}`);
    const another = shown.tenant !== tenant;
    const changed = another || status.totalReads !== shown.reads || status.latestReadAt !== shown.latest;
    const [check, events] = await Promise.all([
      changed || Date.now() - shown.kpiAt > KPI_MAX_AGE_MS ? call(`/api/ami/kpi/quickcheck${query}`) : null,
      another || polls % EVENTS_EVERY === 0 ? call(`/api/ami/events${query}`) : null,
    ]);
    if (check) shown = { tenant, reads: status.totalReads, latest: status.latestReadAt, kpiAt: Date.now() };
    return { status, check, events };
  }

  // ---- polling --------------------------------------------------------------------------

  let polls = 0;
  let timer = null;

  function problem(text) {
    $('problem').hidden = !text;
    $('problem').textContent = text || '';
  }

  let polling = false;

  async function poll() {
    timer = null;
    if (polling) {
      schedule(200); // one poll at a time
      return;
    }
    polling = true;
    try {
      if (await pollOnce()) schedule();
    } finally {
      polling = false;
    }
  }

  // One round of reads; false when polling should wait for the key.
  async function pollOnce() {
    if (authReads && !key()) {
      $('key-needed').hidden = false;
      show('updated', 'waiting for the API key');
      return false; // the key field's input event polls again
    }
    $('key-needed').hidden = true;
    try {
      const tenant = chosenTenant();
      const [rates, tenants, tenantReads] = await Promise.all([
        call(ratesPath()).then(merged),
        polls % TENANTS_EVERY === 0 ? call('/api/ami/tenants') : null,
        tenant ? readTenant(tenant) : {},
      ]);
      drawRates(rates);
      drawQueue(rates);
      if (tenants) fillTenants(tenants);
      const { status, check, events } = tenantReads;
      if (status) drawStatus(status);
      if (check) drawQuickcheck(check);
      if (events) drawEvents(events);
      polls += 1;
      problem(null);
      show('updated', `updated ${new Date().toLocaleTimeString('en-GB')} · every ${POLL_MS / 1000} s`);
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        problem(`${error.message}: check the API key above`);
        return false; // until the key changes
      }
      problem(error instanceof ApiError ? `the API answered ${error.status}: ${error.message}` : 'the API does not answer; trying again');
    }
    return true;
  }

  function schedule(delay = POLL_MS) {
    if (timer !== null) clearTimeout(timer);
    timer = document.hidden ? null : setTimeout(poll, delay);
  }

  // ---- publish once ---------------------------------------------------------------------

  let planned = null; // the body of the last dry run, published as it is

  function formBody() {
    const form = new FormData($('publish'));
    const body = { tenantId: String(form.get('tenantId')).trim() };
    for (const name of ['meterCount', 'feederCount', 'batchSize', 'intervalMinutes']) {
      const value = String(form.get(name)).trim();
      if (value) body[name] = Number(value);
    }
    const readAt = String(form.get('readAt')).trim();
    if (readAt) body.readAt = readAt;
    return body;
  }

  async function publish(body) {
    return call('/api/ami/publish-once', {
      method: 'POST',
      withKey: true,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
  }

  function publishStatus(text) {
    show('publish-status', text);
  }

  function planFigures(plan) {
    const figures = [
      ['meters', `${number(plan.computedMeters)} (${number(plan.meterRange.first)}–${number(plan.meterRange.last)})`],
      ['feeders', number(plan.computedFeederCount)],
      ['jobs', number(plan.estimatedJobs)],
      ['read at', plan.readAt],
      ['PV / EV meters', `${number(plan.computedPvMeters)} / ${number(plan.computedEvMeters)}`],
      ['late reads', number(plan.estimatedLateReads)],
      ['about', `${number(plan.estimatedRuntimeSeconds)} s at the cap`],
      ['queue now', `${number(plan.queue.waiting)} waiting + ${number(plan.queue.delayed)} delayed`],
    ];
    $('plan-figures').replaceChildren(...figures.flatMap(([name, value]) => [element('dt', {}, name), element('dd', {}, value)]));
    const warnings = plan.safetyWarnings.length ? plan.safetyWarnings : ['no safety warnings'];
    $('plan-warnings').replaceChildren(...warnings.map((warning) => element('li', {}, warning)));
  }

  function forgetPlan() {
    planned = null;
    $('plan-result').hidden = true;
  }

  async function onPlan(event) {
    event.preventDefault();
    forgetPlan();
    if (!key()) {
      publishStatus('type the API key above first: publishing always needs it');
      return;
    }
    const body = formBody();
    publishStatus('planning…');
    try {
      const plan = await publish({ ...body, dryRun: true });
      planFigures(plan);
      planned = body;
      $('plan-result').hidden = false;
      $('publish-now').textContent = `Publish ${number(plan.computedMeters)} reads for real`;
      publishStatus('dry run: nothing was enqueued');
    } catch (error) {
      publishStatus(`refused: ${error.message}`);
    }
  }

  async function onPublishNow() {
    if (!planned) return;
    const body = planned;
    forgetPlan();
    publishStatus(`publishing ${body.tenantId}…`);
    if (chosenTenant() !== body.tenantId) {
      $('tenant').value = body.tenantId;
      schedule(0);
    }
    try {
      const done = await publish(body);
      const warnings = done.safetyWarnings.length ? ` · ${done.safetyWarnings.join(' · ')}` : '';
      publishStatus(`published ${number(done.reads)} reads in ${number(done.jobs)} jobs, ${done.elapsedSeconds} s, fullest second ${number(done.fullestSecondReads)} reads${warnings}`);
    } catch (error) {
      publishStatus(`not published: ${error.message}`);
    }
  }

  // ---- wiring ---------------------------------------------------------------------------

  $('publish').addEventListener('submit', onPlan);
  $('publish').addEventListener('input', forgetPlan);
  $('publish-now').addEventListener('click', onPublishNow);
  $('tenant').addEventListener('change', () => {
    const typed = $('tenant').value.trim();
    show('tenant-problem', typed && !chosenTenant() ? `not a tenant id: ${typed} (letters, digits and _, up to 64)` : '');
    schedule(0);
  });
  $('key').addEventListener('input', () => {
    if (authReads) schedule(300); // once typing pauses
  });
  document.addEventListener('visibilitychange', () => schedule(0));
  schedule(0);
})();
