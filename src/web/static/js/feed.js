// feed.js: the feed. Newest first from /api/feed, leader and source filters kept in the
// URL, endless scroll through next_cursor, plain cards that platform.twitter.com's widget
// replaces when it loads, and an empty state that says why the feed is empty.
(function () {
  'use strict';
  const A = (window.Amber = window.Amber || {});
  const ui = A.ui;
  const PAGE_SIZE = 20;
  const WIDGETS_URL = 'https://platform.twitter.com/widgets.js';
  // How long the X widget script may take before we stop hoping (cards are already shown).
  const WIDGETS_TIMEOUT_MS = 4000;

  const state = {
    leader: '', source: '', cursor: null, hasNext: false, loading: false,
    generation: 0, seen: new Set(), total: 0, leaders: [], firstPainted: false,
  };

  function qs() {
    const p = new URLSearchParams({ page_size: String(PAGE_SIZE) });
    if (state.leader) p.set('leaders', state.leader);
    if (state.source) p.set('source', state.source);
    if (state.cursor) p.set('before', state.cursor);
    return p.toString();
  }

  // Loads the next page (or the first, after reset). Stale answers (filters changed
  // meanwhile) are dropped by comparing generations.
  async function loadMore() {
    if (state.loading) return;
    const gen = state.generation;
    state.loading = true;
    ui.say('feed-status', 'Loading posts…');
    try {
      const data = await A.api.get('/api/feed?' + qs());
      if (gen !== state.generation) return;
      state.total = data.total;
      state.cursor = data.next_cursor || null;
      state.hasNext = !!data.has_next && !!state.cursor;
      render(data.posts || []);
      ui.say('feed-status', state.hasNext ? '' : (state.seen.size ? 'You have reached the oldest post.' : ''));
      ui.say('feed-count', state.total === 1 ? '1 post' : state.total + ' posts');
      if (!state.seen.size) await showEmpty();
      else document.getElementById('empty').hidden = true;
    } catch (err) {
      if (gen !== state.generation) return;
      ui.say('feed-status', 'Could not load posts: ' + ui.describe(err), true);
      // After a rate-limit refusal, try again by itself once the wait is over.
      if (err.status === 429) A.api.whenAllowed(function () { if (gen === state.generation) loadMore(); });
    } finally {
      if (gen === state.generation) state.loading = false;
      document.getElementById('load-more').hidden = !state.hasNext;
    }
    // A tall screen may show the end marker already: keep filling it.
    if (gen === state.generation && state.hasNext && endVisible()) loadMore();
  }

  function endVisible() {
    const r = document.getElementById('feed-end').getBoundingClientRect();
    return r.top < window.innerHeight + 400;
  }

  function reset() {
    state.generation++;
    state.cursor = null;
    state.hasNext = false;
    state.loading = false;
    state.seen.clear();
    document.getElementById('feed').replaceChildren();
    document.getElementById('empty').hidden = true;
    ui.say('feed-count', '');
    return loadMore();
  }

  function render(posts) {
    const list = document.getElementById('feed');
    const tpl = document.getElementById('card-tpl');
    const fresh = [];
    posts.forEach(function (post) {
      if (state.seen.has(post.id)) return;
      state.seen.add(post.id);
      const li = card(tpl, post);
      list.append(li);
      fresh.push({ li: li, post: post });
    });
    if (fresh.length && !state.firstPainted) {
      state.firstPainted = true;
      performance.mark('amber-first-post');
    }
    embedX(fresh);
  }

  function authorOf(post) {
    const a = post.author || {};
    const m = post.metrics || {};
    return {
      name: a.display_name || a.name || m.authorName || post.leaderName || 'Unknown',
      handle: a.handle || m.author || '',
      avatar: m.avatarUrl || leaderAvatar(post.leaderId),
    };
  }

  function leaderAvatar(id) {
    const l = state.leaders.find(function (x) { return x.id === id; });
    return l ? l.avatarUrl : null;
  }

  function card(tpl, post) {
    const li = tpl.content.firstElementChild.cloneNode(true);
    const m = post.metrics || {};
    const who = authorOf(post);
    li.dataset.postId = post.id;
    li.dataset.platform = post.platform;
    li.dataset.leaderId = post.leaderId;
    li.dataset.timestamp = post.timestamp;
    li.setAttribute('aria-label', who.name + ', ' + post.platform + ', ' + ui.fullTime(post.timestamp));
    const avatar = li.querySelector('.avatar');
    if (ui.imageAllowed(who.avatar)) {
      const img = ui.el('img', { src: who.avatar, alt: '', loading: 'lazy', referrerpolicy: 'no-referrer' });
      img.addEventListener('error', function () { avatar.replaceChildren(initials(who.name)); });
      avatar.append(img);
    } else {
      // Avatars on hosts the CSP does not allow get initials instead of a broken image.
      avatar.append(initials(who.name));
    }
    li.querySelector('.name').textContent = who.name;
    li.querySelector('.handle').textContent = who.handle ? '@' + who.handle.replace(/^@/, '') : '';
    const badge = li.querySelector('.badge');
    badge.textContent = post.sentiment || 'Neutral';
    badge.classList.add(post.sentiment || 'Neutral');
    badge.title = 'Sentiment (VADER)' + (typeof m.sentimentScore === 'number' ? ': ' + m.sentimentScore.toFixed(2) : '');
    li.querySelector('.text').textContent = post.content;
    media(li.querySelector('.media'), m);
    li.querySelector('.platform').textContent = post.platform;
    const time = li.querySelector('time');
    time.dateTime = post.timestamp;
    time.textContent = ui.relTime(post.timestamp);
    time.title = ui.fullTime(post.timestamp);
    const href = post.permalink && ui.safeHref(post.permalink);
    if (href) {
      const a = li.querySelector('.permalink');
      a.href = href;
      a.hidden = false;
      a.setAttribute('aria-label', 'View ' + who.name + '\'s post on X (opens a new tab)');
    }
    return li;
  }

  function initials(name) {
    const parts = String(name).split(/\s+/).filter(Boolean);
    const text = parts.slice(0, 2).map(function (p) { return p[0]; }).join('').toUpperCase();
    return ui.el('span', { text: text || '?', 'aria-hidden': 'true' });
  }

  function media(box, m) {
    let urls = Array.isArray(m.mediaUrls) ? m.mediaUrls.slice() : [];
    if (!urls.length && m.mediaUrl) urls = [m.mediaUrl];
    urls.filter(function (u) { return typeof u === 'string'; }).slice(0, 4).forEach(function (url, i) {
      if (ui.imageAllowed(url)) {
        const img = ui.el('img', { src: url, alt: 'Image ' + (i + 1) + ' attached to the post', loading: 'lazy', referrerpolicy: 'no-referrer' });
        img.addEventListener('error', function () { img.remove(); });
        box.append(img);
      } else if (ui.safeHref(url)) {
        // Not loadable under the CSP: link to it instead.
        box.append(ui.el('a', { class: 'media-link', href: ui.safeHref(url), rel: 'noopener noreferrer', target: '_blank', text: 'Open attached media ' + (i + 1) }));
      }
    });
  }

  // platform.twitter.com's widget: loaded once, on demand. The cards are on screen before
  // it is even requested, so offline nothing waits for it.
  let widgets = null;
  function loadWidgets() {
    if (widgets) return widgets;
    widgets = new Promise(function (resolve, reject) {
      if (window.twttr && window.twttr.widgets) return resolve(window.twttr.widgets);
      const s = document.createElement('script');
      const timer = setTimeout(function () { reject(new Error('timeout')); }, WIDGETS_TIMEOUT_MS);
      s.async = true;
      s.src = WIDGETS_URL;
      s.addEventListener('load', function () {
        clearTimeout(timer);
        const w = window.twttr && window.twttr.widgets;
        if (w && typeof w.createTweet === 'function') resolve(w);
        else reject(new Error('no widget API'));
      });
      s.addEventListener('error', function () { clearTimeout(timer); reject(new Error('unreachable')); });
      document.head.append(s);
    });
    widgets.catch(function () { document.documentElement.dataset.xWidgets = 'unavailable'; });
    return widgets;
  }

  function embedX(items) {
    const xs = items.filter(function (it) { return it.post.platform === 'X' && /^\d+$/.test(it.post.platformPostId || ''); });
    if (!xs.length) return;
    loadWidgets().then(function (w) {
      document.documentElement.dataset.xWidgets = 'loaded';
      xs.forEach(function (it) {
        const box = it.li.querySelector('.embed');
        const dark = window.matchMedia('(prefers-color-scheme: dark)').matches;
        Promise.resolve(w.createTweet(it.post.platformPostId, box, { dnt: true, theme: dark ? 'dark' : 'light' }))
          .then(function (node) {
            if (!node) return; // deleted or protected: the card stays
            box.hidden = false;
            it.li.classList.add('embedded');
          })
          .catch(function () { /* the card stays */ });
      });
    }, function () { /* offline or blocked: the plain cards are already there */ });
  }

  // Why is the feed empty, and what can be done about it.
  async function showEmpty() {
    const gen = state.generation;
    const why = await A.status.emptyReason({ filtered: !!(state.leader || state.source), leaders: state.leaders });
    if (gen !== state.generation || state.seen.size) return;
    const box = document.getElementById('empty');
    box.dataset.reason = why.reason;
    document.getElementById('empty-title').textContent = why.title;
    document.getElementById('empty-why').textContent = why.why;
    document.getElementById('empty-todo').textContent = why.todo;
    box.hidden = false;
  }

  function fillLeaderFilter() {
    const select = document.getElementById('filter-leader');
    const keep = state.leader;
    select.replaceChildren(ui.el('option', { value: '', text: 'All leaders' }));
    state.leaders.forEach(function (l) {
      select.append(ui.el('option', { value: String(l.id), text: l.name }));
    });
    if (keep && !state.leaders.some(function (l) { return String(l.id) === keep; })) {
      select.append(ui.el('option', { value: keep, text: 'Leader ' + keep + ' (removed)' }));
    }
    select.value = keep;
  }

  function syncUrl() {
    const p = new URLSearchParams(location.search);
    ['leader', 'source'].forEach(function (k) { if (state[k]) p.set(k, state[k]); else p.delete(k); });
    const q = p.toString();
    history.replaceState(null, '', location.pathname + (q ? '?' + q : ''));
  }

  function init() {
    const p = new URLSearchParams(location.search);
    state.leader = /^\d+$/.test(p.get('leader') || '') ? p.get('leader') : '';
    state.source = ['x', 'facebook', 'news'].indexOf(p.get('source')) >= 0 ? p.get('source') : '';
    document.getElementById('filter-source').value = state.source;
    fillLeaderFilter();
    document.getElementById('filters').addEventListener('submit', function (e) { e.preventDefault(); });
    document.getElementById('filter-leader').addEventListener('change', function (e) {
      state.leader = e.target.value; syncUrl(); reset();
    });
    document.getElementById('filter-source').addEventListener('change', function (e) {
      state.source = e.target.value; syncUrl(); reset();
    });
    document.getElementById('load-more').addEventListener('click', function () { loadMore(); });
    if ('IntersectionObserver' in window) {
      new IntersectionObserver(function (entries) {
        if (entries.some(function (e) { return e.isIntersecting; }) && state.hasNext) loadMore();
      }, { rootMargin: '0px 0px 400px 0px' }).observe(document.getElementById('feed-end'));
    }
    return reset();
  }

  A.feed = {
    init: init,
    reload: reset,
    setLeaders: function (leaders) { state.leaders = leaders; fillLeaderFilter(); },
    count: function () { return state.seen.size; },
  };
})();
