// streamwarden's page: polls the daemon's own APIs (relative URLs, this origin only) and
// draws them. Everything from the daemon is put in the page as text (textContent), never
// as HTML: names and titles come from Plex and its users.
'use strict';

(() => {
  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);

  // An element with attributes and children (strings become text nodes).
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const k of kids.flat()) {
      if (k === null || k === undefined || k === false) continue;
      e.append(k instanceof Node ? k : String(k));
    }
    return e;
  }

  // Text from outside (Plex's names and titles, messages): isolated from the page's own
  // direction (a name holding U+202E cannot reverse what follows it) and clipped to one line,
  // with the whole of it on hover.
  function out(text, cls) {
    const t = text === null || text === undefined ? '' : String(text);
    return el('bdi', { class: 'clip' + (cls ? ' ' + cls : ''), title: t.length > 40 ? t : null }, t);
  }

  function mbps(kbps) {
    if (kbps === null || kbps === undefined || !isFinite(kbps)) return '–';
    const m = kbps / 1000;
    return (m < 10 ? m.toFixed(2) : m.toFixed(1)) + ' Mbps';
  }

  // A stream without a figure because its address is shared and its share unknown: what
  // flows to the address, and with whom, said as such.
  function shared(row) {
    if (row.measured_kbps_10s !== null && row.measured_kbps_10s !== undefined) return null;
    if (row.address_kbps_1m === null || row.address_kbps_1m === undefined) return null;
    const others = (row.shared_with || []).join(', ') || 'another stream';
    return el('span', { class: 'sub shared', title: 'Several streams share this address and this one\'s share cannot be told' },
      out(mbps(row.address_kbps_1m) + ' at this address, shared with ' + others + ', share unknown'));
  }

  function clock(ts) {
    const d = new Date(ts);
    if (isNaN(d)) return '?';
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function dateTime(ts) {
    const d = new Date(ts);
    if (isNaN(d)) return ts || '?';
    return d.toLocaleString([], {
      year: 'numeric', month: 'short', day: 'numeric',
      hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
  }

  // How long ago `ts` was, by the daemon's clock (`now`), in words.
  function ago(ts, now) {
    const s = Math.max(0, Math.round((Date.parse(now) - Date.parse(ts)) / 1000));
    if (!isFinite(s)) return '';
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d';
  }

  const SVG = 'http://www.w3.org/2000/svg';
  // A sparkline of rates (nulls leave gaps), scaled to its own maximum.
  function spark(values) {
    const box = el('span', { class: 'spark', 'aria-hidden': 'true' });
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 100 20');
    svg.setAttribute('preserveAspectRatio', 'none');
    const list = values || [];
    const max = Math.max(1, ...list.filter((v) => v !== null));
    const n = Math.max(list.length - 1, 1);
    let points = [];
    const flush = () => {
      if (points.length > 1) {
        const line = document.createElementNS(SVG, 'polyline');
        line.setAttribute('points', points.join(' '));
        svg.append(line);
      }
      points = [];
    };
    list.forEach((v, i) => {
      if (v === null || v === undefined) { flush(); return; }
      const x = (i / n) * 100;
      const y = 19 - (v / max) * 18;
      points.push(x.toFixed(1) + ',' + y.toFixed(1));
    });
    flush();
    box.append(svg);
    box.dataset.points = String(list.filter((v) => v !== null).length);
    return box;
  }

  let status = null;
  let offlineSince = null;

  function setFact(id, text, kind, title) {
    const e = $(id);
    e.textContent = text;
    e.className = 'fact' + (kind ? ' ' + kind : '');
    if (title) e.title = title; else e.removeAttribute('title');
  }

  function drawStatus(st) {
    $('dry-run').hidden = !st.dry_run;
    document.title = (st.dry_run ? 'DRY RUN · ' : '') + st.streams + ' streams · streamwarden';
    const p = st.plex;
    if (p.state === 'ok') {
      const since = p.since ? ' since ' + clock(p.since) + ' (' + ago(p.since, st.now) + ')' : '';
      if (p.fresh) setFact('plex', 'Plex reachable' + since, 'ok');
      else setFact('plex', 'Plex reachable, data not fresh' + since, 'warn');
    } else if (p.state === 'unreachable') {
      const since = p.since ? ' since ' + clock(p.since) + ' (' + ago(p.since, st.now) + ')' : '';
      setFact('plex', 'Plex unreachable' + since + ': ' + (p.error || ''), 'bad', p.error || '');
    } else {
      setFact('plex', 'Plex: waiting for the first read', 'warn');
    }
    const ev = st.events || { state: 'off' };
    if (ev.state === 'live') {
      setFact('events', 'events live · ' + ev.received + ' received', 'ok',
        "Plex's event stream is open: new streams are judged as Plex announces them");
    } else if (ev.state === 'down') {
      setFact('events', 'events down: polling', 'warn', ev.error || '');
    } else if (ev.state === 'connecting') {
      setFact('events', 'events: connecting', 'warn');
    } else {
      setFact('events', 'events off: polling', '');
    }
    const c = st.capture;
    if (c.state === 'live') {
      const drops = c.kernel_dropped || 0;
      setFact('capture', 'capture on · ' + c.packets + ' packets · ' + drops + ' dropped',
        drops > 0 ? 'warn' : 'ok');
    } else if (c.state === 'fed') {
      setFact('capture', 'capture: generated traffic · ' + c.packets + ' packets', 'ok');
    } else {
      setFact('capture', 'capture off: measured rates unknown', 'warn');
    }
    const b = st.budget;
    setFact('budget', 'kill budget: ' + b.left + ' of ' + b.max_per_minute + ' left this minute',
      b.left === 0 ? 'bad' : '');
    setFact('updated', 'updated ' + clock(st.now) + ' · up ' + ago(new Date(Date.parse(st.now) - st.up_s * 1000).toISOString(), st.now), 'quiet');
    const r = st.reload;
    const box = $('reload');
    if (!r) {
      box.hidden = true;
    } else if (r.ok) {
      box.hidden = false;
      box.className = 'reload ok';
      let t = 'Reload at ' + clock(r.at) + ': applied, ' + r.rules + ' rules';
      if (r.restart_needed && r.restart_needed.length) t += '; ' + r.restart_needed.join(', ') + ' changed and wait for a restart';
      box.textContent = t;
    } else {
      box.hidden = false;
      box.className = 'reload bad';
      box.textContent = 'Reload at ' + clock(r.at) + ' REFUSED, still running the previous configuration:\n' + (r.error || '');
    }
    $('total-rate').textContent = c.state === 'off' ? 'not measured' : mbps(st.total_kbps_10s);
    $('total-rate').title = '10 s; 1 min: ' + mbps(st.total_kbps_1m);
    $('total-spark').replaceChildren(spark(st.total_history_kbps));
    drawExamples(st.rules);
    drawRuleFilter(st.rules);
  }

  function ruleAction(name) {
    const r = status && status.rules.find((x) => x.name === name);
    return r ? r.action : 'kill';
  }

  function ruleChip(row, r) {
    const note = (row.notes || {})[r.rule];
    if (note === 'killed') return el('span', { class: 'chip killed' }, r.rule + ': killed');
    if (note === 'would kill') return el('span', { class: 'chip would' }, r.rule + ': would kill (dry run)');
    if (note === 'kill failed') return el('span', { class: 'chip failed' }, r.rule + ': kill failed');
    if (note === 'exempt') return el('span', { class: 'chip exempt' }, r.rule + ': exempt');
    switch (r.state) {
      case 'sustaining': {
        // What the hold comes to, and when: "kills in 12 s unless it stops".
        const left = Math.max(0, r.sustain_s - (r.held_s || 0));
        const verb = { log: 'logs', throttle: 'throttles' }[ruleAction(r.rule)] || 'kills';
        const dry = status && status.dry_run && verb !== 'logs' ? ' (dry run: would)' : '';
        return el('span', { class: 'chip sustaining', title: 'The condition has held for ' + (r.held_s || 0) + ' of the ' + r.sustain_s + ' s it must hold before the rule acts' },
          r.rule + ': sustaining ' + (r.held_s || 0) + '/' + r.sustain_s + ' s · ' + verb + ' in ' + left + ' s unless it stops' + dry);
      }
      case 'due':
        return el('span', { class: 'chip due' }, r.rule + ': due');
      case 'acted':
        return el('span', { class: 'chip acted' }, r.rule + ({ log: ': logged', throttle: ': throttled' }[ruleAction(r.rule)] || ': acted'));
      case 'unknown':
        return el('span', { class: 'chip unknown', title: 'This rule could not be judged: a value it reads is unknown, so it does not act' }, r.rule + ': unknown: ' + (r.unknown || []).join(', '));
      default:
        return el('span', { class: 'chip ok' }, r.rule + ': ok');
    }
  }

  // "Kill now": only when the daemon allows it (it has a token), through its enforcer.
  function killButton(row) {
    if (!status || !status.can_kill || !row.session_id || row.killed) return null;
    const b = el('button', { type: 'button', class: 'kill', title: 'Stop this stream now, with a message the viewer sees' }, 'Kill now…');
    b.addEventListener('click', () => killNow(row, b));
    return b;
  }

  async function killNow(row, button) {
    const message = window.prompt('Stop ' + (row.user || '?') + "'s stream of " + (row.title || '?') + '?\nThe viewer sees this message:', 'The server owner has ended the stream.');
    if (message === null) return;
    button.disabled = true;
    const box = $('action-result');
    try {
      const r = await call('api/streams/kill', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ session_id: row.session_id, message }),
      });
      box.hidden = false;
      box.className = 'action ' + (r.status === 200 ? 'ok' : 'bad');
      box.textContent = (r.body && (r.body.said || r.body.error)) || ('HTTP ' + r.status);
    } catch (e) {
      box.hidden = false;
      box.className = 'action bad';
      box.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  }

  function drawStreams(rows) {
    const body = $('stream-rows');
    $('no-streams').hidden = rows.length > 0;
    $('streams').hidden = rows.length === 0;
    $('live-count').textContent = '(' + rows.length + ')';
    body.replaceChildren(...rows.map((row) => {
      // Rules that matched first, as chips; those that hold nothing, in one quiet line.
      const quiet = (r) => r.state === 'ok' && !(row.notes || {})[r.rule];
      const rules = row.rules || [];
      const chips = el('div', { class: 'chips' }, rules.filter((r) => !quiet(r)).map((r) => ruleChip(row, r)));
      const fine = rules.filter(quiet).map((r) => r.rule);
      if (fine.length) chips.append(el('span', { class: 'rules-ok', title: 'These rules do not match this stream' }, 'ok: ' + fine.join(', ')));
      if (row.killed) chips.prepend(el('span', { class: 'chip killed' }, 'killed, waiting for Plex to drop it'));
      else if (row.still_listed) chips.prepend(el('span', { class: 'chip failed' }, 'killed, still listed (zombie)'));
      if (row.throttle) {
        const t = row.throttle;
        chips.prepend(el('span', {
          class: 'chip ' + (t.dry ? 'would' : 'throttled'),
          title: 'Rule ' + t.rule + ': ' + t.connections + ' connection(s) limited in the kernel for ' + t.for_s + ' s',
        }, (t.dry ? 'would throttle to ' : 'throttled to ') + t.rate + (t.dry ? ' (dry run)' : '')));
      }
      if (row.exempt) chips.prepend(el('span', { class: 'chip exempt' }, 'exempt user'));
      const details = [row.transcode_decision || 'decision unknown', row.address || 'no address', row.state || null]
        .filter(Boolean).join(' · ');
      return el('tr', { 'data-session': row.session_id || '', class: row.killed ? 'killed' : null },
        el('td', { 'data-label': 'User · player' },
          el('span', { class: 'strong' }, out(row.user || '?')),
          ...(row.groups || []).map((g) => el('span', { class: 'chip group', title: 'group ' + g }, out(g))),
          el('span', { class: 'sub' }, out(row.player || '')),
          killButton(row)),
        el('td', { 'data-label': 'Title · decision · address' },
          out(row.title || '', 'title'),
          el('span', { class: 'sub' }, out(details))),
        el('td', { class: 'num rate-cell', 'data-label': 'Measured 10 s · 1 min' },
          el('span', { class: 'rate-10s strong' }, mbps(row.measured_kbps_10s)),
          row.estimated ? el('span', { class: 'est', title: 'An estimated share: several streams share this address' }, 'estimated') : null,
          row.rate_source === 'plex' ? el('span', { class: 'est', title: "Measured by Plex's own counters (/statistics/bandwidth), not from packets" }, 'plex') : null,
          ' ', spark(row.history_kbps),
          el('span', { class: 'sub' }, '1 min ' + mbps(row.measured_kbps_1m)),
          shared(row)),
        el('td', { class: 'num', 'data-label': 'Plex reports · source file' },
          mbps(row.stream_bitrate_kbps),
          el('span', { class: 'sub' }, 'source ' + mbps(row.source_bitrate_kbps)),
          row.bandwidth_kbps ? el('span', { class: 'sub' }, 'reserves ' + mbps(row.bandwidth_kbps)) : null),
        el('td', { 'data-label': 'Rules' }, chips));
    }));
  }

  // History.
  let auditVersion = null;
  const seenRules = new Set();
  let historyBusy = false;
  const PERIOD = { '24h': 'in the last day', '7d': 'this week', '30d': 'in the last 30 days', '': 'ever' };

  function times(n, what) {
    return n === 1 ? what + ' once' : what + ' ' + n + ' times';
  }

  async function loadHistory() {
    if (historyBusy) return;
    historyBusy = true;
    try {
      const q = new URLSearchParams();
      const user = $('f-user').value.trim();
      const rule = $('f-rule').value;
      const since = $('f-since').value;
      if (user) q.set('user', user);
      if (rule) q.set('rule', rule);
      if (since) q.set('since', since);
      const r = await call('api/history?' + q.toString());
      if (r.status !== 200) {
        $('history-note').textContent = 'History: ' + (r.body.error || r.status);
        return;
      }
      drawHistory(r.body, PERIOD[since] || '');
    } finally {
      historyBusy = false;
    }
  }

  function drawHistory(h, period) {
    $('user-counts').replaceChildren(...h.users.map((u) => {
      const parts = [];
      if (u.kills) parts.push(times(u.kills, 'killed'));
      if (u.would_kills) parts.push(times(u.would_kills, 'would have been killed'));
      if (u.failures) parts.push(times(u.failures, 'a kill failed'));
      if (u.zombies) parts.push(times(u.zombies, 'survived a kill'));
      if (u.throttles) parts.push(times(u.throttles, 'throttled'));
      const li = el('li', { title: 'Show only ' + u.user, 'data-user': u.user },
        el('span', { class: 'strong' }, out(u.user)), ': ' + parts.join(', ') + ' ' + period);
      li.addEventListener('click', () => { $('f-user').value = u.user; loadHistory(); });
      return li;
    }));
    $('f-users').replaceChildren(...h.users.map((u) => el('option', { value: u.user })));
    // Rules met in the history (kill-now, or rules since removed) can be filtered on too.
    h.entries.forEach((e) => seenRules.add(e.rule));
    if (status) drawRuleFilter(status.rules);
    const notes = [];
    if (status && !status.audit.file) notes.push('No [enforce] audit_log is configured: this shows what this run did since it started.');
    if (h.total > h.entries.length) notes.push('The newest ' + h.entries.length + ' of ' + h.total + '.');
    if (h.unreadable) notes.push(h.unreadable + ' unreadable lines in the audit log were skipped.');
    $('history-note').textContent = notes.join(' ');
    $('no-history').hidden = h.entries.length > 0;
    $('history-list').replaceChildren(...h.entries.map((e) => el('li', { 'data-action': e.action, 'data-session': e.session_id || '' },
      el('time', { datetime: e.ts }, dateTime(e.ts)),
      el('div', { class: 'what' },
        el('span', { class: 'badge ' + e.action }, e.action),
        el('span', { class: 'strong' }, out(e.user || '?')),
        el('span', null, out(e.title || '', 'title')),
        el('span', { class: 'quiet' }, '[', out(e.rule), ']'),
        e.mode === 'dry-run' && e.action !== 'would-kill' ? el('span', { class: 'quiet' }, '(dry run)') : null),
      e.message ? el('p', { class: 'message', title: 'What the viewer saw' }, '“', el('bdi', null, e.message), '”') : null,
      e.reason ? el('p', { class: 'reason' }, el('bdi', null, e.reason)) : null)));
  }

  let ruleNames = '';
  function drawRuleFilter(rules) {
    const names = rules.map((r) => r.name);
    for (const n of [...seenRules].sort()) if (!names.includes(n)) names.push(n);
    if (names.join('\n') === ruleNames) return;
    ruleNames = names.join('\n');
    const sel = $('f-rule');
    const keep = sel.value;
    sel.replaceChildren(el('option', { value: '' }, 'every rule'), ...names.map((n) => el('option', { value: n }, n)));
    if (keep && !names.includes(keep)) sel.append(el('option', { value: keep }, keep));
    sel.value = keep;
  }

  // Rule lab.
  let examplesShown = '';
  function drawExamples(rules) {
    const key = rules.map((r) => r.name + '\u0000' + r.when).join('\n');
    if (key === examplesShown) return;
    examplesShown = key;
    $('lab-examples').replaceChildren(...rules.map((r) => {
      const b = el('button', { type: 'button', title: r.when }, r.name);
      b.addEventListener('click', () => { $('lab-when').value = r.when; tryRule(); });
      return b;
    }));
  }

  let labTimer = null;
  let labSeq = 0;
  // The backtest over the recorded past is asked for once per condition, not on each
  // refresh of the live streams: it reads a week of usage.
  let pastFor = null;
  let pastText = '';
  async function tryRule() {
    const when = $('lab-when').value;
    const seq = ++labSeq;
    const askPast = when !== pastFor;
    if (!when.trim()) {
      $('lab-error').hidden = true;
      $('lab-table').hidden = true;
      $('lab-reads').textContent = '';
      return;
    }
    const r = await call('api/rules/try', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ when, past: askPast }),
    });
    if (seq !== labSeq) return;
    if (r.status === 400 && r.body && typeof r.body.line === 'number') {
      const at = Math.min(r.body.offset || 0, when.length);
      const bytes = new TextEncoder().encode(when);
      const before = new TextDecoder().decode(bytes.slice(0, at));
      const rest = [...new TextDecoder().decode(bytes.slice(at))];
      $('lab-error-where').replaceChildren(before, el('mark', null, rest.length ? rest[0] : ' '), rest.slice(1).join(''));
      $('lab-error-text').textContent = 'line ' + r.body.line + ', column ' + r.body.column + ': ' + r.body.error;
      $('lab-error').hidden = false;
      $('lab-table').hidden = true;
      $('lab-reads').textContent = '';
      return;
    }
    if (r.status !== 200) {
      $('lab-error-where').textContent = '';
      $('lab-error-text').textContent = (r.body && r.body.error) || ('HTTP ' + r.status);
      $('lab-error').hidden = false;
      return;
    }
    $('lab-error').hidden = true;
    const res = r.body;
    const matched = res.streams.filter((s) => s.matched === true).length;
    let past = askPast ? '' : pastText;
    if (askPast && res.past && res.past.periods > 0) {
      past = ' In the last 7 days of recorded usage it would have matched ' + res.past.streams + ' stream' + (res.past.streams === 1 ? '' : 's') +
        ' of ' + res.past.users + ' user' + (res.past.users === 1 ? '' : 's') + '.';
      if (res.past.unknown_periods > 0) past += ' (' + res.past.unknown.join(', ') + ' not recorded: ' + res.past.unknown_periods + ' periods not judged.)';
    }
    if (askPast) {
      pastFor = when;
      pastText = past;
    }
    $('lab-reads').textContent = 'Reads ' + (res.reads.join(', ') || 'nothing') + '. Matches ' + matched + ' of ' + res.streams.length + ' live streams.' + past;
    $('lab-table').hidden = res.streams.length === 0;
    $('lab-rows').replaceChildren(...res.streams.map((s) => {
      let result;
      if (s.matched === true) result = el('span', { class: 'chip due' }, 'matches');
      else if (s.matched === false) result = el('span', { class: 'chip ok' }, 'no match');
      else if (s.error) result = el('span', { class: 'chip failed' }, 'error: ' + s.error);
      else result = el('span', { class: 'chip sustaining' }, 'unknown: ' + s.missing.join(', '));
      const values = Object.entries(s.values).map(([k, v]) => v === null
        ? el('div', { class: 'unknown' }, k + ' = unknown')
        : el('div', null, k + ' = ' + (typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(1) : JSON.stringify(v))));
      return el('tr', { 'data-session': s.session_id || '', 'data-matched': String(s.matched) },
        el('td', { 'data-label': 'Stream' }, el('span', { class: 'strong' }, out(s.user || '?')), el('span', { class: 'sub' }, out(s.title || '', 'title'))),
        el('td', { 'data-label': 'Result' }, result),
        el('td', { class: 'values', 'data-label': 'Values read' }, values));
    }));
    $('lab-table').hidden = res.streams.length === 0;
  }

  // Talking to the daemon.
  // `path` beside the page, without the user name and password a URL such as
  // http://owner:TOKEN@host/ carries (fetch refuses those; the browser signs in anyway).
  function beside(path) {
    const u = new URL(path, location.href);
    u.username = '';
    u.password = '';
    return u.href;
  }

  async function call(path, opts) {
    const r = await fetch(beside(path), Object.assign({ cache: 'no-store', credentials: 'same-origin' }, opts || {}));
    let body = null;
    try { body = await r.json(); } catch (_) { body = null; }
    if (r.status === 401) throw new Error('signed out: reload the page and give the [http] token as the password');
    return { status: r.status, body };
  }

  // Usage: a row per user with today, week, month, a 30-day bar chart and the nearest quota.
  function gb(bytes) {
    const g = (bytes || 0) / 1e9;
    return (g < 10 ? g.toFixed(2) : g.toFixed(1)) + ' GB';
  }

  function hours(seconds) {
    return ((seconds || 0) / 3600).toFixed(1) + ' h';
  }

  function bars(values, days) {
    const box = el('span', { class: 'bars' });
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 120 24');
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img');
    const list = values || [];
    const max = Math.max(1, ...list);
    list.forEach((v, i) => {
      const h = (v / max) * 22;
      const r = document.createElementNS(SVG, 'rect');
      r.setAttribute('x', String(i * 4));
      r.setAttribute('y', (23 - h).toFixed(1));
      r.setAttribute('width', '3');
      r.setAttribute('height', Math.max(h, v > 0 ? 0.5 : 0).toFixed(1));
      const t = document.createElementNS(SVG, 'title');
      t.textContent = (days[i] || '') + ': ' + gb(v);
      r.append(t);
      svg.append(r);
    });
    svg.setAttribute('aria-label', 'GB a day over the last 30 days, up to ' + gb(max));
    box.append(svg);
    box.dataset.days = String(list.filter((v) => v > 0).length);
    return box;
  }

  let usageAt = 0;
  async function loadUsage() {
    if (Date.now() - usageAt < 30000) return;
    usageAt = Date.now();
    const r = await call('api/usage');
    const body = $('usage-rows');
    if (r.status !== 200 || !r.body) {
      body.replaceChildren();
      $('no-usage').hidden = false;
      $('no-usage').textContent = (r.body && r.body.error) || 'Usage is not recorded here.';
      return;
    }
    const users = r.body.users || [];
    $('no-usage').hidden = users.length > 0;
    body.replaceChildren(...users.map((u) => {
      const c = u.closest;
      const quota = c
        ? el('span', { class: 'chip ' + (c.percent >= 100 ? 'acted' : c.percent >= 80 ? 'sustaining' : 'ok'),
          title: 'rule ' + c.rule + ': ' + c.variable + ' > ' + c.limit },
          out(c.rule + ': ' + Math.round(c.percent) + ' % (' + c.value.toFixed(2) + ' of ' + c.limit + ')'))
        : el('span', { class: 'quiet' }, 'no quota rule');
      return el('tr', { 'data-user': u.user },
        el('td', { 'data-label': 'User' }, out(u.user, 'strong')),
        el('td', { class: 'num', 'data-label': 'Today' }, gb(u.today_bytes), el('span', { class: 'sub' }, hours(u.today_seconds))),
        el('td', { class: 'num', 'data-label': 'This week' }, gb(u.week_bytes), el('span', { class: 'sub' }, hours(u.week_seconds))),
        el('td', { class: 'num', 'data-label': 'This month' }, gb(u.month_bytes), el('span', { class: 'sub' }, hours(u.month_seconds))),
        el('td', { 'data-label': 'Last 30 days' }, bars(u.daily_bytes, r.body.days || [])),
        el('td', { 'data-label': 'Closest quota' }, quota));
    }));
  }

  async function poll() {
    try {
      const [st, rows] = await Promise.all([call('api/status'), call('api/streams')]);
      if (st.status !== 200 || rows.status !== 200) throw new Error('the daemon answered ' + st.status + '/' + rows.status);
      status = st.body;
      offlineSince = null;
      $('offline').hidden = true;
      drawStatus(status);
      drawStreams(rows.body);
      if (status.audit.version !== auditVersion) {
        auditVersion = status.audit.version;
        loadHistory();
      }
      if ($('lab-when').value.trim()) tryRule();
      loadUsage();
    } catch (e) {
      offlineSince = offlineSince || new Date();
      $('offline').hidden = false;
      $('offline').textContent = 'The daemon does not answer since ' + offlineSince.toLocaleTimeString() + ' (' + e.message + '); trying again.';
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  $('history-filter').addEventListener('submit', (e) => { e.preventDefault(); loadHistory(); });
  $('history-filter').addEventListener('change', () => loadHistory());
  let userTimer = null;
  $('f-user').addEventListener('input', () => { clearTimeout(userTimer); userTimer = setTimeout(loadHistory, 300); });
  $('lab-when').addEventListener('input', () => { clearTimeout(labTimer); labTimer = setTimeout(tryRule, 200); });
  poll();
})();
