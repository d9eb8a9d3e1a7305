// The browser scenarios. Each gets the server's base URL and the seed's expectations
// from tests/api/browser.rs and returns figures for the Rust side to check and print.
import * as C from './contract.mjs';

const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
// How long a scenario waits for something the page should do by itself.
const WAIT_MS = 10000;

async function open(env, viewport, path = '/') {
  const { context, page } = await env.newPage(viewport);
  await page.goto(env.base + path);
  await page.waitForSelector('#feed .card, #empty:not([hidden])', { timeout: WAIT_MS });
  return { context, page };
}

async function cards(page) {
  return page.$$eval('#feed .card', (els) => els.map((li) => ({
    id: li.dataset.postId,
    leaderId: li.dataset.leaderId,
    platform: li.dataset.platform,
    timestamp: li.dataset.timestamp,
    text: li.querySelector('.text').textContent,
    name: li.querySelector('.name').textContent,
    handle: li.querySelector('.handle').textContent,
    badge: li.querySelector('.badge').textContent,
    time: li.querySelector('time.posted').textContent,
    permalink: li.querySelector('.permalink').hidden ? null : li.querySelector('.permalink').href,
    avatarImg: li.querySelector('.avatar img') ? li.querySelector('.avatar img').getAttribute('src') : null,
    avatarText: li.querySelector('.avatar').textContent,
    // The post's own media, not the media of a post it quotes.
    mediaImgs: [...li.querySelectorAll(':scope > article > .media img')].map((i) => i.getAttribute('src')),
    mediaLinks: [...li.querySelectorAll(':scope > article > .media a')].map((a) => a.href),
    embedded: li.classList.contains('embedded'),
    kind: li.dataset.kind,
    context: li.querySelector('.context').hidden ? null : li.querySelector('.context').textContent,
    refs: [...li.querySelectorAll('blockquote.ref')].map((b) => ({ relation: b.dataset.relation, text: b.textContent })),
    thread: li.closest('.thread') ? li.closest('.thread').querySelector('.thread-label').textContent : null,
  })));
}

async function noCsp(env, page) {
  const v = await env.cspViolations(page);
  env.assert(v.length === 0, `CSP violations: ${v.join('; ')}`);
}

function newestFirst(list) {
  for (let i = 1; i < list.length; i++) {
    if (list[i - 1].timestamp < list[i].timestamp) return false;
  }
  return true;
}

async function waitCount(page, n) {
  await page.waitForFunction((k) => document.querySelectorAll('#feed .card').length === k, n, { timeout: WAIT_MS });
}

// Scrolls to the end until n cards are shown.
async function scrollUntil(page, n) {
  for (;;) {
    const shown = await page.$$eval('#feed .card', (c) => c.length);
    if (shown >= n) return;
    await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
    await page.waitForFunction((k) => document.querySelectorAll('#feed .card').length > k, shown, { timeout: WAIT_MS });
  }
}

// Every control has a name a screen reader can say, and is a real control.
async function accessibleControls(env, page) {
  const unnamed = await page.$$eval('button, input, select, textarea, a[href]', (els) => els
    .filter((e) => e.offsetParent !== null)
    .filter((e) => {
      const label = e.labels && e.labels.length ? e.labels[0].textContent.trim() : '';
      return !(label || (e.getAttribute('aria-label') || '').trim() || (e.textContent || '').trim());
    })
    .map((e) => e.outerHTML.slice(0, 80)));
  env.assert(unnamed.length === 0, `controls without a name: ${unnamed.join(' | ')}`);
  const clickableDivs = await page.$$eval('div[onclick], span[onclick], [role=button]', (els) => els.length);
  env.assert(clickableDivs === 0, 'clickable non-buttons');
}

export const scenarios = {
  // The feed renders plain cards (the X widget is unreachable), newest first, with
  // avatars and media degraded to what the CSP allows; also at phone width.
  async feed(env) {
    const { args, assert } = env;
    const { page } = await open(env, DESKTOP);
    await waitCount(page, args.pageSize);
    const first = performance.now();
    const firstPostMs = await page.evaluate(() => {
      const m = performance.getEntriesByName('amber-first-post')[0];
      return m ? m.startTime : null;
    });
    const list = await cards(page);
    assert(list[0].text === args.newest, `first card is "${list[0].text}", expected "${args.newest}"`);
    assert(newestFirst(list), 'cards are not newest first');
    assert(list.every((c) => c.name && ['Positive', 'Negative', 'Neutral'].includes(c.badge) && c.time), 'a card lacks author, badge or time');
    const x = list.find((c) => c.id === String(args.x.id));
    assert(x, 'seeded X post not on the first page');
    assert(x.permalink === args.x.permalink, `permalink ${x.permalink} != ${args.x.permalink}`);
    assert(x.avatarImg === args.x.avatar, `allowed avatar not shown: ${x.avatarImg}`);
    assert(x.mediaImgs.includes(args.x.media), 'allowed media not shown');
    const blocked = list.find((c) => c.id === String(args.blocked.id));
    assert(blocked && blocked.avatarImg === null && blocked.avatarText.length > 0, 'avatar from a host outside the CSP was not replaced by initials');
    assert(blocked.mediaImgs.length === 0 && blocked.mediaLinks.includes(args.blocked.media), 'media from a host outside the CSP is not a link');
    await page.waitForFunction(() => document.documentElement.dataset.xWidgets === 'unavailable', null, { timeout: WAIT_MS });
    assert((await cards(page)).every((c) => !c.embedded), 'a card was replaced although the widget failed');
    await accessibleControls(env, page);
    await page.screenshot({ path: `${env.outDir}/feed-desktop.png` });
    await noCsp(env, page);

    const phone = await open(env, PHONE);
    await waitCount(phone.page, args.pageSize);
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(overflow <= 0, `phone layout scrolls sideways by ${overflow}px`);
    await phone.page.screenshot({ path: `${env.outDir}/feed-phone.png` });
    await noCsp(env, phone.page);
    return { firstPostMs, cards: list.length, checkMs: Math.round(performance.now() - first) };
  },

  // Leader and source filters change what is shown, keep the URL, and explain an empty result.
  async filters(env) {
    const { args, assert } = env;
    const { page } = await open(env, DESKTOP);
    await page.waitForSelector(`#filter-leader option[value="${args.leader}"]`, { state: 'attached', timeout: WAIT_MS });
    await page.selectOption('#filter-leader', String(args.leader));
    await page.waitForFunction((id) => {
      const c = [...document.querySelectorAll('#feed .card')];
      return c.length > 0 && c.every((li) => li.dataset.leaderId === id);
    }, String(args.leader), { timeout: WAIT_MS });
    const byLeader = await cards(page);
    assert(new URL(page.url()).searchParams.get('leader') === String(args.leader), 'leader filter not in the URL');
    await page.waitForFunction((n) => document.getElementById('feed-count').textContent === `${n} posts`, args.leaderTotal, { timeout: WAIT_MS });

    await page.selectOption('#filter-leader', '');
    await page.selectOption('#filter-source', 'news');
    await page.waitForFunction(() => {
      const c = [...document.querySelectorAll('#feed .card')];
      return c.length > 0 && c.every((li) => li.dataset.platform === 'News');
    }, null, { timeout: WAIT_MS });
    const bySource = await cards(page);

    // A combination with no posts says so, and why.
    await page.selectOption('#filter-leader', String(args.emptyLeader));
    await page.waitForSelector('#empty[data-reason="filtered"]:not([hidden])', { timeout: WAIT_MS });
    assert((await cards(page)).length === 0, 'cards shown for an empty filter');

    // A reload keeps the filters from the URL.
    await page.reload();
    await page.waitForSelector('#empty[data-reason="filtered"]:not([hidden])', { timeout: WAIT_MS });
    assert(await page.$eval('#filter-source', (s) => s.value) === 'news', 'source filter lost on reload');
    await noCsp(env, page);
    return { byLeader: byLeader.length, bySource: bySource.length };
  },

  // The page offers the feeds: <link rel="alternate"> for a reader's auto-discovery of the
  // combined feeds, and RSS, Atom and JSON Feed links per leader in the Feeds panel, each
  // answering with its format's content type.
  async feedLinks(env) {
    const { args, assert } = env;
    const { page } = await open(env, DESKTOP);
    const alternates = await page.$$eval('link[rel="alternate"]', (ls) => ls.map((l) => ({ type: l.type, href: l.href, title: l.title })));
    const want = [['application/rss+xml', '/feeds/all.rss'], ['application/atom+xml', '/feeds/all.atom'], ['application/feed+json', '/feeds/all.json']];
    for (const [type, path] of want) {
      assert(alternates.some((a) => a.type === type && a.href === env.base + path && a.title), `no alternate link ${type} ${path}: ${JSON.stringify(alternates)}`);
    }
    await page.waitForFunction((n) => document.querySelectorAll('#feed-links li').length === n, args.leaders.length, { timeout: WAIT_MS });
    const perLeader = await page.$$eval('#feed-links li', (lis) => lis.map((li) => ({
      id: li.dataset.leaderId, text: li.textContent, hrefs: [...li.querySelectorAll('a')].map((a) => a.href),
    })));
    for (const l of args.leaders) {
      const row = perLeader.find((r) => r.id === String(l.id));
      assert(row && row.text.includes(l.name), `no feed links for leader ${l.id}: ${JSON.stringify(perLeader)}`);
      for (const ext of ['rss', 'atom', 'json']) {
        assert(row.hrefs.includes(`${env.base}/feeds/leaders/${l.id}.${ext}`), `leader ${l.id} lacks its ${ext} link: ${row.hrefs}`);
      }
    }
    // Fetched: the combined feeds, the first leader's and the OPML (all leaders' would
    // spend the per-client rate limit the page shares with them).
    const hrefs = alternates.map((a) => a.href)
      .concat(perLeader[0].hrefs)
      .concat(await page.$$eval('#feeds a[href$="/feeds/opml"]', (as) => as.map((a) => a.href)));
    const answers = await page.evaluate(async (urls) => Promise.all(urls.map(async (u) => {
      const r = await fetch(u);
      return { url: u, status: r.status, type: r.headers.get('content-type') || '' };
    })), hrefs);
    const types = { rss: 'application/rss+xml', atom: 'application/atom+xml', json: 'application/feed+json', opml: 'text/x-opml' };
    for (const a of answers) {
      assert(a.status === 200, `${a.url} answered ${a.status}`);
      const ext = a.url.endsWith('/opml') ? 'opml' : a.url.split('.').pop();
      assert(a.type.startsWith(types[ext]), `${a.url} is ${a.type}, expected ${types[ext]}`);
    }
    await accessibleControls(env, page);
    await noCsp(env, page);
    return { alternates: alternates.length, leaders: perLeader.length, fetched: answers.length };
  },

  // Scrolling to the end loads the next page through the cursor, until the oldest post.
  async scroll(env) {
    const { args, assert } = env;
    const { page } = await open(env, DESKTOP);
    await waitCount(page, args.pageSize);
    const pages = [args.pageSize];
    while (pages[pages.length - 1] < args.total) {
      const before = pages[pages.length - 1];
      await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
      await page.waitForFunction((n) => document.querySelectorAll('#feed .card').length > n, before, { timeout: WAIT_MS });
      pages.push((await cards(page)).length);
    }
    const list = await cards(page);
    assert(list.length === args.total, `${list.length} cards, expected ${args.total}`);
    assert(new Set(list.map((c) => c.id)).size === list.length, 'a post appears twice');
    assert(newestFirst(list), 'not newest first across pages');
    assert(list[list.length - 1].text === args.oldest, 'oldest post missing');
    await page.waitForFunction(() => /oldest post/.test(document.getElementById('feed-status').textContent), null, { timeout: WAIT_MS });
    assert(await page.$eval('#load-more', (b) => b.hidden), 'load-more button still offered at the end');
    await noCsp(env, page);
    return { pages };
  },

  // An empty feed says why (args.reason) and what to do.
  async empty(env) {
    const { args, assert } = env;
    const { page } = await open(env, DESKTOP);
    await page.waitForSelector(`#empty[data-reason="${args.reason}"]:not([hidden])`, { timeout: WAIT_MS });
    const text = await page.$eval('#empty', (e) => e.textContent);
    for (const needle of args.mentions || []) assert(text.includes(needle), `empty state does not mention "${needle}": ${text}`);
    for (const needle of args.absent || []) assert(!text.includes(needle), `empty state should not say "${needle}": ${text}`);
    await page.screenshot({ path: `${env.outDir}/empty-${args.reason}.png` });
    await noCsp(env, page);
    return { reason: args.reason };
  },

  // The widget path: when platform.twitter.com's script loads, X posts become embeds.
  async embed(env) {
    const { assert } = env;
    const stub = `window.twttr = { widgets: { createTweet: function (id, box) {
      var d = document.createElement('div'); d.className = 'fake-tweet'; d.textContent = 'embedded ' + id;
      box.appendChild(d); return Promise.resolve(d); } } };`;
    // Routes added later win: widgets.js is served by this stub instead of failing.
    const { page } = await env.newPage(DESKTOP, {
      routes: [['https://platform.twitter.com/widgets.js', (route) => route.fulfill({ contentType: 'text/javascript', body: stub })]],
    });
    await page.goto(env.base + '/');
    await page.waitForSelector('#feed .card.embedded .fake-tweet', { timeout: WAIT_MS });
    const list = await cards(page);
    const xs = list.filter((c) => c.platform === 'X');
    assert(xs.length > 0 && xs.every((c) => c.embedded), 'not every X card was embedded');
    assert(list.filter((c) => c.platform !== 'X').every((c) => !c.embedded), 'a non-X card was embedded');
    await noCsp(env, page);
    return { embedded: xs.length };
  },

  // The admin panel: token in sessionStorage only, leaders added and removed, the
  // review queue with notes, all by keyboard where it matters.
  async admin(env) {
    const { args, assert } = env;
    const { page } = await open(env, DESKTOP);
    assert(await page.$eval('#admin-tools', (e) => e.hidden), 'admin tools shown without a token');
    // A bad token is refused in words, and unlocks nothing.
    await page.fill('#token-input', 'not-a-jwt');
    await page.press('#token-input', 'Enter');
    await page.waitForFunction(() => /refused/.test(document.getElementById('whoami').textContent), null, { timeout: WAIT_MS });
    assert(await page.$eval('#admin-tools', (e) => e.hidden) && await page.$eval('#review-tools', (e) => e.hidden), 'a refused token unlocked tools');
    await page.focus('#token-input');
    await page.keyboard.type(args.adminToken);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#admin-tools:not([hidden])', { timeout: WAIT_MS });
    const stored = await page.evaluate(() => ({ session: sessionStorage.getItem('amber.token'), local: localStorage.length, cookie: document.cookie }));
    assert(stored.session === args.adminToken && stored.local === 0 && stored.cookie === '', 'token not in sessionStorage only');

    await page.fill('#leader-name', 'Browser Test Leader');
    await page.fill('#leader-x', '@browser_leader');
    await page.fill('#leader-topics', 'testing, browsers');
    await page.click('#leader-form button[type=submit]');
    await page.waitForSelector('#leader-list li:has-text("Browser Test Leader @browser_leader")', { timeout: WAIT_MS });
    await page.waitForSelector('#filter-leader option:has-text("Browser Test Leader")', { state: 'attached', timeout: WAIT_MS });
    await page.locator('#admin').screenshot({ path: `${env.outDir}/admin-panel.png` });

    const remove = page.locator('#leader-list li', { hasText: 'Browser Test Leader' }).getByRole('button');
    await remove.click();
    await page.waitForSelector('#leader-list button:has-text("Confirm remove")', { timeout: WAIT_MS });
    await remove.click();
    await page.waitForFunction(() => ![...document.querySelectorAll('#leader-list li')].some((li) => li.textContent.includes('Browser Test Leader')), null, { timeout: WAIT_MS });

    // A reviewer sees the queue, not the admin tools, and rejects with a note.
    await page.click('#token-clear');
    await page.waitForSelector('#admin-tools[hidden]', { state: 'attached', timeout: WAIT_MS });
    await page.fill('#token-input', args.reviewerToken);
    await page.click('#token-form button[type=submit]');
    await page.waitForSelector(`#review-list li[data-review-id="${args.reviewId}"]`, { timeout: WAIT_MS });
    assert(await page.$eval('#admin-tools', (e) => e.hidden), 'a reviewer sees admin tools');
    await page.fill(`#notes-${args.reviewId}`, args.notes);
    await page.click(`#review-list li[data-review-id="${args.reviewId}"] button:has-text("Reject")`);
    await page.waitForSelector(`#review-list li[data-review-id="${args.reviewId}"] p:has-text("Rejected")`, { timeout: WAIT_MS });
    await page.locator('#admin').screenshot({ path: `${env.outDir}/review-queue.png` });
    await accessibleControls(env, page);
    await noCsp(env, page);
    return { ok: true };
  },

  // The admin panel triggers a run against the fake X API; the new posts appear in the
  // feed without a reload, and the ingestion panel shows the run's counts. Then stop,
  // start and a backfill from the same panel.
  async trigger(env) {
    const { args, assert } = env;
    const { page } = await open(env, DESKTOP);
    assert((await cards(page)).length === 0, 'feed not empty before the run');
    await page.fill('#token-input', args.adminToken);
    await page.press('#token-input', 'Enter');
    await page.waitForSelector('#admin-tools:not([hidden])', { timeout: WAIT_MS });
    await page.click('[data-ingest="trigger"]');
    await page.waitForFunction(() => /Run finished/.test(document.getElementById('admin-result').textContent), null, { timeout: 60000 });
    const result = await page.$eval('#admin-result', (e) => e.textContent);
    await page.waitForFunction((n) => document.querySelectorAll('#feed .card').length >= Math.min(n, 20), args.expectedPosts, { timeout: WAIT_MS });
    const list = await cards(page);
    assert(list.every((c) => c.platform === 'X'), 'a non-X post after an X run');
    assert(newestFirst(list), 'not newest first after the run');
    assert(list.every((c) => c.permalink && c.permalink.startsWith('https://x.com/')), 'an ingested post without its X link');
    assert(await page.$eval('#empty', (e) => e.hidden), 'empty state still shown');
    const panel = await page.$eval('#ingestion-body', (e) => e.textContent);
    assert(panel.includes(`${args.expectedPosts} new posts`), `ingestion panel lacks the run's counts: ${panel}`);
    await page.screenshot({ path: `${env.outDir}/after-trigger.png` });

    // Stop and start: the panel follows; a backfill run finds nothing new (dedup).
    const stateIs = (want) => page.waitForFunction((w) => {
      const dt = [...document.querySelectorAll('#ingestion-body dt')].find((d) => d.textContent === 'State');
      return dt && dt.nextElementSibling.textContent === w;
    }, want, { timeout: WAIT_MS });
    await page.click('[data-ingest="stop"]');
    await stateIs('stopped by an admin');
    await page.click('[data-ingest="start"]');
    await stateIs(args.stateAfterStart);
    await page.click('[data-ingest="backfill"]');
    await page.waitForFunction(() => /Run finished: 0 new posts/.test(document.getElementById('admin-result').textContent), null, { timeout: 60000 });
    assert((await cards(page)).length === list.length, 'a backfill of known posts changed the feed');
    await noCsp(env, page);
    return { result, cards: list.length };
  },

  // The live feed: posts created while the page is open are counted in "N new posts"
  // (no reload); a click shows them at the top; a deleted post's card goes by itself.
  async live(env) {
    const { args, assert } = env;
    const { page } = await open(env, DESKTOP);
    await page.waitForFunction(() => document.documentElement.dataset.live === 'open', null, { timeout: WAIT_MS });
    const api = (method, path, body) => fetch(env.base + path, {
      method,
      headers: { authorization: 'Bearer ' + args.adminToken, 'content-type': 'application/json' },
      body: body ? JSON.stringify(body) : undefined,
    });
    const loads = [];
    page.on('framenavigated', () => loads.push('navigated'));
    const before = (await cards(page)).length;
    const made = [];
    for (const content of ['live one', 'live two']) {
      const res = await api('POST', '/api/posts', { leaderId: 1, platform: 'news', content });
      assert(res.status === 201, `create: ${res.status}`);
      made.push(String((await res.json()).id));
    }
    await page.waitForFunction(() => document.getElementById('new-posts').textContent === '2 new posts', null, { timeout: WAIT_MS });
    assert(!(await page.$eval('#new-posts', (b) => b.hidden)), 'the new-posts button is hidden');
    assert((await cards(page)).length === before, 'new posts were shown before the click');
    await page.screenshot({ path: `${env.outDir}/live-new-posts.png` });
    await page.click('#new-posts');
    await page.waitForFunction((ids) => ids.every((id) => document.querySelector(`#feed li.card[data-post-id="${id}"]`)), made, { timeout: WAIT_MS });
    const top = (await cards(page)).slice(0, 2).map((c) => c.id);
    assert(top.includes(made[0]) && top.includes(made[1]), `the new posts are not on top: ${top}`);
    assert(await page.$eval('#new-posts', (b) => b.hidden), 'the button stays after the click');
    // A deletion removes the card without a reload.
    const res = await api('DELETE', `/api/posts/${made[0]}`);
    assert(res.ok, `delete: ${res.status}`);
    await page.waitForFunction((id) => !document.querySelector(`#feed li.card[data-post-id="${id}"]`), made[0], { timeout: WAIT_MS });
    assert(loads.length === 0, 'the page reloaded');
    await noCsp(env, page);
    return { before, shown: top, removed: made[0] };
  },

  // A 429 is a friendly notice with the wait, not a broken page; when the wait is over
  // the feed retries by itself. The server runs with a one-token bucket.
  async ratelimit(env) {
    const { args, assert } = env;
    const { page } = await open(env, DESKTOP);
    await page.selectOption('#filter-source', 'news');
    const notice = await page.waitForSelector('#notice[data-kind="rate-limit"]:not([hidden])', { timeout: WAIT_MS });
    const text = await notice.textContent();
    const wait = Number((text.match(/in (\d+) seconds?/) || [])[1]);
    assert(wait >= 1 && wait <= args.maxWait, `notice does not give the wait: ${text}`);
    assert(/limits how often/.test(text), `notice does not say why: ${text}`);
    assert(await page.$eval('#feed-status', (e) => /try again in \d+ s/.test(e.textContent)), 'feed status does not explain the failure');
    await page.screenshot({ path: `${env.outDir}/rate-limited.png` });
    // After the wait, the notice goes and the filtered feed arrives.
    await page.waitForSelector('#notice', { state: 'hidden', timeout: (args.maxWait + 5) * 1000 });
    await page.waitForFunction(() => {
      const c = [...document.querySelectorAll('#feed .card')];
      return c.length > 0 && c.every((li) => li.dataset.platform === 'News');
    }, null, { timeout: (args.maxWait + 5) * 1000 });
    await noCsp(env, page);
    return { waitShown: wait };
  },

  // Posts as X publishes them, answered in the contract's JSON (tests/browser/contract.mjs)
  // by request interception: a repost with its label, a quote inline, replies with what
  // they answer, a thread grouped under its first post (which arrives on the second
  // page), a video and a GIF as previews with play links, long and hostile text whole and
  // inert; the kinds filter in the request and the URL; a 429 wait and skipped ticks in
  // the ingestion panel. Then the same posts with the X widget stubbed in.
  async posts(env) {
    const { assert } = env;
    const requests = [];
    const status = C.statusJson(50000);
    const routes = [C.feedRoute(requests), C.leadersRoute(), C.statusRoute(status)];
    const { page } = await env.newPage(DESKTOP, { routes });
    await page.goto(env.base + '/');
    const total = C.posts().length;
    // The first page holds two posts of the thread, grouped, but not its first post.
    await waitCount(page, C.MOCK_PAGE);
    const early = await page.$eval('#feed > li.thread .thread-label', (l) => l.textContent);
    assert(early === 'Thread by Ada Leader · 2 posts, continuing an earlier post', `thread label on page 1: ${early}`);
    await scrollUntil(page, total);
    const list = await cards(page);
    const byText = (t) => list.find((c) => c.text === t);
    assert(new Set(list.map((c) => c.id)).size === total, 'a post appears twice');

    // The thread: one group where its newest post came in, oldest first under its first post.
    const first = await page.$eval('#feed > li', (li) => ({ thread: li.classList.contains('thread'), label: li.textContent }));
    assert(first.thread, 'the thread is not the first entry of the feed');
    const thread = await page.$$eval('#feed > li.thread', (ts) => ts.map((t) => ({
      label: t.querySelector('.thread-label').textContent,
      texts: [...t.querySelectorAll('.card .text')].map((p) => p.textContent),
      contexts: [...t.querySelectorAll('.card .context')].map((c) => getComputedStyle(c).display === 'none' || c.hidden ? null : c.textContent),
    })));
    assert(thread.length === 1, `${thread.length} thread groups, expected 1`);
    assert(JSON.stringify(thread[0].texts) === JSON.stringify(['first post of the thread', 'second post of the thread', 'third post of the thread']),
      `thread order: ${thread[0].texts.join(' / ')}`);
    assert(thread[0].label === 'Thread by Ada Leader · 3 posts', `thread label: ${thread[0].label}`);
    assert(thread[0].contexts.every((c) => c === null), `reply lines shown inside the thread: ${thread[0].contexts}`);

    // A repost: the reposted post and its author, labelled with the leader who reposted it.
    const repost = list.find((c) => c.kind === 'repost');
    assert(repost && repost.context.includes('Reposted by Ada Leader @ada'), `repost label: ${repost && repost.context}`);
    assert(repost.name === 'Grace Other' && repost.handle === '@grace', `repost author: ${repost.name} ${repost.handle}`);
    assert(repost.avatarImg === C.OTHER_AVATAR, `repost avatar: ${repost.avatarImg}`);
    assert(repost.text === 'Original words by Grace, reposted by Ada' && repost.refs.length === 0, 'repost text or extra blocks');

    // A quote: the leader's words, then the quoted post inline with its media.
    const quote = byText('My comment on this');
    assert(quote.kind === 'quote' && quote.refs.length === 1 && quote.refs[0].relation === 'quoted', 'quote without its quoted post');
    assert(quote.refs[0].text.includes('Linus Quoted') && quote.refs[0].text.includes('The quoted words & <more>'), `quoted post: ${quote.refs[0].text}`);
    assert(quote.mediaImgs.length === 0, 'the quoted photo is shown as the quote\'s own');
    const quotedImg = await page.$eval(`#feed .card[data-post-id="${quote.id}"] blockquote.ref img`, (i) => i.getAttribute('src'));
    assert(quotedImg === C.QUOTED_PHOTO, `quoted photo: ${quotedImg}`);
    const withheld = byText('Quoting a withheld post');
    assert(withheld.refs.length === 1 && /not available/.test(withheld.refs[0].text), `withheld quote: ${JSON.stringify(withheld.refs)}`);

    // A reply: whom it answers, and what, above its own words.
    const reply = byText('I disagree with Bob');
    assert(reply.context && reply.context.includes('Replying to @bob'), `reply line: ${reply.context}`);
    assert(reply.refs.length === 1 && reply.refs[0].relation === 'replied_to' && reply.refs[0].text.includes('Bob\'s question?'), 'reply without what it answers');
    assert(await page.$eval(`#feed .card[data-post-id="${reply.id}"] blockquote.ref`, (b) => !!(b.compareDocumentPosition(b.parentElement.querySelector('.text')) & Node.DOCUMENT_POSITION_FOLLOWING)),
      'what a reply answers is not above it');

    // Video and GIF: preview image, play link to the best MP4.
    const video = byText('A video and a GIF');
    const plays = await page.$$eval(`#feed .card[data-post-id="${video.id}"] .media .play`, (ps) => ps.map((p) => ({
      type: p.dataset.type, href: p.href, label: p.getAttribute('aria-label'), img: p.querySelector('img') && p.querySelector('img').getAttribute('src'),
    })));
    assert(plays.length === 2, `${plays.length} playable media`);
    assert(plays[0].type === 'video' && plays[0].href === C.VIDEO_BEST && plays[0].img === C.VIDEO_PREVIEW && /Play video 1 \(1:23\)/.test(plays[0].label), `video: ${JSON.stringify(plays[0])}`);
    assert(plays[1].type === 'animated_gif' && plays[1].href === C.GIF_MP4 && plays[1].img === C.GIF_PREVIEW, `gif: ${JSON.stringify(plays[1])}`);

    // Long and hostile text: whole, as text, links only http(s).
    const long = list.find((c) => c.text.startsWith('A long post'));
    assert(long && long.text === C.LONG_TEXT && long.text.length === 1200, `long text: ${long && long.text.length} characters`);
    const hostile = list.find((c) => c.text === C.HOSTILE_TEXT);
    assert(hostile, 'hostile text changed on the way');
    assert(hostile.name === C.HOSTILE_NAME, `hostile name: ${hostile.name}`);
    assert(hostile.permalink === null && hostile.mediaLinks.length === 0 && hostile.mediaImgs.length === 0, 'a javascript: link was made');
    const inert = await page.evaluate(() => ({
      xss: window.__xss, imgs: document.querySelectorAll('#feed img[src="x"], #feed script, #feed b').length,
      links: [...document.querySelectorAll('#feed a[href]')].map((a) => a.href),
    }));
    assert(inert.xss === undefined && inert.imgs === 0, 'post text became markup');
    assert(inert.links.every((h) => /^https?:/.test(h)), `non-http link: ${inert.links.filter((h) => !/^https?:/.test(h))}`);
    assert(inert.links.includes('https://example.org/a?b=1&c=2'), 'the link in the text is not a link');
    const textDir = await page.$eval(`#feed .card[data-post-id="${hostile.id}"] .text`, (p) => p.getAttribute('dir'));
    assert(textDir === 'auto', 'post text has no dir=auto for right-to-left words');

    // The ingestion panel: the wait, until when, and skipped ticks apart from the last run.
    await page.waitForSelector('#ingestion-body .countdown', { timeout: WAIT_MS });
    const panel = await page.$$eval('#ingestion-body dt', (dts) => Object.fromEntries(dts.map((d) => [d.textContent, d.nextElementSibling.textContent])));
    const untilAttr = await page.$eval('#ingestion-body .state-waiting time', (t) => t.getAttribute('datetime'));
    assert(/^for X's rate-limit reset until .+ \(in \d+ s\)$/.test(panel.Waiting || ''), `waiting row: ${panel.Waiting}`);
    assert(untilAttr === status.waiting.until, `waiting until ${untilAttr}, expected ${status.waiting.until}`);
    const left = Number(panel.Waiting.match(/in (\d+) s/)[1]);
    assert(left >= 1 && left <= 50, `countdown ${left} s`);
    assert(/^3 \(last .+: run in progress\)$/.test(panel['Skipped ticks'] || ''), `skipped ticks row: ${panel['Skipped ticks']}`);
    assert(panel['Last counts'] === '3 leaders, 12 new posts, 0 errors', `last run: ${panel['Last counts']}`);
    assert(panel.Running === 'yes, waiting', `running row: ${panel.Running}`);
    await accessibleControls(env, page);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: `${env.outDir}/posts-desktop.png` });

    // Kinds: leave reposts and replies out; the request and the URL say so; a reload keeps it.
    assert(requests.every((q) => !new URLSearchParams(q).has('kinds')), 'kinds= sent with every kind ticked');
    await page.uncheck('#filter-kinds input[value="repost"]');
    await page.uncheck('#filter-kinds input[value="reply"]');
    const onlyPostsAndQuotes = () => page.waitForFunction(() => {
      const c = [...document.querySelectorAll('#feed .card')];
      return c.length > 0 && c.every((li) => li.dataset.kind === 'post' || li.dataset.kind === 'quote') && !document.querySelector('#feed .thread');
    }, null, { timeout: WAIT_MS });
    await onlyPostsAndQuotes();
    assert(new URLSearchParams(requests[requests.length - 1]).get('kinds') === 'post,quote', `last feed request: ${requests[requests.length - 1]}`);
    assert(new URL(page.url()).searchParams.get('kinds') === 'post,quote', `page URL: ${page.url()}`);
    const filtered = C.posts().filter((p) => p.kind === 'post' || p.kind === 'quote').length;
    await scrollUntil(page, filtered);
    await page.reload();
    await page.waitForSelector('#feed .card', { timeout: WAIT_MS });
    await onlyPostsAndQuotes();
    const boxes = await page.$$eval('#filter-kinds input', (bs) => bs.filter((b) => b.checked).map((b) => b.value).join(','));
    assert(boxes === 'post,quote', `boxes after reload: ${boxes}`);
    // The last ticked kind cannot be unticked: no kind at all is not a feed.
    await page.uncheck('#filter-kinds input[value="quote"]');
    await page.click('#filter-kinds input[value="post"]');
    assert(await page.$eval('#filter-kinds input[value="post"]', (b) => b.checked), 'the last kind was unticked');
    await page.waitForFunction(() => /At least one kind/.test(document.getElementById('feed-status').textContent), null, { timeout: WAIT_MS });
    await noCsp(env, page);

    // With X's widget: a repost embeds the reposted post, and keeps its label above it.
    const stub = `window.twttr = { widgets: { createTweet: function (id, box) {
      var d = document.createElement('div'); d.className = 'fake-tweet'; d.textContent = 'embedded ' + id;
      box.appendChild(d); return Promise.resolve(d); } } };`;
    const withWidget = await env.newPage(DESKTOP, {
      routes: [...routes, ['https://platform.twitter.com/widgets.js', (route) => route.fulfill({ contentType: 'text/javascript', body: stub })]],
    });
    await withWidget.page.goto(env.base + '/');
    await withWidget.page.waitForSelector('#feed .card[data-kind="repost"].embedded .fake-tweet', { timeout: WAIT_MS });
    const embeddedRepost = await withWidget.page.$eval('#feed .card[data-kind="repost"]', (li) => ({
      embed: li.querySelector('.fake-tweet').textContent, label: li.querySelector('.context').offsetParent !== null,
    }));
    assert(embeddedRepost.embed === 'embedded ' + C.posts().find((p) => p.kind === 'repost').referencedPost.id,
      `repost embedded as ${embeddedRepost.embed}`);
    assert(embeddedRepost.label, 'the repost label is hidden with the embed');
    await noCsp(env, withWidget.page);

    // At phone width nothing scrolls sideways (long links, quoted posts, the kinds boxes).
    const phone = await env.newPage(PHONE, { routes });
    await phone.page.goto(env.base + '/');
    await waitCount(phone.page, C.MOCK_PAGE);
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(overflow <= 0, `phone layout scrolls sideways by ${overflow}px`);
    await phone.page.screenshot({ path: `${env.outDir}/posts-phone.png` });
    await noCsp(env, phone.page);
    return { cards: list.length, filtered, feedRequests: requests.length, countdown: left };
  },

  // Time to first rendered post: fresh browser contexts (cold cache) load the page
  // args.runs times; the figure is the 'amber-first-post' mark, which the page sets
  // right after appending the first card (ms since navigation start).
  async timing(env) {
    const { args, assert } = env;
    const samples = [];
    const parts = [];
    for (let i = 0; i < (args.runs || 20); i++) {
      const { context, page } = await env.newPage(DESKTOP);
      await page.goto(env.base + '/');
      await page.waitForSelector('#feed .card', { timeout: WAIT_MS });
      const t = await page.evaluate(() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const feed = performance.getEntriesByType('resource').find((r) => r.name.includes('/api/feed'));
        return { first: performance.getEntriesByName('amber-first-post')[0].startTime, html: nav.responseEnd, dcl: nav.domContentLoadedEventEnd, feed: feed ? feed.responseEnd : 0 };
      });
      assert(t.first > 0, 'no first-post mark');
      samples.push(t.first);
      parts.push(t);
      await context.close();
    }
    samples.sort((a, b) => a - b);
    const pick = (q) => Math.round(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]);
    const median = (k) => Math.round(parts.map((p) => p[k]).sort((a, b) => a - b)[Math.floor(parts.length / 2)]);
    return {
      runs: samples.length, medianMs: pick(0.5), p90Ms: pick(0.9), minMs: Math.round(samples[0]), maxMs: Math.round(samples[samples.length - 1]),
      medianHtmlMs: median('html'), medianDomContentLoadedMs: median('dcl'), medianFeedResponseMs: median('feed'),
    };
  },
};
