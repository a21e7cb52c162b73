// Popup logout when the IdP's end-session page sends
// Cross-Origin-Opener-Policy: same-origin. The popup is then cut off from
// the app (to the app, the popup looks closed; the popup has no opener), so
// /logout/done's announcement arrives only on the BroadcastChannel. The
// app must still learn that logout finished and reach its destination.
// Then a popup the user closes before it finishes: after silent_timeout
// (4 s here) the app finishes the IdP leg with a top-level redirect.

import {
  assert, env, scenario, sleep, until,
} from './lib.mjs';

const FINAL = '/public/signed-out';
const SILENT_TIMEOUT_MS = 4_000;

await scenario('popup-coop', async (t) => {
  const page = await t.context.newPage();
  const reports = t.reports(page);
  await t.login(page, 'bob');
  const navigations = t.navigations(page);
  const popups = [];
  t.context.on('page', (p) => { popups.push(p); });
  // The IdP takes a while (as a user reading a confirmation page would):
  // long enough for logout.js to notice the opener link is gone.
  const confirm = await t.holdNext(`${env.issuer}/session/end/confirm`);
  await page.click('button[data-mode="popup"]');
  const confirmRoute = await confirm.route;
  await sleep(800);
  await confirmRoute.continue();
  const outcome = await until(
    () => reports.find((r) => r.kind === 'resolved' || r.kind === 'rejected'),
    15_000,
    'logout.js to settle',
  );
  t.note(`settled: ${outcome.kind} ${JSON.stringify(outcome.data)}`);
  await page.waitForURL(`${env.gateway}${FINAL}`, { timeout: 10_000 });
  await t.shot(page, 'final-destination');
  assert.equal(outcome.kind, 'resolved', 'the announcement on the BroadcastChannel counts');
  assert.deepEqual(outcome.data, {
    gateway: true, idp: 'unknown', mode: 'popup', returnTo: FINAL,
  });
  assert.deepEqual(navigations.map((n) => n.url), [`${env.gateway}${FINAL}`],
    'the only top-level navigation of the app is to the final destination');
  await until(() => popups.every((p) => p.isClosed()), 5_000, 'the popup to close');
  assert.equal(await t.sessionStatus(), 401);
  await t.expectLoginForm(page);
  await t.shot(page, 'idp-asks-to-log-in-again');

  // The user closes the popup before it gets anywhere.
  await page.fill('input[name="login"]', 'bob');
  await page.fill('input[name="password"]', 'any-password');
  await Promise.all([
    page.waitForURL(`${env.gateway}/app.html`, { waitUntil: 'domcontentloaded' }),
    page.click('button[type="submit"]'),
  ]);
  reports.splice(0);
  const before = navigations.length;
  const start = await t.holdNext(`${env.gateway}/.portcullis/logout/continue`);
  const [popup] = await Promise.all([
    page.waitForEvent('popup'),
    page.click('button[data-mode="popup"]'),
  ]);
  await start.route;
  await popup.close();
  const closedAt = Date.now();
  const rejected = await until(() => reports.find((r) => r.kind === 'rejected'), SILENT_TIMEOUT_MS + 5_000, 'the Promise to reject');
  assert.match(rejected.data, /closed before it finished/);
  assert.ok(rejected.at - closedAt >= SILENT_TIMEOUT_MS - 400, `waited silent_timeout (${rejected.at - closedAt} ms)`);
  assert.deepEqual(reports.find((r) => r.kind === 'event')?.data, {
    gateway: true, idp: 'unknown', mode: 'popup', fallback: 'redirect',
  });
  await page.waitForURL(`${env.gateway}${FINAL}`, { timeout: 10_000 });
  await t.shot(page, 'closed-popup-final-destination-after-the-fallback');
  const urls = navigations.slice(before).map((n) => n.url);
  t.note(`top-level navigations:\n  ${urls.join('\n  ')}`);
  assert.equal(urls.length, 2, 'the IdP, then straight to the destination');
  assert.ok(urls[0].startsWith(`${env.issuer}/session/end?`), 'the IdP leg at the top level');
  assert.equal(urls.at(-1), `${env.gateway}${FINAL}`);
  assert.equal(await t.sessionStatus(), 401);
  await t.expectLoginForm(page);
  await t.shot(page, 'idp-asks-to-log-in-again-2');
});
