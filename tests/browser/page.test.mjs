// The owner's page in a real browser: Debian's chromium, driven by playwright-core (no
// browser of Playwright's own). Starts `streamwarden demo --listen` with an HTTP token, signs
// in with Basic auth as a browser does, and checks that the page loads without console
// errors, lists the streams with measured rates, updates by itself, shows a kill with the
// message the viewer saw, runs the rule lab, kills a stream by hand, and that no request
// leaves the daemon's address. With SCREENSHOTS=DIR it saves desktop and phone screenshots there.
//
// usage: STREAMWARDEN_BIN=target/debug/streamwarden node tests/browser/page.test.mjs
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const BIN = process.env.STREAMWARDEN_BIN || 'target/debug/streamwarden';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.SCREENSHOTS ? resolve(process.env.SCREENSHOTS) : null;
const TOKEN = 'browser-' + randomBytes(12).toString('hex');
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

let passed = 0;
let failed = 0;
function ok(what) { passed += 1; console.log('ok - ' + what); }
function fail(what, why) { failed += 1; console.log('not ok - ' + what + ': ' + why); }
async function check(what, fn) {
  try { await fn(); ok(what); } catch (e) { fail(what, e && e.message ? e.message.split('\n')[0] : e); }
}
function assert(cond, message) { if (!cond) throw new Error(message); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
  });
}

async function waitFor(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try { if (await fn()) return; } catch (e) { last = e; }
    await sleep(250);
  }
  throw new Error('timed out waiting for ' + what + (last ? ' (' + last.message + ')' : ''));
}

const port = await freePort();
const origin = `http://127.0.0.1:${port}`;
const demo = spawn(BIN, ['demo', '--listen', `127.0.0.1:${port}`, '--duration', '120', '--log-format', 'json'], {
  env: { ...process.env, STREAMWARDEN_HTTP_TOKEN: TOKEN },
  stdio: ['ignore', 'pipe', 'pipe'],
});
let demoOut = '';
demo.stdout.on('data', (d) => { demoOut += d; });
demo.stderr.on('data', (d) => { demoOut += d; });
const profile = mkdtempSync(join(tmpdir(), 'streamwarden-chromium-'));
let context;

try {
  const basic = 'Basic ' + Buffer.from('owner:' + TOKEN).toString('base64');
  await waitFor(async () => (await fetch(origin + '/api/status', { headers: { Authorization: basic } })).ok,
    30000, 'the demo to serve ' + origin);

  await check('without credentials the page and the APIs answer 401', async () => {
    for (const path of ['/', '/api/status', '/api/streams', '/api/history']) {
      const r = await fetch(origin + path);
      assert(r.status === 401, path + ' answered ' + r.status);
    }
    const bearer = await fetch(origin + '/api/status', { headers: { Authorization: 'Bearer ' + TOKEN } });
    assert(bearer.ok, 'Bearer answered ' + bearer.status);
  });

  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    httpCredentials: { username: 'owner', password: TOKEN },
    viewport: { width: 1280, height: 900 },
    colorScheme: 'light',
  });
  const requests = [];
  const foreign = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    requests.push(url);
    if (new URL(url).origin !== origin) { foreign.push(url); return route.abort(); }
    return route.continue();
  });
  const page = context.pages()[0] || await context.newPage();
  const errors = [];
  page.on('console', (m) => {
    // The rule lab's compile errors are answers of 400, which chromium notes as failed
    // loads; anything else is an error of the page.
    const lab = (m.location().url || '').endsWith('/api/rules/try') && /status of 400/.test(m.text());
    if (m.type() === 'error' && !lab) errors.push(m.text() + ' (' + (m.location().url || '?') + ')');
  });
  page.on('pageerror', (e) => errors.push(String(e)));

  await page.goto(origin + '/');

  await check('the page lists the streams with measured rates', async () => {
    await page.waitForSelector('#stream-rows tr', { timeout: 15000 });
    await waitFor(async () => {
      const rates = await page.$$eval('#stream-rows .rate-10s', (xs) => xs.map((x) => x.textContent));
      return rates.length >= 3 && rates.filter((r) => /^\d+\.\d+ Mbps$/.test(r)).length >= 3;
    }, 15000, 'three measured rates');
    const users = await page.$$eval('#stream-rows tr td:first-child .strong', (xs) => xs.map((x) => x.textContent));
    assert(users.includes('alice'), 'users: ' + users.join(', '));
    const header = await page.textContent('#plex');
    assert(/Plex reachable/.test(header), header);
    // rules.example.toml puts alice in the group family: her row says so.
    const groups = await page.$$eval('#stream-rows tr[data-session="demo-alice"] .chip.group', (xs) => xs.map((x) => x.textContent));
    assert(groups.join(',') === 'family', 'alice\'s groups: ' + groups.join(','));
    // The demo's stand-in Plex serves its event stream: the header says events are live.
    await waitFor(async () => /^events live/.test(await page.textContent('#events')), 10000, 'events live');
  });

  await check('the usage view shows each user with a 30-day chart and the nearest quota', async () => {
    await page.waitForSelector('#usage-rows tr[data-user="bob"]', { timeout: 15000 });
    const users = await page.$$eval('#usage-rows tr', (xs) => xs.map((x) => x.dataset.user));
    // The demo's invented past: bob streams the most.
    assert(users[0] === 'bob', 'usage order: ' + users.join(', '));
    const days = await page.$eval('#usage-rows tr[data-user="bob"] .bars', (b) => Number(b.dataset.days));
    assert(days >= 10, 'bob has ' + days + ' days in the chart');
    const month = await page.textContent('#usage-rows tr[data-user="bob"] td:nth-child(4)');
    assert(/^\d+(\.\d+)? GB/.test(month.trim()), month);
    const quota = await page.textContent('#usage-rows tr[data-user="bob"] td:nth-child(6)');
    assert(/quota-warning: \d+ %/.test(quota), quota);
  });

  await check('the page updates by itself', async () => {
    const before = await page.textContent('#updated');
    const points = await page.$eval('#stream-rows tr[data-session="demo-alice"] .spark', (s) => Number(s.dataset.points));
    await waitFor(async () => (await page.textContent('#updated')) !== before, 8000, 'the header to update');
    await waitFor(async () => {
      const now = await page.$eval('#stream-rows tr[data-session="demo-alice"] .spark', (s) => Number(s.dataset.points));
      return now > points;
    }, 8000, 'the sparkline to grow');
  });

  await check('a rule that holds shows its sustain count', async () => {
    await waitFor(async () => /sustaining \d+\/\d+ s · (kills|throttles|logs) in \d+ s unless it stops/.test(await page.textContent('#stream-rows')), 20000, 'a sustaining rule');
  });

  await check('a kill appears in the history with the message the viewer saw, without a reload', async () => {
    await page.waitForSelector('#history-list li[data-action="kill"]', { timeout: 40000 });
    const text = await page.textContent('#history-list');
    assert(text.includes('4K files cannot be transcoded here'), text);
    const counts = await page.textContent('#user-counts');
    assert(/bob: killed once this week/.test(counts), counts);
  });

  if (SHOTS) {
    await sleep(500);
    await page.screenshot({ path: join(SHOTS, 'page-desktop.png'), fullPage: true });
  }

  await check('the rule lab tries a condition on the live streams', async () => {
    await page.fill('#lab-when', 'location == "wan" && measured_kbps_1m > 1000');
    await page.waitForSelector('#lab-rows tr[data-matched="true"]', { timeout: 10000 });
    const reads = await page.textContent('#lab-reads');
    assert(reads.includes('location, measured_kbps_1m'), reads);
    // And against the recorded past: the demo's invented evenings are 0.3 to 2.4 GB an hour
    // (667 to 5,333 kbps), all remote; over 5,000 kbps only bob's (the live streams the
    // demo records meanwhile are under it but bob's too).
    await page.fill('#lab-when', 'location == "wan" && measured_kbps_1m > 5000');
    await waitFor(async () => /would have matched \d+ streams? of 1 user\./.test(await page.textContent('#lab-reads')), 10000, 'the past week of one user');
  });

  await check('the rule lab shows a compile error at its place', async () => {
    await page.fill('#lab-when', 'measured_kbps_1m > 1000 && usr == "bob"');
    await page.waitForSelector('#lab-error:not([hidden])', { timeout: 10000 });
    const text = await page.textContent('#lab-error-text');
    assert(/line 1, column 28: unknown variable `usr`/.test(text), text);
    assert((await page.textContent('#lab-error mark')) === 'u', 'marked: ' + await page.textContent('#lab-error mark'));
  });

  if (SHOTS) {
    await page.fill('#lab-when', 'transcode_decision == "transcode" || measured_kbps_1m > 7000');
    await page.waitForSelector('#lab-rows tr', { timeout: 10000 });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.evaluate(() => window.scrollTo(0, 0));
    await sleep(2500);
    await page.screenshot({ path: join(SHOTS, 'page-phone.png') });
    await page.$eval('#lab', (e) => e.scrollIntoView());
    await sleep(300);
    await page.screenshot({ path: join(SHOTS, 'page-phone-lab.png') });
    await page.setViewportSize({ width: 1280, height: 900 });
  }

  await check('kill now stops a stream through the daemon and shows it in the history', async () => {
    const said = 'The owner stopped this stream from the page.';
    page.once('dialog', (d) => d.accept(said));
    await page.click('#stream-rows tr[data-session="demo-alice"] button.kill');
    await page.waitForSelector('#action-result:not([hidden])', { timeout: 15000 });
    const result = await page.textContent('#action-result');
    assert(/^killed session demo-alice/.test(result), result);
    await page.waitForSelector('#history-list li[data-session="demo-alice"][data-action="kill"]', { timeout: 10000 });
    const entry = await page.textContent('#history-list li[data-session="demo-alice"]');
    assert(entry.includes('[kill-now]') && entry.includes(said), entry);
  });

  await check('the page fits a phone without sideways scrolling', async () => {
    await page.setViewportSize({ width: 360, height: 740 });
    await sleep(300);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(wide <= 360, 'the page is ' + wide + ' px wide');
  });

  await check('a 20,000-character title and a right-to-left override in a name stay in their cell', async () => {
    const long = 'A'.repeat(20000);
    const handler = async (route) => {
      const real = await route.fetch();
      const rows = await real.json();
      if (rows.length) { rows[0].title = long; rows[0].user = 'bob\u202Eevil'; }
      await route.fulfill({ response: real, json: rows });
    };
    await page.route('**/api/streams', handler);
    for (const width of [360, 1280]) {
      await page.setViewportSize({ width, height: 800 });
      await waitFor(async () => page.evaluate((n) => [...document.querySelectorAll('#stream-rows bdi')].some((b) => b.textContent.length === n), long.length), 10000, 'the long title drawn');
      const wide = await page.evaluate(() => document.documentElement.scrollWidth);
      assert(wide <= width, 'at ' + width + ' px the page is ' + wide + ' px wide');
    }
    const isolated = await page.evaluate(() => [...document.querySelectorAll('#stream-rows bdi')].some((b) => b.textContent.includes('\u202E') && getComputedStyle(b).unicodeBidi === 'isolate'));
    assert(isolated, 'the name with U+202E is not isolated in a <bdi>');
    const hover = await page.evaluate((n) => [...document.querySelectorAll('#stream-rows bdi')].some((b) => (b.getAttribute('title') || '').length === n), long.length);
    assert(hover, 'the whole title is not on hover');
    await page.unroute('**/api/streams', handler);
    await page.setViewportSize({ width: 360, height: 740 });
  });

  await check('the page shows no token', async () => {
    const html = await page.content();
    assert(!html.includes(TOKEN), 'the token is in the page');
  });

  await check('no console errors', async () => {
    assert(errors.length === 0, errors.join(' | '));
  });

  await check('no request leaves the daemon\'s address', async () => {
    assert(requests.length > 0, 'no request seen');
    assert(foreign.length === 0, foreign.join(', '));
  });
  await check('a page of another site cannot kill through a form the owner\'s browser posts', async () => {
    const bearer = { Authorization: 'Bearer ' + TOKEN };
    const rows = await (await fetch(origin + '/api/streams', { headers: bearer })).json();
    const victim = rows.find((r) => r.session_id);
    assert(victim, 'no stream left to aim at');
    // The demo's own rules kill streams meanwhile: only a kill by the webhook's hook (audited
    // under the rule jbop:stream) would be the attack's.
    const attackKills = async () => (await (await fetch(origin + '/api/history?rule=jbop:stream&action=kill,would-kill,kill-failed,kill-skipped&limit=1000', { headers: bearer })).json()).total;
    // The classic JSON-in-a-form trick: enctype text/plain turns name=value into a JSON body.
    // name + '=' + value is {"jbop":"stream","sessionId":"…","killMessage":"pwned="}.
    const name = JSON.stringify({ jbop: 'stream', sessionId: victim.session_id, killMessage: 'pwned' }).slice(0, -2);
    const evil = `<!doctype html><form method="post" action="${origin}/api/tautulli" enctype="text/plain">` +
      `<input name='${name}' value='"}'></form><script>document.forms[0].submit()</script>`;
    const { createServer: http } = await import('node:http');
    const site = http((req, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end(evil); });
    await new Promise((ok) => site.listen(0, '127.0.0.1', ok));
    const evilOrigin = 'http://127.0.0.1:' + site.address().port;
    await context.unrouteAll({ behavior: 'ignoreErrors' });
    try {
      const answered = page.waitForResponse((r) => r.url().endsWith('/api/tautulli'), { timeout: 10000 });
      await page.goto(evilOrigin + '/');
      const r = await answered;
      assert(r.status() === 403, 'the cross-site form got ' + r.status());
    } finally {
      site.close();
    }
    await sleep(1000);
    assert((await attackKills()) === 0, 'the form reached the hook: a kill was tried');
  });
} catch (e) {
  fail('the browser test ran to its end', e && e.message ? e.message : e);
} finally {
  if (context) await context.close().catch(() => {});
  demo.kill('SIGTERM');
  rmSync(profile, { recursive: true, force: true });
}

if (failed > 0) {
  console.log('--- the demo said:\n' + demoOut.slice(-4000).replaceAll(TOKEN, '<token>'));
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
