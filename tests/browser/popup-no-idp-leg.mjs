// Popup logout with an IdP that publishes no end_session_endpoint: the
// gateway ends its session and answers without a continue_url, so there is
// no IdP leg for the popup (opened in the click handler, before the answer)
// to show. The popup closes at once without going anywhere, the Promise
// resolves, and the app goes to the final destination. The IdP session is
// left alive (nothing could end it): the next visit signs straight back in.

import {
  assert, env, report, scenario, until,
} from './lib.mjs';

const FINAL = '/public/signed-out';

await scenario('popup-no-idp-leg', async (t) => {
  const page = await t.context.newPage();
  const reports = t.reports(page);
  const requests = t.requests(page);
  await t.login(page, 'alice');
  const navigations = t.navigations(page);
  const firstRequest = requests.length;

  const [popup] = await Promise.all([
    page.waitForEvent('popup'),
    page.click('button[data-mode="popup"]'),
  ]);
  const popupNavigations = [];
  popup.on('framenavigated', (f) => { if (f === popup.mainFrame()) popupNavigations.push(f.url()); });
  t.note('popup opened by the click');

  const resolved = await report(reports, 'resolved');
  await until(() => popup.isClosed(), 5_000, 'the popup to close');
  t.note('popup closed');
  await page.waitForURL(`${env.gateway}${FINAL}`, { timeout: 10_000 });
  await t.shot(page, 'final-destination');

  assert.deepEqual(resolved.data, {
    gateway: true, idp: 'kept', mode: 'popup', returnTo: FINAL,
  });
  const event = reports.find((r) => r.kind === 'event');
  assert.deepEqual(event?.data, resolved.data, 'the portcullis:logout event carries the outcome');
  assert.ok(!reports.some((r) => r.kind === 'rejected'), 'the Promise did not reject');
  assert.deepEqual(navigations.map((n) => n.url), [`${env.gateway}${FINAL}`],
    'the only top-level navigation of the app is to the final destination');
  assert.ok(popupNavigations.every((u) => u === 'about:blank'),
    `the popup went nowhere: ${popupNavigations.join(', ')}`);
  const toIdp = requests.slice(firstRequest).filter((r) => r.url.startsWith(env.issuer));
  assert.deepEqual(toIdp.map((r) => r.url), [], 'nothing asked the IdP to end its session');
  assert.equal(await t.sessionStatus(), 401, 'the gateway session is gone');

  // The IdP session is not: the app page comes back without a login form.
  await page.goto(`${env.gateway}/app.html`);
  await page.waitForSelector('text=Test app behind Portcullis');
  assert.equal(await t.sessionStatus(), 200, 'signed straight back in through the IdP session');
  await t.shot(page, 'signed-back-in-without-a-form');
});
