// Forged announcements during a silent logout change nothing: logout.js
// believes only a message from its own iframe, on the gateway's origin,
// with the state of this logout. While it waits (silent_timeout is 15 s
// here) the test sends, in turn:
//   A. the wrong state from the right window on the right origin (the
//      hidden iframe, still on its initial about:blank, which has the app's
//      origin);
//   B. the right state from another origin's window that the app opened
//      (the test upstream's forge.html, served on its own port);
//   C. the right state from the right window on another origin (the hidden
//      iframe's first request is answered with a redirect to forge.html);
//   D. the right state on the right origin from another window (a second
//      iframe of the app page, which has the app's origin): exactly the
//      message /logout/done would send, from the wrong sender.
// Then the iframe goes where it should have, and the real announcement
// resolves the Promise, once.

import {
  assert, env, report, scenario, sleep,
} from './lib.mjs';

const FINAL = '/public/signed-out';

function settled(reports) {
  return reports.filter((r) => ['event', 'resolved', 'rejected'].includes(r.kind));
}

await scenario('forged', async (t) => {
  const page = await t.context.newPage();
  const reports = t.reports(page);
  await t.login(page, 'alice');
  const navigations = t.navigations(page);

  // What arrives at the app window, to check that each forgery differs
  // from the real announcement only where it says.
  await page.evaluate(() => {
    window.seen = [];
    window.addEventListener('message', (e) => {
      const frame = document.querySelector('iframe[title="Signing out"]');
      window.seen.push({
        origin: e.origin,
        fromFrame: Boolean(frame) && e.source === frame.contentWindow,
        state: e.data && e.data.state,
      });
    });
  });
  const seen = () => page.evaluate(() => window.seen.splice(0));

  const detour = await t.holdNext(`${env.gateway}/.portcullis/logout/continue`);
  await page.click('button[data-mode="silent"]');
  const continueRoute = await detour.route;
  const continueUrl = continueRoute.request().url();
  const state = new URL(continueUrl).searchParams.get('state');
  assert.ok(state && state.length >= 43);
  const frameElement = await page.waitForSelector('iframe[title="Signing out"]', { state: 'attached' });

  // A. Same origin, right window, wrong state. The iframe's initial
  // about:blank document has the app's origin; a function made in its
  // realm posts as the iframe.
  await page.evaluate(() => {
    const w = document.querySelector('iframe[title="Signing out"]').contentWindow;
    w.Function('o', "parent.postMessage({type: 'portcullis:logout', state: 'not-the-state', outcome: 'done'}, o)")(location.origin);
  });
  await sleep(50);
  assert.deepEqual(settled(reports), [], 'forgery A settled the logout');
  assert.deepEqual(await seen(), [{ origin: env.gateway, fromFrame: true, state: 'not-the-state' }]);
  t.note('forged A: wrong state from the iframe, same origin');

  // B. Another origin, another window (opened by the app), right state.
  const [forger] = await Promise.all([
    page.waitForEvent('popup'),
    page.evaluate((url) => { window.open(url, 'elsewhere'); }, t.forgeUrl(state)),
  ]);
  await forger.waitForFunction(() => document.title === 'forged:2');
  await sleep(50);
  assert.deepEqual(settled(reports), [], 'forgery B settled the logout');
  assert.deepEqual(await seen(), [
    { origin: env.upstream, fromFrame: false, state },
    { origin: env.upstream, fromFrame: false, state },
  ]);
  t.note('forged B: right state from a window on another origin');
  await t.shot(forger, 'another-origin-forging');
  await forger.close();

  // C. Another origin in the right window: the iframe is sent to forge.html.
  await continueRoute.fulfill({ status: 303, headers: { location: t.forgeUrl(state) } });
  const frame = await frameElement.contentFrame();
  await frame.waitForFunction(() => document.title === 'forged:2');
  assert.equal(new URL(frame.url()).origin, env.upstream);
  await sleep(50);
  assert.deepEqual(settled(reports), [], 'forgery C settled the logout');
  assert.deepEqual(await seen(), [
    { origin: env.upstream, fromFrame: true, state },
    { origin: env.upstream, fromFrame: true, state },
  ]);
  t.note('forged C: right state from the iframe, on another origin');

  // D. Same origin, right state, another window: a second iframe of the
  // app page posts what the real /logout/done would.
  await page.evaluate((s) => {
    const other = document.createElement('iframe');
    other.title = 'Another frame';
    document.body.append(other);
    other.contentWindow.Function('s', 'o', "parent.postMessage({type: 'portcullis:logout', state: s, outcome: 'done'}, o)")(s, location.origin);
  }, state);
  await sleep(50);
  assert.deepEqual(settled(reports), [], 'forgery D settled the logout');
  assert.deepEqual(await seen(), [{ origin: env.gateway, fromFrame: false, state }]);
  t.note('forged D: right state on the right origin, from another frame');

  await sleep(500);
  assert.deepEqual(settled(reports), [], 'no forged message settled the logout');
  assert.ok(await page.$('iframe[title="Signing out"]'), 'the iframe is still there');
  assert.equal(page.url(), `${env.gateway}/app.html`, 'the app has not moved');
  assert.deepEqual(navigations, []);
  await t.shot(page, 'app-still-waiting');

  // The iframe goes where it should have: the IdP, then /logout/done.
  await frame.evaluate((url) => { window.location.replace(url); }, continueUrl);
  const resolved = await report(reports, 'resolved');
  await page.waitForURL(`${env.gateway}${FINAL}`);
  await t.shot(page, 'final-destination');
  assert.deepEqual(resolved.data, {
    gateway: true, idp: 'unknown', mode: 'silent', returnTo: FINAL,
  });
  assert.equal(settled(reports).filter((r) => r.kind === 'event').length, 1, 'one event');
  assert.deepEqual(navigations.map((n) => n.url), [`${env.gateway}${FINAL}`]);
  assert.equal(await t.sessionStatus(), 401);
  await t.expectLoginForm(page);
  await t.shot(page, 'idp-asks-to-log-in-again');
});
