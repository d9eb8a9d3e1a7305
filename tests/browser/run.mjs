// Runs one browser scenario against a running Amber server in headless Chromium
// (Debian's /usr/bin/chromium driven by playwright-core; no browser download).
//
//   node tests/browser/run.mjs <scenario> <base-url> <artifact-dir> [json-args]
//
// Called by `cargo test` (tests/api/browser.rs), which spawns the server and seeds it.
// Prints progress lines and, last, `RESULT {json}`; exits 1 with `FAIL <reason>` when
// an assertion fails. Every scenario also fails on a page error, a console error or
// warning, or a CSP violation, except network noise the scenario declares expected
// (the X widget and pbs.twimg.com are unreachable offline, by design).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { scenarios } from './scenarios.mjs';

const [name, base, outDir, rawArgs] = process.argv.slice(2);
const args = rawArgs ? JSON.parse(rawArgs) : {};
const scenario = scenarios[name];
if (!scenario || !base || !outDir) {
  console.error(`usage: run.mjs <${Object.keys(scenarios).join('|')}> <base-url> <artifact-dir> [json]`);
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

// Hosts the page may try and fail to reach offline without that being a bug.
const EXTERNAL_OK = ['platform.twitter.com', 'pbs.twimg.com'];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
    '--disable-component-update', '--disable-sync', '--disable-quic',
  ],
});

const problems = [];
const notes = [];
// Same-origin responses a scenario expects to fail, as "status path-prefix".
const expectedFailures = new Set(args.expectedFailures || []);

// A stand-in for pbs.twimg.com images (no internet here or in CI): a soft landscape.
const PICTURE = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 225">
<defs><linearGradient id="s" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#f6d365"/><stop offset="1" stop-color="#fda085"/></linearGradient></defs>
<rect width="400" height="225" fill="url(#s)"/><circle cx="300" cy="80" r="34" fill="#fff6d5"/>
<path d="M0 170 L90 110 L170 165 L250 120 L400 185 L400 225 L0 225Z" fill="#7a5c3e"/></svg>`;

// Nothing leaves the machine: the X widget fails at once, as in CI without internet,
// and pbs.twimg.com answers with PICTURE. A scenario may add its own routes.
async function newPage(viewport, opts = {}) {
  const context = await browser.newContext({ viewport, serviceWorkers: 'block' });
  await context.route((url) => new URL(url).origin !== new URL(base).origin, (route) => {
    const host = new URL(route.request().url()).hostname;
    if (host === 'pbs.twimg.com') return route.fulfill({ contentType: 'image/svg+xml', body: PICTURE });
    if (!EXTERNAL_OK.includes(host)) problems.push(`request to unexpected host ${route.request().url()}`);
    return route.abort('internetdisconnected');
  });
  for (const [pattern, handler] of opts.routes || []) await context.route(pattern, handler);
  const page = await context.newPage();
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`);
    });
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error' && msg.type() !== 'warning') return;
    const text = msg.text();
    const url = msg.location().url || '';
    if (text.startsWith('Failed to load resource')) {
      let u = null;
      try { u = new URL(url); } catch { /* no url */ }
      if (u && EXTERNAL_OK.includes(u.hostname)) { notes.push(`offline as expected: ${url}`); return; }
      const status = (text.match(/status of (\d{3})/) || [])[1];
      if (u && u.origin === new URL(base).origin &&
          [...expectedFailures].some((f) => f === `${status} ${u.pathname}` || (f.startsWith(status + ' ') && u.pathname.startsWith(f.slice(4))))) {
        notes.push(`expected ${status}: ${u.pathname}`);
        return;
      }
    }
    problems.push(`console ${msg.type()}: ${text} ${url}`);
  });
  return { context, page };
}

async function cspViolations(page) {
  return page.evaluate(() => window.__csp || []);
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

const started = Date.now();
let result;
try {
  result = await scenario({ base, outDir, args, newPage, assert, cspViolations, problems, log: (m) => console.log(m) });
  if (problems.length) throw new Error(`browser reported problems:\n  ${problems.join('\n  ')}`);
} catch (err) {
  console.log(`FAIL ${name}: ${err.message}`);
  for (const n of notes) console.log(`note: ${n}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
for (const n of notes) console.log(`note: ${n}`);
console.log(`RESULT ${JSON.stringify({ scenario: name, ms: Date.now() - started, ...result })}`);
