// api.js: how the page talks to the server. Every call goes through Amber.api.request,
// which turns JSON errors into ApiError and a 429 into the friendly "slow down" notice.
// Also small DOM helpers shared by the other scripts. No inline code anywhere (CSP).
(function () {
  'use strict';
  const A = (window.Amber = window.Amber || {});
  const TOKEN_KEY = 'amber.token';

  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter || 0;
    }
  }

  // The admin token lives in this tab's sessionStorage only: never localStorage or cookies.
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }
  function setToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: the token lives for this page only */ }
  }

  // Seconds to wait from a 429: the JSON body's retry_after, else the Retry-After header.
  function retryAfter(res, data) {
    const fromBody = data && Number(data.retry_after);
    if (fromBody > 0) return Math.ceil(fromBody);
    const fromHeader = Number(res.headers.get('Retry-After'));
    return fromHeader > 0 ? Math.ceil(fromHeader) : 1;
  }

  // The rate-limit notice: one countdown at a time; waiting callbacks run when it ends.
  let waitUntil = 0;
  let timer = null;
  const waiting = [];
  function showRateLimited(seconds) {
    waitUntil = Math.max(waitUntil, Date.now() + seconds * 1000);
    if (timer) return;
    tick();
    timer = setInterval(tick, 1000);
  }
  function tick() {
    const notice = document.getElementById('notice');
    const left = Math.ceil((waitUntil - Date.now()) / 1000);
    if (left <= 0) {
      clearInterval(timer);
      timer = null;
      notice.hidden = true;
      notice.textContent = '';
      waiting.splice(0).forEach(function (fn) { fn(); });
      return;
    }
    notice.hidden = false;
    notice.dataset.kind = 'rate-limit';
    notice.textContent = 'Easy there: the server limits how often one visitor may ask, and asked us to wait. ' +
      'Trying again in ' + left + (left === 1 ? ' second.' : ' seconds.');
  }
  // Runs fn once the current rate-limit wait (if any) is over.
  function whenAllowed(fn) {
    if (Date.now() >= waitUntil) fn();
    else waiting.push(fn);
  }

  // One request. opts.auth sends the token; a body is sent as JSON.
  async function request(method, path, body, opts) {
    const headers = { Accept: 'application/json' };
    const init = { method: method, headers: headers, credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    if (opts && opts.auth && token()) headers.Authorization = 'Bearer ' + token();
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, 'network', 'The server did not answer. Is it still running?');
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (res.status === 429) {
      const wait = retryAfter(res, data);
      showRateLimited(wait);
      throw new ApiError(429, 'rate_limit_exceeded', 'Too many requests: wait ' + wait + ' s.', wait);
    }
    if (!res.ok) {
      throw new ApiError(res.status, (data && data.error) || 'http_' + res.status,
        (data && data.message) || res.statusText || 'request failed');
    }
    return data;
  }

  // el('p', {class: 'x', text: 'hi'}, child...): builds DOM without innerHTML, so text
  // from posts can never become markup.
  function el(tag, attrs) {
    const node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      const v = attrs[k];
      if (v === undefined || v === null || v === false) return;
      if (k === 'text') node.textContent = v;
      else if (k === 'class') node.className = v;
      else node.setAttribute(k, v === true ? '' : v);
    });
    for (let i = 2; i < arguments.length; i++) {
      const c = arguments[i];
      if (c !== undefined && c !== null) node.append(c);
    }
    return node;
  }

  // Only http(s) links are followed; anything else (javascript:, data:) is dropped.
  function safeHref(url) {
    try {
      const u = new URL(url, location.href);
      return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
    } catch (e) { return null; }
  }

  // Images the CSP lets through: this server, data: URLs and pbs.twimg.com.
  function imageAllowed(url) {
    if (typeof url !== 'string' || !url) return false;
    try {
      const u = new URL(url, location.href);
      return u.protocol === 'data:' || u.origin === location.origin ||
        (u.protocol === 'https:' && u.hostname === 'pbs.twimg.com');
    } catch (e) { return false; }
  }

  // "5 min ago" for recent times, a date otherwise.
  function relTime(iso) {
    const t = Date.parse(iso);
    if (!isFinite(t)) return '';
    const s = Math.round((Date.now() - t) / 1000);
    const abs = Math.abs(s);
    const fmt = function (n, unit) { return s >= 0 ? n + ' ' + unit + ' ago' : 'in ' + n + ' ' + unit; };
    if (abs < 45) return s >= 0 ? 'just now' : 'in a moment';
    if (abs < 3600) return fmt(Math.round(abs / 60), 'min');
    if (abs < 86400) return fmt(Math.round(abs / 3600), 'h');
    if (abs < 86400 * 7) return fmt(Math.round(abs / 86400), 'd');
    return new Date(t).toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
  }
  function fullTime(iso) {
    const t = Date.parse(iso);
    return isFinite(t) ? new Date(t).toLocaleString() : '';
  }

  // Shows a message in a live region, as text.
  function say(id, message, isError) {
    const node = document.getElementById(id);
    if (!node) return;
    node.textContent = message || '';
    node.classList.toggle('error', !!isError);
  }

  // A human sentence for a failed call.
  function describe(err) {
    if (!(err instanceof ApiError)) return String(err && err.message || err);
    if (err.status === 429) return 'Rate limited: try again in ' + err.retryAfter + ' s.';
    if (err.status === 401) return 'The token was refused (expired or wrong secret): paste a fresh one.';
    if (err.status === 403) return 'This token\'s role may not do that.';
    return err.message + (err.status ? ' (' + err.status + ')' : '');
  }

  A.api = {
    ApiError: ApiError, request: request, token: token, setToken: setToken, whenAllowed: whenAllowed,
    get: function (path, opts) { return request('GET', path, undefined, opts); },
    post: function (path, body, opts) { return request('POST', path, body, opts); },
    del: function (path, opts) { return request('DELETE', path, undefined, opts); },
  };
  A.ui = { el: el, safeHref: safeHref, imageAllowed: imageAllowed, relTime: relTime, fullTime: fullTime, say: say, describe: describe };
})();
