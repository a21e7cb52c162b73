// Shared harness for the real-browser logout scenarios.
//
// tests/browser.rs starts the IdP (oidc-provider), the test upstream and the
// gateway, then runs `node tests/browser/<scenario>.mjs` with:
//   GATEWAY_URL   the gateway's public origin (http://127.0.0.1:PORT)
//   IDP_ISSUER    the IdP's issuer (http://127.0.0.1:PORT)
//   UPSTREAM_URL  the test upstream, reached directly: another origin
//   ARTIFACTS_DIR where screenshots go (NN-step.png)
//   CHROMIUM      the browser binary (default /usr/bin/chromium)
// A scenario prints `PASS <name>` and exits 0, or prints `FAIL <name>: …`
// and exits non-zero.

import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import process from 'node:process';

import { chromium } from 'playwright-core';

/** What the Rust side passed in. */
export const env = {
  gateway: required('GATEWAY_URL'),
  issuer: required('IDP_ISSUER'),
  upstream: required('UPSTREAM_URL'),
  artifacts: required('ARTIFACTS_DIR'),
  chromium: process.env.CHROMIUM || '/usr/bin/chromium',
};

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`FAIL: environment variable ${name} is not set (run through tests/browser.rs)`);
    process.exit(2);
  }
  return value.replace(/\/$/, '');
}

// Flags from TESTING.md, plus a resolver rule that fails every host but
// 127.0.0.1 and localhost at once: the tests never leave the machine, and
// pages that name outside resources (the IdP's web fonts) do not wait for
// them. localhost (an IdP on another site than the gateway) is 127.0.0.1;
// the first matching MAP wins.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--host-resolver-rules=MAP localhost 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
];

/** The whole scenario may take this long before it fails. */
const SCENARIO_TIMEOUT_MS = 75_000;

/**
 * Runs a scenario: a fresh headless Chromium (a new temporary profile,
 * so no cookies from anything else; `args` adds command-line switches),
 * one context, `body(t)`, and a screenshot of every open page if it fails.
 */
export async function scenario(name, body, { args = [] } = {}) {
  const deadline = setTimeout(() => {
    console.error(`FAIL ${name}: did not finish within ${SCENARIO_TIMEOUT_MS} ms`);
    process.exit(3);
  }, SCENARIO_TIMEOUT_MS);
  deadline.unref();
  rmSync(env.artifacts, { recursive: true, force: true });
  mkdirSync(env.artifacts, { recursive: true });
  const browser = await chromium.launch({
    executablePath: env.chromium,
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
  });
  const context = await browser.newContext({ viewport: { width: 960, height: 640 } });
  const t = new Trace(context);
  let failed = null;
  try {
    await body(t);
  } catch (err) {
    failed = err;
    for (const page of context.pages()) {
      await t.shot(page, 'failure', { optional: true }).catch(() => {});
    }
  }
  await browser.close().catch(() => {});
  clearTimeout(deadline);
  if (failed) {
    console.error(`FAIL ${name}: ${failed.stack || failed}`);
    process.exitCode = 1;
  } else {
    console.log(`PASS ${name}`);
  }
}

/** Helpers bound to one browser context. */
export class Trace {
  constructor(context) {
    this.context = context;
    this.step = 0;
    this.started = Date.now();
  }

  /** A line for the test output, printed at once (a hung scenario still shows how far it got). */
  note(text) {
    // ID tokens in end-session URLs are long and tell a reader nothing.
    text = String(text).replace(/id_token_hint=[^&\s]+/g, 'id_token_hint=…');
    console.log(`[${String(Date.now() - this.started).padStart(6)} ms] ${text}`);
  }

  /**
   * Writes `NN-step.png` of `page`. A page in a window that is not in
   * front (a popup, or the opener while a popup is up) paints no frames in
   * headless Chromium, so the page is brought to the front first.
   * `optional`: a page that may never paint (one that submitted a form
   * while loading and waits for the answer) gets a note instead.
   */
  async shot(page, step, { optional = false } = {}) {
    this.step += 1;
    const file = join(env.artifacts, `${String(this.step).padStart(2, '0')}-${step}.png`);
    try {
      await page.bringToFront();
      await page.screenshot({ path: file, timeout: optional ? 2_000 : 5_000 });
    } catch (err) {
      if (!optional) throw err;
      this.note(`no screenshot ${file}: ${String(err.message).split('\n')[0]}`);
      return;
    }
    this.note(`screenshot ${file}`);
  }

  /**
   * Records what the app page reports (its console lines
   * `portcullis-test <kind> <json>`): logout.js's event details, the
   * Promise's outcome.
   */
  reports(page) {
    const list = [];
    page.on('console', (msg) => {
      const text = msg.text();
      const m = /^portcullis-test (\w+) (.*)$/s.exec(text);
      if (!m) return;
      const entry = { kind: m[1], data: JSON.parse(m[2]), at: Date.now() };
      list.push(entry);
      this.note(`app: ${m[1]} ${m[2]}`);
    });
    return list;
  }

  /** Records the committed top-level navigations of `page` from now on. */
  navigations(page) {
    const list = [];
    page.on('framenavigated', (frame) => {
      if (frame !== page.mainFrame()) return;
      list.push({ url: frame.url(), at: Date.now() });
      this.note(`top-level navigation: ${frame.url()}`);
    });
    return list;
  }

  /** Records every request of the context with the frame that made it. */
  requests(page) {
    const list = [];
    const listen = (p) => p.on('request', (req) => {
      let where = 'other';
      try {
        where = req.frame() === p.mainFrame() ? 'top' : 'frame';
      } catch { /* service worker requests have no frame */ }
      list.push({ url: req.url(), method: req.method(), where, page: p === page ? 'app' : 'popup', request: req });
    });
    listen(page);
    this.context.on('page', listen);
    return list;
  }

  /** Logs `user` in through the IdP's login form, landing on the app page. */
  async login(page, user, appPath = '/app.html') {
    await this.expectLoginForm(page, appPath);
    await this.shot(page, 'idp-login-form');
    await page.fill('input[name="login"]', user);
    await page.fill('input[name="password"]', 'any-password');
    await Promise.all([
      page.waitForURL(`${env.gateway}${appPath}`, { waitUntil: 'domcontentloaded' }),
      page.click('button[type="submit"]'),
    ]);
    await page.waitForSelector('text=Test app behind Portcullis');
    assert.equal(await this.sessionStatus(), 200, 'signed in after the login round trip');
    await this.shot(page, 'app-signed-in');
  }

  /**
   * Opens the app page without a gateway session and checks that the IdP
   * asks for a login, i.e. that the IdP session is gone too.
   */
  async expectLoginForm(page, appPath = '/app.html') {
    await page.goto(`${env.gateway}${appPath}`, { waitUntil: 'domcontentloaded' });
    await page.waitForSelector('input[name="login"]', { timeout: 10_000 });
    assert.equal(new URL(page.url()).origin, env.issuer, 'the login form is the IdP\'s');
  }

  /** The status of `/.portcullis/session` with this browser's cookies. */
  async sessionStatus() {
    const resp = await this.context.request.get(`${env.gateway}/.portcullis/session`, {
      headers: { accept: 'application/json' },
      maxRedirects: 0,
    });
    return resp.status();
  }

  /**
   * Holds the next request to `url`'s origin and path (any query):
   * `(await t.holdNext(url)).route` resolves with its Playwright `Route`
   * once it is made, and the caller answers it (`fulfill`, `continue`).
   * Later requests pass. Playwright routes only
   * the first request of a redirect chain, so `url` must be one.
   */
  async holdNext(url) {
    const target = new URL(url);
    const pattern = (u) => u.origin === target.origin && u.pathname === target.pathname;
    let handler;
    let taken = false;
    const held = new Promise((resolve) => {
      // Unrouting from inside the handler would let Playwright pass the
      // request on; later requests are passed on explicitly instead.
      handler = (route) => {
        if (taken) return route.fallback();
        taken = true;
        this.note(`holding ${route.request().url()}`);
        resolve(route);
        return undefined;
      };
    });
    await this.context.route(pattern, handler);
    return { route: withTimeout(held, 10_000, `a request to ${url}`) };
  }

  /**
   * The test upstream's forging page (another origin) for `state`: it
   * posts `{type: 'portcullis:logout', state}` to its opener or parent and
   * then titles itself `forged:2`.
   */
  forgeUrl(state) {
    const u = new URL('/forge.html', env.upstream);
    u.searchParams.set('state', state);
    u.searchParams.set('origin', env.gateway);
    return u.toString();
  }
}

/** Waits until `fn()` returns a truthy value (polled), or fails. */
export async function until(fn, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** Resolves after `ms`. */
export function sleep(ms) {
  return new Promise((resolve) => { setTimeout(resolve, ms); });
}

/** `promise`, or a failure naming `what` after `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The first report of `kind`, waiting up to `timeoutMs`. */
export function report(reports, kind, timeoutMs = 10_000) {
  return until(() => reports.find((r) => r.kind === kind), timeoutMs, `the app to report "${kind}"`);
}

export { assert };
