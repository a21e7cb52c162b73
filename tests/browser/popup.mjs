// Popup logout: the click handler opens a popup that runs the IdP leg and
// closes itself; the app page stays put until the final destination.
// Before that, forged announcements (the right state from the popup window
// on another origin, a wrong state on the BroadcastChannel) change nothing.
// Then the same through the gateway's own popup page.

import {
  assert, env, report, scenario, sleep, until,
} from './lib.mjs';

const FINAL = '/public/signed-out';

await scenario('popup', async (t) => {
  const page = await t.context.newPage();
  const reports = t.reports(page);
  const requests = t.requests(page);

  // 1. Through logout.js.
  await t.login(page, 'bob');
  const navigations = t.navigations(page);
  const firstRequest = requests.length;
  // The popup's first request is sent to another origin's page instead,
  // which posts the right state to its opener: the right window, the wrong
  // origin. Only the gateway's /logout/done may announce the end.
  const detour = await t.holdNext(`${env.gateway}/.portcullis/logout/continue`);
  const [popup] = await Promise.all([
    page.waitForEvent('popup'),
    page.click('button[data-mode="popup"]'),
  ]);
  const popupNavigations = [];
  popup.on('framenavigated', (f) => { if (f === popup.mainFrame()) popupNavigations.push(f.url()); });
  const closed = new Promise((resolve) => { popup.on('close', resolve); });
  const continueRoute = await detour.route;
  const continueUrl = continueRoute.request().url();
  const state = new URL(continueUrl).searchParams.get('state');
  assert.ok(state && state.length >= 43, 'a state of at least 256 bits');
  await continueRoute.fulfill({ status: 303, headers: { location: t.forgeUrl(state) } });
  await popup.waitForFunction(() => document.title === 'forged:2');
  t.note('forged: the right state from the popup window, on another origin');
  await t.shot(popup, 'popup-on-another-origin-forging');

  // Same origin, wrong state, on the channel logout.js also listens to.
  await page.evaluate(() => {
    const c = new BroadcastChannel('portcullis-logout');
    c.postMessage({ type: 'portcullis:logout', state: 'not-the-state', outcome: 'done' });
    c.close();
  });
  t.note('forged: a wrong state on the BroadcastChannel');
  await sleep(500);
  assert.ok(!reports.some((r) => r.kind === 'resolved' || r.kind === 'event' || r.kind === 'rejected'),
    'forged messages settle nothing');
  assert.ok(!popup.isClosed(), 'the popup is still open');
  assert.equal(page.url(), `${env.gateway}/app.html`, 'the app has not moved');
  await t.shot(page, 'app-still-waiting');

  // Now the popup goes where it should have: the IdP, then /logout/done.
  await popup.evaluate((url) => { location.replace(url); }, continueUrl);
  const resolved = await report(reports, 'resolved');
  await until(() => popup.isClosed(), 5_000, 'the popup to close');
  await closed;
  await page.waitForURL(`${env.gateway}${FINAL}`);
  await t.shot(page, 'final-destination');

  assert.deepEqual(resolved.data, {
    gateway: true, idp: 'unknown', mode: 'popup', returnTo: FINAL,
  });
  const event = reports.find((r) => r.kind === 'event');
  assert.deepEqual(event?.data, resolved.data, 'the portcullis:logout event carries the outcome');
  assert.deepEqual(navigations.map((n) => n.url), [`${env.gateway}${FINAL}`],
    'the only top-level navigation of the app is to the final destination');
  t.note(`popup navigations:\n  ${popupNavigations.join('\n  ')}`);
  assert.equal(new URL(popupNavigations.at(-1)).pathname, '/.portcullis/logout/done',
    'the popup ended on the gateway\'s done page');
  const popupRequests = requests.slice(firstRequest).filter((r) => r.page === 'popup').map((r) => `${r.method} ${r.url}`);
  assert.ok(popupRequests.some((r) => r.startsWith(`POST ${env.issuer}/session/end/confirm`)), 'the IdP confirmed in the popup');

  assert.equal(await t.sessionStatus(), 401, 'the gateway session is gone');
  await t.expectLoginForm(page);
  await t.shot(page, 'idp-asks-to-log-in-again');

  // 2. Through the gateway's popup page (a form POST to
  // /logout?mode=popup): the user clicks "Finish signing out".
  await page.fill('input[name="login"]', 'bob');
  await page.fill('input[name="password"]', 'any-password');
  await Promise.all([
    page.waitForURL(`${env.gateway}/app.html`, { waitUntil: 'domcontentloaded' }),
    page.click('button[type="submit"]'),
  ]);
  assert.equal(await t.sessionStatus(), 200);
  await page.evaluate(() => {
    const form = document.createElement('form');
    form.method = 'post';
    form.action = '/logout?mode=popup&return_to=/public/after-popup-page';
    document.body.append(form);
    form.submit();
  });
  await page.waitForSelector('#portcullis-continue');
  assert.equal(new URL(page.url()).pathname, '/logout');
  assert.equal(await t.sessionStatus(), 401, 'the gateway session ended before the IdP leg');
  await t.shot(page, 'gateway-popup-page');
  const [popup2] = await Promise.all([
    page.waitForEvent('popup'),
    page.click('#portcullis-continue'),
  ]);
  await until(() => popup2.isClosed(), 10_000, 'the second popup to close');
  await page.waitForURL(`${env.gateway}/public/after-popup-page`, { timeout: 10_000 });
  await t.shot(page, 'gateway-popup-page-final-destination');
  await t.expectLoginForm(page);
  await t.shot(page, 'idp-asks-to-log-in-again-2');
});
