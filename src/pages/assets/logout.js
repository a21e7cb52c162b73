/*! Portcullis logout.js — portcullis.logout({mode, returnTo}) */
// Served by the gateway at /.portcullis/logout.js with the two settings
// below filled in from gateway.toml. It never sees a token: the gateway ends
// the session first and hands back only a continue URL for the IdP leg.
(function () {
  'use strict';
  var LOGOUT_PATH = __LOGOUT_PATH__;
  var SILENT_TIMEOUT_MS = __SILENT_TIMEOUT_MS__;
  var CHANNEL = 'portcullis-logout';
  var MESSAGE_TYPE = 'portcullis:logout';

  function announce(detail) {
    try {
      window.dispatchEvent(new CustomEvent('portcullis:logout', { detail: detail }));
    } catch (e) { /* an app listener threw: not ours to handle */ }
  }

  function stateOf(continueUrl) {
    try { return new URL(continueUrl, location.href).searchParams.get('state'); } catch (e) { return null; }
  }

  // Ends the gateway session; resolves the gateway's JSON answer.
  function endGatewaySession(mode, returnTo, scope) {
    var url = new URL(LOGOUT_PATH, location.href);
    url.searchParams.set('mode', mode);
    if (returnTo) url.searchParams.set('return_to', returnTo);
    if (scope) url.searchParams.set('scope', scope);
    return fetch(url.toString(), {
      method: 'POST',
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { 'Accept': 'application/json' }
    }).then(function (r) {
      if (!r.ok) throw new Error('portcullis: logout refused (HTTP ' + r.status + ')');
      return r.json();
    });
  }

  // Waits for /.portcullis/logout/done to announce `state` from `source`
  // (a window) or, for popups, on the BroadcastChannel (an opener link can
  // be cut by Cross-Origin-Opener-Policy). Only this origin is believed.
  // `control.cancel(err)` gives up early.
  function waitForDone(state, isSource, useChannel, timeoutMs, control) {
    return new Promise(function (resolve, reject) {
      var channel = null;
      var timer = null;
      function finish(ok, value) {
        window.removeEventListener('message', onMessage);
        if (channel) channel.close();
        if (timer) clearTimeout(timer);
        if (ok) resolve(value); else reject(value);
      }
      function accept(data) {
        return data && data.type === MESSAGE_TYPE && typeof data.state === 'string' && data.state === state;
      }
      function onMessage(event) {
        if (event.origin !== location.origin || !isSource(event.source) || !accept(event.data)) return;
        finish(true, event.data);
      }
      window.addEventListener('message', onMessage);
      if (useChannel && typeof BroadcastChannel === 'function') {
        channel = new BroadcastChannel(CHANNEL);
        channel.onmessage = function (event) { if (accept(event.data)) finish(true, event.data); };
      }
      if (timeoutMs > 0) timer = setTimeout(function () { finish(false, new Error('timeout')); }, timeoutMs);
      if (control) control.cancel = function (err) { finish(false, err); };
    });
  }

  function go(url) { if (url) location.assign(url); }

  // The IdP leg at the top level after a silent or popup attempt failed;
  // the flag tells the gateway to end it with a plain redirect.
  function fallback(continueUrl) {
    try {
      var url = new URL(continueUrl, location.href);
      url.searchParams.set('fallback', 'redirect');
      go(url.toString());
    } catch (e) {
      go(continueUrl);
    }
  }

  // Silent: the IdP leg in a hidden iframe. No answer in time means the IdP
  // could not be reached that way (framing refused, third-party cookies
  // blocked, a confirmation page): fall back to a top-level redirect so the
  // IdP session is never silently left alive.
  function silent(answer, navigate) {
    var state = stateOf(answer.continue_url);
    var frame = document.createElement('iframe');
    frame.hidden = true;
    frame.setAttribute('aria-hidden', 'true');
    frame.title = 'Signing out';
    frame.src = answer.continue_url;
    var waiting = waitForDone(state, function (s) { return s === frame.contentWindow; }, false, SILENT_TIMEOUT_MS);
    document.body.appendChild(frame);
    return waiting.then(function () {
      frame.remove();
      // The message proves only that the IdP redirected back: inside a
      // third-party frame it may not have received its own cookie.
      var outcome = { gateway: true, idp: 'unknown', mode: 'silent', returnTo: answer.return_to };
      announce(outcome);
      if (navigate) go(answer.return_to);
      return outcome;
    }, function () {
      frame.remove();
      announce({ gateway: true, idp: 'unknown', mode: 'silent', fallback: 'redirect' });
      fallback(answer.continue_url);
      throw new Error('portcullis: silent logout timed out; continuing with a redirect');
    });
  }

  // Popup: the IdP leg in a window opened by the click handler. A popup
  // that looks closed may only have been cut off from this window (the
  // IdP's pages sent Cross-Origin-Opener-Policy); its /logout/done still
  // announces on the BroadcastChannel. So once it looks closed, wait
  // silent_timeout more for that; then finish the IdP leg with a top-level
  // redirect, as silent mode does, so the IdP session is never silently
  // left alive.
  function popup(win, answer, navigate) {
    var state = stateOf(answer.continue_url);
    win.location.href = answer.continue_url;
    var control = {};
    var closedWatch = null;
    var grace = null;
    var done = waitForDone(state, function (s) { return s === win; }, true, 0, control);
    closedWatch = setInterval(function () {
      if (!win.closed) return;
      clearInterval(closedWatch);
      closedWatch = null;
      grace = setTimeout(function () { control.cancel(new Error('popup_closed')); }, SILENT_TIMEOUT_MS);
    }, 250);
    function stop() {
      if (closedWatch) clearInterval(closedWatch);
      if (grace) clearTimeout(grace);
    }
    return done.then(function () {
      stop();
      try { win.close(); } catch (e) { /* already closed */ }
      var outcome = { gateway: true, idp: 'unknown', mode: 'popup', returnTo: answer.return_to };
      announce(outcome);
      if (navigate) go(answer.return_to);
      return outcome;
    }, function () {
      stop();
      announce({ gateway: true, idp: 'unknown', mode: 'popup', fallback: 'redirect' });
      fallback(answer.continue_url);
      throw new Error('portcullis: the logout popup closed before it finished; continuing with a redirect');
    });
  }

  /**
   * Logs out. Call it from a click handler for mode 'popup' (browsers only
   * allow popups opened synchronously there).
   * options: {mode: 'redirect'|'silent'|'popup'|'local', returnTo: '/path',
   *           scope: 'all' (every session of this user), navigate: true}
   * Resolves {gateway: true, idp: 'unknown'|'kept', mode, returnTo}.
   */
  function logout(options) {
    options = options || {};
    var mode = options.mode || 'redirect';
    var navigate = options.navigate !== false;
    var win = null;
    if (mode === 'popup') {
      win = window.open('about:blank', 'portcullis-logout', 'popup,width=520,height=640');
      // A blocked popup falls back to a redirect.
      if (!win) mode = 'redirect';
    }
    // The popup was opened before the gateway answered; close it whenever
    // there turns out to be no IdP leg for it to show.
    function closePopup() {
      if (win) try { win.close(); } catch (e) { /* already closed */ }
    }
    return endGatewaySession(mode, options.returnTo, options.scope).then(function (answer) {
      if (!answer || answer.logged_out !== true) {
        closePopup();
        throw new Error('portcullis: unexpected logout answer');
      }
      // The gateway runs its default mode when the asked one is not in
      // allowed_modes; follow what it did, or the state it issued for a
      // redirect would be used up inside an iframe.
      if (typeof answer.mode === 'string' && answer.mode !== mode) {
        if (answer.mode !== 'popup') closePopup();
        mode = answer.mode;
      }
      if (mode === 'local' || !answer.continue_url) {
        closePopup();
        // No IdP leg ran (local mode, or the IdP has no end-session
        // endpoint or was unreachable): its session is kept.
        var outcome = { gateway: true, idp: 'kept', mode: mode, returnTo: answer.return_to };
        announce(outcome);
        if (navigate) go(answer.return_to);
        return outcome;
      }
      if (mode === 'silent') return silent(answer, navigate);
      if (mode === 'popup') {
        if (win) return popup(win, answer, navigate);
        // The gateway chose popup but no popup was opened for it.
        mode = 'redirect';
      }
      var redirecting = { gateway: true, idp: 'unknown', mode: 'redirect', returnTo: answer.return_to };
      announce(redirecting);
      go(answer.continue_url);
      return redirecting;
    }, function (err) {
      closePopup();
      announce({ gateway: false, error: err.message, mode: mode });
      throw err;
    });
  }

  var api = window.portcullis || {};
  api.logout = logout;
  // Used by the gateway's own silent/popup pages, which have already ended
  // the gateway session.
  api._continue = function (answer, mode) {
    if (mode === 'silent') return silent(answer, true);
    var win = window.open('about:blank', 'portcullis-logout', 'popup,width=520,height=640');
    if (!win) { fallback(answer.continue_url); return Promise.resolve(); }
    return popup(win, answer, true);
  };
  window.portcullis = api;
})();
