// status.js: the health pill, the ingestion panel (from /api/ingestion/status, or a
// clear note when this server has no such endpoint), and the reason behind an empty feed.
(function () {
  'use strict';
  const A = (window.Amber = window.Amber || {});
  const ui = A.ui;
  const el = ui.el;
  // How often the panel refreshes itself while the page is visible, and while a run is
  // going or waiting (so the end of a wait shows soon).
  const POLL_MS = 30000;
  const BUSY_POLL_MS = 5000;

  let latest = { status: null, missing: false, error: null };
  let health = null;

  async function fetchStatus() {
    try {
      latest = { status: await A.api.get('/api/ingestion/status'), missing: false, error: null };
    } catch (err) {
      latest = { status: null, missing: err.status === 404, error: err };
    }
    return latest;
  }

  async function fetchHealth() {
    try {
      health = await A.api.get('/api/health');
    } catch (err) {
      // 503 still carries the health body; the error keeps only the message.
      health = { status: 'error', message: ui.describe(err) };
    }
    const pill = document.getElementById('health');
    pill.className = 'pill ' + (health.status || 'error');
    const stats = health.checks && health.checks.database && health.checks.database.stats;
    pill.textContent = 'server ' + (health.status || 'unreachable') +
      (stats ? ' · ' + stats.leaders + ' leaders · ' + stats.posts + ' posts' : '');
    const build = health.build;
    pill.title = build ? 'amber ' + build.version + (build.commit ? ' (' + build.commit + ')' : '') : '';
    return health;
  }

  function dl(pairs) {
    const list = el('dl', { class: 'kv' });
    pairs.forEach(function (p) {
      if (p[1] === undefined || p[1] === null || p[1] === '') return;
      const dd = el('dd', {}, p[1]);
      if (p[2]) dd.className = p[2];
      list.append(el('dt', { text: p[0] }), dd);
    });
    return list;
  }

  function when(iso) {
    if (!iso) return null;
    return el('time', { datetime: iso, title: ui.fullTime(iso), text: ui.relTime(iso) });
  }

  function schedule(s) {
    const c = s.config || {};
    if (c.cron) return 'cron ' + c.cron;
    if (c.interval_minutes) return 'every ' + c.interval_minutes + ' min';
    return 'not set';
  }

  function plural(n, word) {
    return n + ' ' + word + (n === 1 ? '' : 's');
  }

  // "waiting for X's rate-limit reset until 10:42:07 (in 35 s)": the countdown ticks.
  function waitingFor(w) {
    const why = w.reason === 'x_rate_limit' ? 'X\'s rate-limit reset' : String(w.reason || 'a pause').replace(/_/g, ' ');
    const t = Date.parse(w.until);
    const span = el('span', {}, 'for ' + why);
    if (isFinite(t)) {
      span.append(' until ', el('time', { datetime: w.until, title: ui.fullTime(w.until), text: new Date(t).toLocaleTimeString() }),
        ' ', el('span', { class: 'countdown', 'data-until': String(t) }));
    }
    return span;
  }

  function tickCountdowns() {
    document.querySelectorAll('.countdown[data-until]').forEach(function (c) {
      const left = Math.ceil((Number(c.dataset.until) - Date.now()) / 1000);
      c.textContent = left > 0 ? '(in ' + left + ' s)' : '(any moment now)';
    });
  }

  // "3 (last 2 min ago: run in progress)": ticks of the schedule that started no run.
  function skipped(s) {
    const n = s.skipped_ticks || 0;
    const last = s.last_skipped;
    if (!n && !last) return null;
    const span = el('span', {}, String(n));
    if (last && last.at) {
      span.append(' (last ', when(last.at), last.reason ? ': ' + String(last.reason).replace(/_/g, ' ') : '', ')');
    }
    return span;
  }

  function errorsOf(run) {
    const e = run && run.errors;
    if (Array.isArray(e)) return e;
    return typeof e === 'number' && e > 0 ? [{ message: e + ' errors' }] : [];
  }

  function renderStatus() {
    const body = document.getElementById('ingestion-body');
    if (latest.missing) {
      body.replaceChildren(el('p', { class: 'muted', 'data-state': 'missing',
        text: 'This server has no ingestion status endpoint (GET /api/ingestion/status answered 404): X ingestion is not part of this build.' }));
      return;
    }
    if (!latest.status) {
      body.replaceChildren(el('p', { class: 'muted', text: 'Ingestion status unavailable: ' + ui.describe(latest.error) }));
      return;
    }
    const s = latest.status;
    const job = (s.jobs || [])[0];
    const run = s.last_run;
    const breaker = s.circuit_breaker_state || 'closed';
    const parts = [dl([
      ['State', s.stopped ? 'stopped by an admin' : s.enabled ? 'on' : 'off'],
      ['Running', s.waiting ? 'yes, waiting' : s.running ? 'yes, a run is in progress' : 'no'],
      ['Waiting', s.waiting ? waitingFor(s.waiting) : null, 'state-waiting'],
      ['Breaker', breaker + (s.circuit_breaker_failures ? ' (' + plural(s.circuit_breaker_failures, 'failure') + ')' : '') +
        (breaker === 'open' && s.circuit_breaker_open_until ? ', retries ' + ui.relTime(s.circuit_breaker_open_until) : ''), 'state-' + breaker],
      ['Schedule', schedule(s)],
      ['Next run', job && job.next_run ? when(job.next_run) : (s.enabled ? 'not planned' : 'none while off')],
      ['Backfill', s.config && s.config.backfill_count ? s.config.backfill_count + ' posts per leader' : null],
      ['Last run', run && (run.finished_at || run.started_at) ? when(run.finished_at || run.started_at) : 'never'],
      ['Last counts', run ? plural(run.leaders || 0, 'leader') + ', ' + plural(run.posts_ingested || 0, 'new post') + ', ' + plural(errorsOf(run).length, 'error') : null],
      ['Stopped early', run && run.stopped_reason],
      ['Skipped ticks', skipped(s)],
      ['X usage', s.usage ? (s.usage.month || '') + ': ' + (s.usage.posts_read || 0) + ' posts read' +
        (typeof s.usage.estimated_cost_usd === 'number' ? ', ~$' + s.usage.estimated_cost_usd.toFixed(2) : '') : null],
    ])];
    const errs = errorsOf(run);
    if (errs.length) {
      const ul = el('ul', { class: 'errors', 'aria-label': 'Errors of the last run' });
      errs.slice(0, 5).forEach(function (e) {
        ul.append(el('li', { text: (e.handle ? '@' + e.handle + ': ' : '') + (e.kind ? e.kind + ' — ' : '') + (e.message || '') }));
      });
      if (errs.length > 5) ul.append(el('li', { text: '… and ' + (errs.length - 5) + ' more' }));
      parts.push(ul);
    }
    body.replaceChildren.apply(body, parts);
    tickCountdowns();
  }

  async function refresh() {
    await Promise.all([fetchStatus(), fetchHealth()]);
    renderStatus();
    return latest;
  }

  // The reason the feed is empty, from leaders, health and ingestion status, in that order
  // of importance, with what to do about it.
  async function emptyReason(ctx) {
    if (ctx.filtered) {
      return { reason: 'filtered', title: 'No posts match these filters',
        why: 'None of the stored posts is from the chosen leader and source, of the kinds ticked.',
        todo: 'Choose "All leaders" and "All sources", and tick every kind, to see everything.' };
    }
    let leaders = ctx.leaders;
    try { leaders = await A.api.get('/api/leaders'); } catch (e) { /* keep what we had */ }
    if (!leaders || !leaders.length) {
      return { reason: 'no-leaders', title: 'No leaders are tracked yet',
        why: 'Amber only shows posts of the leaders it follows, and the list is empty.',
        todo: 'Add a leader in the Admin panel (paste a token from "amber token --sub you"), or start the server with SEED_FILE pointing at a leaders list.' };
    }
    if (!latest.status && !latest.missing) await fetchStatus();
    if (!health) await fetchHealth();
    const s = latest.status;
    const sched = health && health.checks && health.checks.ingestion_scheduler;
    const breaker = s ? s.circuit_breaker_state : sched && sched.circuit_breaker_state;
    if (breaker === 'open') {
      return { reason: 'breaker-open', title: 'Ingestion is paused: the circuit breaker is open',
        why: 'Recent calls to the X API kept failing' + (s && s.circuit_breaker_failures ? ' (' + s.circuit_breaker_failures + ' in a row)' : '') + ', so Amber stopped calling it for a while.',
        todo: 'It retries by itself after X_CIRCUIT_RESET_SECONDS. Check TWITTER_BEARER_TOKEN and the errors in the Ingestion panel.' };
    }
    if (s && s.running) {
      return { reason: 'running', title: 'The first posts are on their way',
        why: 'An ingestion run is in progress right now' + (s.waiting ? ', waiting for X\'s rate-limit reset (see the Ingestion panel).' : '.'),
        todo: 'They appear here when it finishes; reload in a moment.' };
    }
    // A manual run needs an X bearer token too: only offer it when status says there is one.
    const canTrigger = !!(s && s.configured);
    const noToken = 'No X bearer token is configured (TWITTER_BEARER_TOKEN), so no run, scheduled or manual, can fetch posts.';
    if (s && s.stopped) {
      return { reason: 'stopped', title: 'Ingestion was stopped by an admin',
        why: 'The schedule is switched off, so no posts are fetched.',
        todo: canTrigger ? 'Press "Start schedule" in the Admin panel, or "Trigger run" for one run now.'
          : 'Press "Start schedule" in the Admin panel once TWITTER_BEARER_TOKEN is set. ' + noToken };
    }
    const off = s ? !s.enabled : !sched || sched.status === 'disabled' || sched.enabled === false;
    if (off) {
      return { reason: 'ingestion-off', title: 'Ingestion is off',
        why: latest.missing ? 'This build has no X ingestion, and nobody has added posts by hand.'
          : 'X_INGEST_ENABLED is not true, so the schedule never fetches posts from X.',
        todo: 'Set X_INGEST_ENABLED=true and TWITTER_BEARER_TOKEN and restart, or run "amber demo" to watch posts arrive from a simulated X API.' +
          (canTrigger ? ' An admin can also trigger a run from the Admin panel.' : '') };
    }
    const job = s && (s.jobs || [])[0];
    const next = job && job.next_run ? 'The next run is ' + ui.relTime(job.next_run) : null;
    return { reason: 'waiting', title: 'No posts yet',
      why: 'The leaders have not posted since Amber started following them, or the first run has not happened.',
      todo: canTrigger ? (next ? next + '; an admin can trigger one now.' : 'An admin can trigger a run from the Admin panel.')
        : (s && !s.configured ? noToken + ' Set it and restart.' : (next ? next + '.' : 'Wait for the next scheduled run.')) };
  }

  function init() {
    const poll = function () {
      const s = latest.status;
      setTimeout(function () {
        (document.hidden ? Promise.resolve() : refresh()).then(poll, poll);
      }, s && (s.running || s.waiting) ? BUSY_POLL_MS : POLL_MS);
    };
    refresh().then(poll, poll);
    setInterval(tickCountdowns, 1000);
  }

  A.status = {
    init: init, refresh: refresh, emptyReason: emptyReason,
    latest: function () { return latest; },
  };
})();
