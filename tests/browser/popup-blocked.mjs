// Popup logout when the popup is blocked: a popup blocker makes
// window.open return null, which is what this page's window.open is made
// to do here (headless Chromium under Playwright opens every popup).
// logout.js falls back to a redirect through the IdP.

import {
  assert, env, report, scenario,
} from './lib.mjs';

const FINAL = '/public/signed-out';

await scenario('popup-blocked', async (t) => {
  const page = await t.context.newPage();
  const reports = t.reports(page);
  await t.login(page, 'bob');
  const navigations = t.navigations(page);
  let popups = 0;
  t.context.on('page', () => { popups += 1; });
  await page.evaluate(() => { window.open = function blocked() { return null; }; });
  await page.click('button[data-mode="popup"]');
  const resolved = await report(reports, 'resolved');
  await page.waitForURL(`${env.gateway}${FINAL}`, { timeout: 10_000 });
  await t.shot(page, 'final-destination');
  assert.equal(popups, 0, 'no popup opened');
  assert.deepEqual(resolved.data, {
    gateway: true, idp: 'unknown', mode: 'redirect', returnTo: FINAL,
  }, 'the outcome says it became a redirect');
  const urls = navigations.map((n) => n.url);
  t.note(`top-level navigations:\n  ${urls.join('\n  ')}`);
  assert.ok(urls[0].startsWith(`${env.issuer}/session/end?`), 'through the IdP at the top level');
  assert.equal(urls.at(-1), `${env.gateway}${FINAL}`);
  assert.equal(await t.sessionStatus(), 401);
  await t.expectLoginForm(page);
  await t.shot(page, 'idp-asks-to-log-in-again');
});
