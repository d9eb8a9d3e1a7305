// main.js: starts everything once the DOM is parsed (scripts are deferred). The feed
// request goes first: it is what a visitor came for.
(function () {
  'use strict';
  const A = window.Amber;
  function start() {
    const feed = A.feed.init();
    A.admin.loadLeaders();
    A.status.init();
    A.admin.init();
    return feed;
  }
  window.addEventListener('error', function (e) {
    // Surfaces a broken page instead of failing silently (and lets tests see it).
    document.documentElement.dataset.scriptError = String(e.message || 'error');
  });
  start();
})();
