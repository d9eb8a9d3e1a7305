// feed.js: the feed. Newest first from /api/feed, leader, source and kinds filters kept in
// the URL, endless scroll through next_cursor, plain cards that platform.twitter.com's
// widget replaces when it loads, and an empty state that says why the feed is empty.
// New and deleted posts arrive live (Server-Sent Events): "N new posts", cards removed.
// A card shows what X published: a repost with its "reposted by" label, a quote with the
// quoted post inline, a reply with what it answers, a leader's thread grouped under its
// first post, videos and GIFs as their preview with a play link. Every text is set as
// text (never markup), and only http(s) links are made.
(function () {
  'use strict';
  const A = (window.Amber = window.Amber || {});
  const ui = A.ui;
  const PAGE_SIZE = 20;
  const WIDGETS_URL = 'https://platform.twitter.com/widgets.js';
  // How long the X widget script may take before we stop hoping (cards are already shown).
  const WIDGETS_TIMEOUT_MS = 4000;
  // The kinds of post kinds= takes, in the order of the filter's boxes.
  const KINDS = ['post', 'repost', 'quote', 'reply'];
  // An http(s) address inside a post's text (links arrive expanded, not as t.co).
  const URL_RE = /https?:\/\/[^\s<>"]+/g;

  const state = {
    leader: '', source: '', kinds: KINDS.slice(), cursor: null, hasNext: false, loading: false,
    generation: 0, seen: new Set(), threads: new Map(), total: 0, leaders: [], firstPainted: false,
  };

  function qs() {
    const p = new URLSearchParams({ page_size: String(PAGE_SIZE) });
    if (state.leader) p.set('leaders', state.leader);
    if (state.source) p.set('source', state.source);
    if (state.kinds.length < KINDS.length) p.set('kinds', state.kinds.join(','));
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

  // The live feed: /api/feed/events with the feed's filters. A new post the page does not
  // show yet is counted in the "N new posts" button (a click shows them: the feed reloads
  // from the top); a deleted post's card goes at once. The browser reconnects a dropped
  // stream by itself with Last-Event-ID; a refused one (429, 503) is retried with backoff.
  const live = { source: null, pending: new Set(), retry: null, backoff: 2000 };

  function liveQs() {
    const p = new URLSearchParams();
    if (state.leader) p.set('leaders', state.leader);
    if (state.source) p.set('source', state.source);
    if (state.kinds.length < KINDS.length) p.set('kinds', state.kinds.join(','));
    const q = p.toString();
    return q ? '?' + q : '';
  }

  function eventData(e) {
    try { const d = JSON.parse(e.data); return d && d.id != null ? d : null; } catch (_) { return null; }
  }

  function showPending() {
    const btn = document.getElementById('new-posts');
    const n = live.pending.size;
    btn.hidden = n === 0;
    btn.textContent = n === 1 ? '1 new post' : n + ' new posts';
    btn.dataset.count = String(n);
  }

  function removePost(id) {
    live.pending.delete(id);
    showPending();
    if (!state.seen.has(id)) return;
    state.seen.delete(id);
    state.threads.forEach(function (g) {
      g.items = g.items.filter(function (it) { return String(it.post.id) !== id; });
    });
    const li = document.querySelector('#feed li.card[data-post-id="' + id.replace(/[^0-9]/g, '') + '"]');
    if (li) li.remove();
    state.total = Math.max(0, state.total - 1);
    ui.say('feed-count', state.total === 1 ? '1 post' : state.total + ' posts');
  }

  function openLive() {
    if (!('EventSource' in window)) return;
    if (live.source) live.source.close();
    clearTimeout(live.retry);
    live.pending.clear();
    showPending();
    const gen = state.generation;
    const es = new EventSource('/api/feed/events' + liveQs());
    live.source = es;
    es.addEventListener('open', function () {
      live.backoff = 2000;
      document.documentElement.dataset.live = 'open';
    });
    es.addEventListener('new', function (e) {
      const d = eventData(e);
      if (!d || state.seen.has(String(d.id))) return;
      live.pending.add(String(d.id));
      showPending();
    });
    es.addEventListener('deleted', function (e) {
      const d = eventData(e);
      if (d) removePost(String(d.id));
    });
    // Too much changed at once (or this page fell behind): show the feed as it is now.
    es.addEventListener('reset', function () { if (gen === state.generation) reset(); });
    es.addEventListener('error', function () {
      if (es.readyState !== EventSource.CLOSED || live.source !== es) return;
      document.documentElement.dataset.live = 'closed';
      live.retry = setTimeout(function () { if (gen === state.generation) openLive(); }, live.backoff);
      live.backoff = Math.min(live.backoff * 2, 60000);
    });
  }

  function reset() {
    state.generation++;
    openLive();
    state.cursor = null;
    state.hasNext = false;
    state.loading = false;
    state.seen.clear();
    state.threads.clear();
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
      const id = String(post.id);
      if (state.seen.has(id)) return;
      state.seen.add(id);
      if (live.pending.delete(id)) showPending();
      const li = card(tpl, post);
      place(list, li, post);
      fresh.push({ li: li, post: post });
    });
    if (fresh.length && !state.firstPainted) {
      state.firstPainted = true;
      performance.mark('amber-first-post');
    }
    embedX(fresh);
  }

  // A leader's thread: posts sharing a conversation, each reply answering the leader
  // himself. Its key, or null for a post that cannot belong to one.
  function threadKey(post) {
    const conv = post.conversationId;
    if (!conv || post.kind === 'repost') return null;
    if (post.kind === 'reply' && !selfReply(post)) return null;
    return post.leaderId + '|' + conv;
  }

  function selfReply(post) {
    const to = post.inReplyToUserId;
    return to != null && post.author != null && String(to) === String(post.author.id);
  }

  // Appends a card, or files it into its thread: the group stands where its newest post
  // came in (the feed is newest first) and lists its posts oldest first, under the first.
  function place(list, li, post) {
    const key = threadKey(post);
    const g = key && state.threads.get(key);
    if (!g) {
      if (key) state.threads.set(key, { items: [{ li: li, post: post }] });
      list.append(li);
      return;
    }
    if (!g.box) {
      g.label = ui.el('p', { class: 'thread-label muted' });
      g.ol = ui.el('ol', { class: 'thread-posts' });
      g.box = ui.el('li', { class: 'thread' }, g.label, g.ol);
      g.items[0].li.replaceWith(g.box);
    }
    g.items.push({ li: li, post: post });
    g.items.sort(function (a, b) { return Date.parse(a.post.timestamp) - Date.parse(b.post.timestamp); });
    g.ol.replaceChildren.apply(g.ol, g.items.map(function (it) { return it.li; }));
    const head = g.items[0].post;
    const whole = String(head.platformPostId) === String(head.conversationId);
    g.label.textContent = 'Thread by ' + authorOf(head).name + ' · ' + g.items.length + ' posts' +
      (whole ? '' : ', continuing an earlier post');
    g.box.setAttribute('aria-label', g.label.textContent);
  }

  function authorOf(post) {
    const a = post.author || {};
    const m = post.metrics || {};
    return {
      name: a.display_name || a.name || m.authorName || post.leaderName || 'Unknown',
      handle: a.handle || m.author || '',
      // A repost's author is not the leader: no falling back to the leader's picture.
      avatar: m.avatarUrl || (post.kind === 'repost' ? null : leaderAvatar(post.leaderId)),
    };
  }

  function leaderAvatar(id) {
    const l = state.leaders.find(function (x) { return String(x.id) === String(id); });
    return l ? l.avatarUrl : null;
  }

  // Text with its http(s) addresses as links; everything else stays text.
  function richText(node, text) {
    const s = text == null ? '' : String(text);
    let at = 0;
    s.replace(URL_RE, function (raw, off) {
      const url = /\(/.test(raw) ? raw.replace(/[.,;:!?'"\]]+$/, '') : raw.replace(/[.,;:!?'")\]]+$/, '');
      const href = ui.safeHref(url);
      if (href) {
        node.append(s.slice(at, off), ui.el('a', { href: href, rel: 'noopener noreferrer nofollow', target: '_blank', text: url }));
        at = off + url.length;
      }
      return raw;
    });
    node.append(s.slice(at));
    return node;
  }

  function handleOf(h) {
    return h ? '@' + String(h).replace(/^@/, '') : '';
  }

  // The line above a repost or a reply: who reposted it, whom it answers.
  function context(li, post, kind, ref) {
    const box = li.querySelector('.context');
    const icon = function (c) { return ui.el('span', { 'aria-hidden': 'true', text: c + ' ' }); };
    if (kind === 'repost') {
      const by = post.repostedBy || {};
      box.append(icon('↻'), 'Reposted by ', ui.el('bdi', { class: 'by', text: by.name || post.leaderName || 'the leader' }),
        by.handle ? ' ' + handleOf(by.handle) : '');
    } else if (kind === 'reply') {
      const to = ref && ref.authorHandle ? handleOf(ref.authorHandle) : selfReply(post) ? 'their own post' : 'a post';
      box.append(icon('↩'), 'Replying to ', ui.el('bdi', { text: to }));
    } else {
      return;
    }
    box.hidden = false;
  }

  // A referenced post drawn inside the card: the quoted post, or what a reply answers.
  function refBlock(ref, label) {
    const name = ref.authorName || handleOf(ref.authorHandle);
    const box = ui.el('blockquote', { class: 'ref', 'data-relation': ref.relation, 'aria-label': label + (name ? ' by ' + name : '') });
    if (name) {
      const head = ui.el('p', { class: 'ref-head' }, ui.el('bdi', { class: 'ref-name', text: name }));
      if (ref.authorName && ref.authorHandle) head.append(' ', ui.el('span', { class: 'muted', text: handleOf(ref.authorHandle) }));
      if (ref.createdAt) {
        head.append(ui.el('span', { class: 'muted', text: ' · ' }),
          ui.el('time', { datetime: ref.createdAt, title: ui.fullTime(ref.createdAt), text: ui.relTime(ref.createdAt) }));
      }
      box.append(head);
    }
    if (ref.text != null) box.append(richText(ui.el('p', { class: 'ref-text', dir: 'auto' }), ref.text));
    else box.append(ui.el('p', { class: 'ref-text muted', text: 'This post is not available: deleted, withheld, or not sent by X.' }));
    const pics = ui.el('div', { class: 'media' });
    media(pics, Array.isArray(ref.media) ? ref.media : [], ref.permalink);
    box.append(pics);
    const href = ref.permalink && ui.safeHref(ref.permalink);
    if (href) box.append(ui.el('a', { class: 'ref-link', href: href, rel: 'noopener noreferrer', target: '_blank', text: 'View on X', 'aria-label': 'View the ' + label.toLowerCase() + ' on X (opens a new tab)' }));
    return box;
  }

  function card(tpl, post) {
    const li = tpl.content.firstElementChild.cloneNode(true);
    const m = post.metrics || {};
    const who = authorOf(post);
    const kind = KINDS.indexOf(post.kind) >= 0 ? post.kind : 'post';
    const ref = post.referencedPost && typeof post.referencedPost === 'object' ? post.referencedPost : null;
    li.dataset.postId = post.id;
    li.dataset.kind = kind;
    li.dataset.platform = post.platform;
    li.dataset.leaderId = post.leaderId;
    li.dataset.timestamp = post.timestamp;
    li.setAttribute('aria-label', (kind === 'repost' ? 'Repost of ' : kind === 'post' ? '' : kind[0].toUpperCase() + kind.slice(1) + ' by ') +
      who.name + ', ' + post.platform + ', ' + ui.fullTime(post.timestamp));
    context(li, post, kind, ref);
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
    const text = richText(li.querySelector('.text'), post.content);
    const pics = li.querySelector('.media');
    media(pics, mediaOf(post), post.permalink);
    if (ref && kind === 'reply' && ref.relation === 'replied_to') text.before(refBlock(ref, 'The post this replies to'));
    if (ref && kind === 'quote') pics.after(refBlock(ref, 'Quoted post'));
    li.querySelector('.platform').textContent = post.platform;
    const time = li.querySelector('time.posted');
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

  // A post's media: media (photos, videos, GIFs), else the older mediaUrls photos.
  function mediaOf(post) {
    const m = post.metrics || {};
    const list = [post.media, m.media].find(function (l) { return Array.isArray(l) && l.length; });
    if (list) return list;
    const urls = Array.isArray(m.mediaUrls) && m.mediaUrls.length ? m.mediaUrls : m.mediaUrl ? [m.mediaUrl] : [];
    return urls.map(function (u) { return { type: 'photo', url: u }; });
  }

  function clock(ms) {
    const s = Math.round(ms / 1000);
    return Math.floor(s / 60) + ':' + String(s % 60).padStart(2, '0');
  }

  // A video or GIF: its preview image with a play link to the best MP4 (a new tab plays
  // it; the CSP keeps video.twimg.com out of the page), else to the post on X.
  function playable(it, n, permalink) {
    const gif = it.type === 'animated_gif';
    const dur = !gif && it.durationMs > 0 ? ' (' + clock(it.durationMs) + ')' : '';
    const mp4 = (Array.isArray(it.variants) ? it.variants : [])
      .filter(function (v) { return v && /^video\/mp4/.test(v.contentType || '') && ui.safeHref(v.url); })
      .sort(function (a, b) { return (b.bitRate || 0) - (a.bitRate || 0); })[0];
    const href = (mp4 && ui.safeHref(mp4.url)) || (permalink && ui.safeHref(permalink));
    const what = (gif ? 'GIF ' : 'video ') + n + dur;
    const node = href
      ? ui.el('a', { class: 'play', href: href, rel: 'noopener noreferrer', target: '_blank', 'aria-label': 'Play ' + what + ' (opens a new tab)' })
      : ui.el('span', { class: 'play' });
    node.dataset.type = it.type;
    if (ui.imageAllowed(it.previewImageUrl)) {
      const img = ui.el('img', { src: it.previewImageUrl, alt: href ? '' : 'Preview of ' + what, loading: 'lazy', referrerpolicy: 'no-referrer' });
      img.addEventListener('error', function () { img.remove(); });
      node.append(img);
    }
    node.append(ui.el('span', { class: 'play-label', 'aria-hidden': href ? 'true' : null, text: '▶ ' + (gif ? 'GIF' : 'Play' + dur) }));
    return node;
  }

  function media(box, items, permalink) {
    items.filter(function (it) { return it && typeof it === 'object'; }).slice(0, 4).forEach(function (it, i) {
      if (it.type === 'video' || it.type === 'animated_gif') { box.append(playable(it, i + 1, permalink)); return; }
      const url = typeof it.url === 'string' ? it.url : null;
      if (!url) return;
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

  // The X id to embed: a repost shows the reposted post (its label stays above it).
  function xId(post) {
    const r = post.referencedPost;
    return String(post.kind === 'repost' && r && r.id ? r.id : post.platformPostId || '');
  }

  function embedX(items) {
    const xs = items.filter(function (it) { return it.post.platform === 'X' && /^\d+$/.test(xId(it.post)); });
    if (!xs.length) return;
    loadWidgets().then(function (w) {
      document.documentElement.dataset.xWidgets = 'loaded';
      xs.forEach(function (it) {
        const box = it.li.querySelector('.embed');
        const dark = window.matchMedia('(prefers-color-scheme: dark)').matches;
        Promise.resolve(w.createTweet(xId(it.post), box, { dnt: true, theme: dark ? 'dark' : 'light' }))
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
    const why = await A.status.emptyReason({ filtered: !!(state.leader || state.source || state.kinds.length < KINDS.length), leaders: state.leaders });
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

  // One line per leader in the Feeds panel: its RSS, Atom and JSON Feed.
  function fillFeedLinks() {
    const list = document.getElementById('feed-links');
    list.replaceChildren();
    state.leaders.forEach(function (l) {
      const base = '/feeds/leaders/' + encodeURIComponent(String(l.id));
      const link = function (ext, type, text) {
        return ui.el('a', { href: base + '.' + ext, type: type, text: text, 'aria-label': l.name + ' ' + text });
      };
      list.append(ui.el('li', { 'data-leader-id': String(l.id) },
        ui.el('bdi', { text: l.name }), ': ',
        link('rss', 'application/rss+xml', 'RSS'), ' · ',
        link('atom', 'application/atom+xml', 'Atom'), ' · ',
        link('json', 'application/feed+json', 'JSON Feed')));
    });
  }

  function syncUrl() {
    const p = new URLSearchParams(location.search);
    ['leader', 'source'].forEach(function (k) { if (state[k]) p.set(k, state[k]); else p.delete(k); });
    if (state.kinds.length < KINDS.length) p.set('kinds', state.kinds.join(',')); else p.delete('kinds');
    const q = p.toString();
    history.replaceState(null, '', location.pathname + (q ? '?' + q : ''));
  }

  function init() {
    const p = new URLSearchParams(location.search);
    state.leader = /^\d+$/.test(p.get('leader') || '') ? p.get('leader') : '';
    state.source = ['x', 'facebook', 'news'].indexOf(p.get('source')) >= 0 ? p.get('source') : '';
    document.getElementById('filter-source').value = state.source;
    const asked = (p.get('kinds') || '').split(',');
    state.kinds = KINDS.filter(function (k) { return asked.indexOf(k) >= 0; });
    if (!state.kinds.length) state.kinds = KINDS.slice();
    const boxes = [].slice.call(document.querySelectorAll('#filter-kinds input'));
    boxes.forEach(function (b) { b.checked = state.kinds.indexOf(b.value) >= 0; });
    fillLeaderFilter();
    document.getElementById('filters').addEventListener('submit', function (e) { e.preventDefault(); });
    document.getElementById('filter-leader').addEventListener('change', function (e) {
      state.leader = e.target.value; syncUrl(); reset();
    });
    document.getElementById('filter-source').addEventListener('change', function (e) {
      state.source = e.target.value; syncUrl(); reset();
    });
    document.getElementById('filter-kinds').addEventListener('change', function (e) {
      const on = boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; });
      if (!on.length) {
        // No kind at all would be an empty feed by choice: keep the last one ticked.
        e.target.checked = true;
        ui.say('feed-status', 'At least one kind of post stays shown.');
        return;
      }
      state.kinds = on; syncUrl(); reset();
    });
    document.getElementById('load-more').addEventListener('click', function () { loadMore(); });
    document.getElementById('new-posts').addEventListener('click', function () {
      window.scrollTo(0, 0);
      reset();
      document.getElementById('feed').focus();
    });
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
    setLeaders: function (leaders) { state.leaders = leaders; fillLeaderFilter(); fillFeedLinks(); },
    count: function () { return state.seen.size; },
  };
})();
