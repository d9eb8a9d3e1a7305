// Contract-shaped answers for /api/feed, /api/leaders and /api/ingestion/status, in the
// shapes of TEAM.md's shared contracts (post JSON with kind, referencedPost, repostedBy,
// media, conversationId, inReplyToUserId; ingestion status with waiting, last_skipped,
// skipped_ticks; every id a string). The `posts` scenario answers the page's requests
// with these through playwright's request interception, so the page's rendering is
// tested against the contract itself, independently of the server's current build.

export const LEADER = { id: '1', name: 'Ada Leader', handle: 'ada', xUserId: '42' };
const AVATAR = 'https://pbs.twimg.com/profile_images/1/ada_normal.jpg';
export const OTHER_AVATAR = 'https://pbs.twimg.com/profile_images/2/grace_normal.jpg';
export const QUOTED_PHOTO = 'https://pbs.twimg.com/media/quoted.jpg';
export const VIDEO_PREVIEW = 'https://pbs.twimg.com/ext_tw_video_thumb/5/pu/img/preview.jpg';
export const VIDEO_BEST = 'https://video.twimg.com/ext_tw_video/5/pu/vid/1280x720/best.mp4';
export const GIF_MP4 = 'https://video.twimg.com/tweet_video/gif.mp4';
export const GIF_PREVIEW = 'https://pbs.twimg.com/tweet_video_thumb/gif.jpg';
// Markup, entities, right-to-left text and emoji: all of it must arrive as text.
export const HOSTILE_TEXT = 'Tags <img src=x onerror="window.__xss=1"> &amp; <script>window.__xss=2</script> ' +
  'مرحبا بالعالم 👩‍👩‍👧 see https://example.org/a?b=1&c=2, not javascript:alert(1)';
export const HOSTILE_NAME = '<b>Bold</b> & Co';
export const LONG_TEXT = ('A long post that X would cut at 280 characters. ' + 'Every word of it counts; '.repeat(50)).slice(0, 1199) + '.';
export const THREAD = '1900000000000000900';

const base = Date.now() - 3600 * 1000;
const at = (minutes) => new Date(base + minutes * 60000).toISOString();

// An X post of the leader, with every field of the post JSON.
function xPost(n, minutes, over) {
  const xid = String(1900000000000000000n + BigInt(n));
  const post = {
    id: String(5000 + n), leaderId: LEADER.id, leaderName: LEADER.name, platform: 'X',
    content: `post ${n}`, timestamp: at(minutes), sentiment: 'Neutral',
    platformPostId: xid, verificationStatus: 'Needs Review',
    permalink: `https://x.com/${LEADER.handle}/status/${xid}`,
    author: { id: LEADER.xUserId, name: LEADER.name, handle: LEADER.handle, display_name: LEADER.name },
    kind: 'post', conversationId: xid, inReplyToUserId: null, media: [], referencedPost: null, repostedBy: null,
    ...over,
  };
  post.metrics = {
    origin: 'x', externalId: post.platformPostId, author: post.author.handle, authorName: post.author.name,
    avatarUrl: over && over.avatarUrl !== undefined ? over.avatarUrl : AVATAR, mediaUrl: null, mediaUrls: [],
    likes: n, comments: 1, shares: 2, language: 'en', sentimentScore: 0,
    kind: post.kind, conversationId: post.conversationId, inReplyToUserId: post.inReplyToUserId,
    media: post.media, referencedPost: post.referencedPost, repostedBy: post.repostedBy,
  };
  delete post.avatarUrl;
  return post;
}

const ref = (relation, over) => ({
  id: '1800000000000000001', relation, authorId: '77', authorHandle: 'grace', authorName: 'Grace Other',
  text: 'words of someone else', createdAt: at(-30), media: [], permalink: 'https://x.com/grace/status/1800000000000000001',
  ...over,
});

// Newest first, as /api/feed answers.
export function posts() {
  return [
    xPost(1, 59, {
      kind: 'reply', content: 'third post of the thread', conversationId: THREAD, inReplyToUserId: LEADER.xUserId,
      referencedPost: ref('replied_to', { id: '1900000000000000003', authorId: LEADER.xUserId, authorHandle: 'ada', authorName: LEADER.name, text: 'second post of the thread' }),
    }),
    xPost(2, 58, {
      kind: 'repost', content: 'Original words by Grace, reposted by Ada', avatarUrl: OTHER_AVATAR,
      author: { id: '77', name: 'Grace Other', handle: 'grace', display_name: 'Grace Other' },
      permalink: 'https://x.com/grace/status/1800000000000000002', conversationId: '1800000000000000002',
      referencedPost: ref('reposted', { id: '1800000000000000002', text: 'Original words by Grace, reposted by Ada' }),
      repostedBy: { leaderId: LEADER.id, name: LEADER.name, handle: LEADER.handle },
    }),
    xPost(4, 57, {
      kind: 'quote', content: 'My comment on this',
      referencedPost: ref('quoted', { authorName: 'Linus Quoted', authorHandle: 'linus', text: 'The quoted words & <more>', media: [{ type: 'photo', url: QUOTED_PHOTO, previewImageUrl: null, width: 1200, height: 675, durationMs: null, variants: [] }] }),
    }),
    xPost(5, 56, {
      kind: 'reply', content: 'I disagree with Bob', conversationId: '1700000000000000000', inReplyToUserId: '88',
      referencedPost: ref('replied_to', { authorId: '88', authorHandle: 'bob', authorName: 'Bob Asker', text: 'Bob\'s question?' }),
    }),
    xPost(3, 55, {
      kind: 'reply', content: 'second post of the thread', conversationId: THREAD, inReplyToUserId: LEADER.xUserId,
      referencedPost: ref('replied_to', { id: THREAD, authorId: LEADER.xUserId, authorHandle: 'ada', authorName: LEADER.name, text: 'first post of the thread' }),
    }),
    xPost(6, 54, {
      content: 'A video and a GIF',
      media: [
        { type: 'video', url: null, previewImageUrl: VIDEO_PREVIEW, width: 1280, height: 720, durationMs: 83000,
          variants: [
            { url: 'https://video.twimg.com/ext_tw_video/5/pu/pl/list.m3u8', contentType: 'application/x-mpegURL', bitRate: null },
            { url: 'https://video.twimg.com/ext_tw_video/5/pu/vid/480x270/low.mp4', contentType: 'video/mp4', bitRate: 256000 },
            { url: VIDEO_BEST, contentType: 'video/mp4', bitRate: 2176000 },
          ] },
        { type: 'animated_gif', url: null, previewImageUrl: GIF_PREVIEW, width: 320, height: 240, durationMs: null,
          variants: [{ url: GIF_MP4, contentType: 'video/mp4', bitRate: 0 }] },
      ],
    }),
    xPost(7, 53, {
      content: HOSTILE_TEXT, permalink: 'javascript:alert(2)',
      author: { id: LEADER.xUserId, name: HOSTILE_NAME, handle: 'ada', display_name: HOSTILE_NAME },
      media: [{ type: 'photo', url: 'javascript:alert(3)', previewImageUrl: null, width: null, height: null, durationMs: null, variants: [] }],
    }),
    xPost(8, 52, { content: LONG_TEXT }),
    xPost(9, 51, { kind: 'quote', content: 'Quoting a withheld post', referencedPost: ref('quoted', { text: null, authorName: null, authorHandle: null, createdAt: null, permalink: null }) }),
    // The thread's first post: on the second page.
    xPost(10, 50, { content: 'first post of the thread', platformPostId: THREAD, conversationId: THREAD, permalink: `https://x.com/ada/status/${THREAD}` }),
    {
      id: '5100', leaderId: LEADER.id, leaderName: LEADER.name, platform: 'News', content: 'A news item about Ada',
      timestamp: at(49), sentiment: 'Positive', metrics: {}, platformPostId: null, verificationStatus: 'Verified',
      permalink: null, author: { id: 'leader:1', name: LEADER.name, handle: null, display_name: LEADER.name },
      kind: 'post', conversationId: null, inReplyToUserId: null, media: [], referencedPost: null, repostedBy: null,
    },
  ];
}

// Posts per page the fake feed answers, whatever page_size asks: the thread's first post
// falls on the second page.
export const MOCK_PAGE = 6;

// The feed: kinds= filters, before= is an offset cursor. Records every query it answers.
export function feedRoute(requests) {
  return [(url) => url.pathname === '/api/feed', async (route) => {
    const q = new URL(route.request().url()).searchParams;
    requests.push(q.toString());
    const kinds = q.get('kinds');
    const known = ['post', 'repost', 'quote', 'reply'];
    if (kinds && kinds.split(',').some((k) => !known.includes(k))) {
      return route.fulfill({ status: 400, contentType: 'application/json', body: JSON.stringify({ error: 'bad_request', message: 'unknown kind' }) });
    }
    const all = posts().filter((p) => !kinds || kinds.split(',').includes(p.kind));
    const from = Number(q.get('before') || 0);
    const page = all.slice(from, from + MOCK_PAGE);
    const next = from + MOCK_PAGE < all.length ? String(from + MOCK_PAGE) : null;
    return route.fulfill({ contentType: 'application/json', body: JSON.stringify({
      posts: page, total: all.length, page: null, page_size: MOCK_PAGE, has_next: !!next, next_cursor: next,
    }) });
  }];
}

export function leadersRoute() {
  return [(url) => url.pathname === '/api/leaders', (route) => route.fulfill({ contentType: 'application/json', body: JSON.stringify([
    { id: LEADER.id, name: LEADER.name, handles: { x: LEADER.handle }, trackingTopics: [], createdAt: at(0), avatarUrl: null },
  ]) })];
}

// A run waiting for X's rate-limit reset (`untilMs` from now), after skipped ticks.
export function statusJson(untilMs) {
  const now = Date.now();
  return {
    enabled: true, stopped: false, configured: true, running: true,
    circuit_breaker_state: 'closed', circuit_breaker_failures: 0, circuit_breaker_open_until: null,
    jobs: [{ id: 'x_ingestion_interval', name: 'X ingestion', next_run: new Date(now + 15 * 60000).toISOString(), trigger: 'interval[0:15:00]' }],
    config: { backfill_count: 100, interval_minutes: 15, cron: null, ingest_limit: 100, concurrency: 8, monthly_read_budget: null },
    last_run: { started_at: new Date(now - 16 * 60000).toISOString(), finished_at: new Date(now - 15 * 60000).toISOString(), leaders: 3, posts_ingested: 12, errors: [] },
    current_run: { started_at: new Date(now - 20000).toISOString(), leaders: 3 },
    paused_until: null,
    usage: { month: '2026-12', posts_read: 40, users_read: 3, estimated_cost_usd: 0.23 },
    failing_leaders: [],
    waiting: { reason: 'x_rate_limit', since: new Date(now - 10000).toISOString(), until: new Date(now + untilMs).toISOString() },
    last_skipped: { at: new Date(now - 120000).toISOString(), reason: 'run_in_progress' },
    skipped_ticks: 3,
  };
}

export function statusRoute(json) {
  return [(url) => url.pathname === '/api/ingestion/status', (route) => route.fulfill({ contentType: 'application/json', body: JSON.stringify(json) })];
}
