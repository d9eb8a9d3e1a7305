// admin.js: the admin panel. A pasted token (sessionStorage only) unlocks ingestion
// controls and leader management for admins and the review queue for reviewers.
(function () {
  'use strict';
  const A = (window.Amber = window.Amber || {});
  const ui = A.ui;
  const el = ui.el;
  const auth = { auth: true };
  // Polling after a trigger: how often, and for how long at most.
  const RUN_POLL_MS = 1000;
  const RUN_POLL_MAX = 180;

  let role = null;

  async function whoami() {
    const tools = document.getElementById('admin-tools');
    const review = document.getElementById('review-tools');
    role = null;
    if (!A.api.token()) {
      tools.hidden = review.hidden = true;
      ui.say('whoami', 'No token: the feed and status are public; changes need a token.');
      return;
    }
    try {
      const me = await A.api.get('/api/admin/ping', auth);
      role = me.role || 'admin';
      ui.say('whoami', 'Signed in as ' + me.admin + ' (' + role + ').');
    } catch (err) {
      ui.say('whoami', ui.describe(err), true);
    }
    tools.hidden = role !== 'admin';
    review.hidden = !role;
    if (role === 'admin') renderLeaders();
    if (role) loadReviews();
  }

  async function ingest(action) {
    const path = action === 'trigger' || action === 'backfill' ? '/api/ingestion/trigger' : '/api/ingestion/' + action;
    const body = action === 'trigger' || action === 'backfill' ? { backfill: action === 'backfill' } : {};
    ui.say('admin-result', 'Sending ' + action + '…');
    try {
      const res = await A.api.post(path, body, auth);
      ui.say('admin-result', (res && res.message) || action + ': done.');
      if (path.endsWith('trigger')) followRun();
      else A.status.refresh();
    } catch (err) {
      const msg = err.status === 409 ? 'A run is already in progress; wait for it to finish.'
        : err.status === 404 ? 'This server has no ingestion endpoints (404).'
          : ui.describe(err);
      ui.say('admin-result', msg, true);
    }
  }

  // Watches a triggered run until it finishes, then reloads the feed with the new posts.
  async function followRun() {
    const before = A.feed.count();
    for (let i = 0; i < RUN_POLL_MAX; i++) {
      await new Promise(function (r) { setTimeout(r, RUN_POLL_MS); });
      const st = await A.status.refresh();
      if (st.status && !st.status.running) break;
      if (st.status && st.status.waiting) ui.say('admin-result', 'The run is waiting for X\'s rate-limit reset (see Ingestion).');
    }
    const st = A.status.latest().status;
    const run = st && st.last_run;
    await A.feed.reload();
    const added = run ? run.posts_ingested || 0 : Math.max(0, A.feed.count() - before);
    ui.say('admin-result', 'Run finished: ' + added + ' new posts' +
      (run && run.errors && run.errors.length ? ', ' + run.errors.length + ' errors (see Ingestion).' : '.'));
  }

  async function loadLeaders() {
    try {
      const leaders = await A.api.get('/api/leaders');
      A.feed.setLeaders(leaders);
      return leaders;
    } catch (err) {
      ui.say('feed-status', 'Could not load the leaders: ' + ui.describe(err), true);
      return [];
    }
  }

  async function renderLeaders() {
    const leaders = await loadLeaders();
    const list = document.getElementById('leader-list');
    list.replaceChildren();
    leaders.forEach(function (l) {
      const handle = l.handles && l.handles.x ? ' @' + l.handles.x : '';
      const btn = el('button', { type: 'button', class: 'secondary', text: 'Remove', 'aria-label': 'Remove ' + l.name });
      // Two presses: the first asks, the second removes (no blocking confirm dialog).
      btn.addEventListener('click', async function () {
        if (btn.dataset.armed !== 'yes') {
          btn.dataset.armed = 'yes';
          btn.textContent = 'Confirm remove';
          btn.className = 'danger';
          return;
        }
        btn.disabled = true;
        try {
          await A.api.del('/api/leaders/' + l.id, auth);
          ui.say('admin-result', 'Removed ' + l.name + ' and their posts.');
          await renderLeaders();
          A.feed.reload();
        } catch (err) {
          btn.disabled = false;
          ui.say('admin-result', 'Could not remove ' + l.name + ': ' + ui.describe(err), true);
        }
      });
      list.append(el('li', {}, el('span', { text: l.name + handle }), btn));
    });
  }

  async function addLeader(e) {
    e.preventDefault();
    const v = function (id) { return document.getElementById(id).value.trim(); };
    const handles = {};
    if (v('leader-x')) handles.x = v('leader-x').replace(/^@/, '');
    if (v('leader-fb')) handles.facebook = v('leader-fb');
    const topics = v('leader-topics').split(',').map(function (t) { return t.trim(); }).filter(Boolean);
    try {
      const l = await A.api.post('/api/leaders', { name: v('leader-name'), handles: handles, trackingTopics: topics }, auth);
      ui.say('admin-result', 'Added ' + l.name + '.');
      e.target.reset();
      renderLeaders();
    } catch (err) {
      ui.say('admin-result', 'Could not add the leader: ' + ui.describe(err), true);
    }
  }

  async function loadReviews() {
    const list = document.getElementById('review-list');
    let items;
    try {
      items = await A.api.get('/api/review?state=pending', auth);
    } catch (err) {
      list.replaceChildren(el('li', { text: 'Could not load the queue: ' + ui.describe(err) }));
      return;
    }
    list.replaceChildren();
    if (!items.length) list.append(el('li', { class: 'muted', text: 'Nothing waits for review.' }));
    items.forEach(function (item) {
      const notesId = 'notes-' + item.id;
      const post = item.post || {};
      const notes = el('textarea', { id: notesId, maxlength: '2000' });
      const msg = el('p', { class: 'muted small', 'aria-live': 'polite' });
      const decide = function (verdict) {
        return async function () {
          try {
            await A.api.post('/api/review/' + item.id + '/' + verdict, { notes: notes.value.trim() || null }, auth);
            li.replaceChildren(el('p', { text: (verdict === 'approve' ? 'Approved' : 'Rejected') + ': ' + (post.content || '').slice(0, 60) }));
          } catch (err) {
            msg.textContent = ui.describe(err);
          }
        };
      };
      const ok = el('button', { type: 'button', text: 'Approve' });
      const no = el('button', { type: 'button', class: 'danger', text: 'Reject' });
      ok.addEventListener('click', decide('approve'));
      no.addEventListener('click', decide('reject'));
      const li = el('li', { 'data-review-id': item.id },
        el('strong', { text: (post.leaderName || 'Leader ' + post.leaderId) + ' · ' + (post.platform || '') }),
        el('blockquote', { text: post.content || '(post deleted)' }),
        el('label', { for: notesId, text: 'Notes' }), notes,
        el('div', { class: 'row' }, ok, no), msg);
      list.append(li);
    });
  }

  function init() {
    document.getElementById('token-form').addEventListener('submit', function (e) {
      e.preventDefault();
      const input = document.getElementById('token-input');
      A.api.setToken(input.value.trim().replace(/^Bearer\s+/i, ''));
      input.value = '';
      whoami();
    });
    document.getElementById('token-clear').addEventListener('click', function () {
      A.api.setToken('');
      whoami();
    });
    document.querySelectorAll('[data-ingest]').forEach(function (b) {
      b.addEventListener('click', function () { ingest(b.dataset.ingest); });
    });
    document.getElementById('leader-form').addEventListener('submit', addLeader);
    document.getElementById('review-refresh').addEventListener('click', loadReviews);
    whoami();
  }

  A.admin = { init: init, loadLeaders: loadLeaders };
})();
