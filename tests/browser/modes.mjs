// logout.js's other two modes from the app page's buttons: `local` ends
// only the gateway session (the IdP session stays, so the next visit signs
// straight back in), `redirect` sends the whole window through the IdP.
// Then the confirmation page that a cross-site link to /logout gets: its
// form posts to /logout, whose answer redirects to the IdP.

import {
  assert, env, report, scenario,
} from './lib.mjs';

const FINAL = '/public/signed-out';

await scenario('modes', async (t) => {
  const page = await t.context.newPage();
  const reports = t.reports(page);
  await t.login(page, 'alice');

  // local
  await page.click('button[data-mode="local"]');
  const local = await report(reports, 'resolved');
  await page.waitForURL(`${env.gateway}${FINAL}`);
  await t.shot(page, 'local-final-destination');
  assert.deepEqual(local.data, {
    gateway: true, idp: 'kept', mode: 'local', returnTo: FINAL,
  });
  assert.deepEqual(reports.find((r) => r.kind === 'event')?.data, local.data);
  assert.equal(await t.sessionStatus(), 401, 'the gateway session is gone');
  // The IdP session is not: the app page comes back without a login form.
  await page.goto(`${env.gateway}/app.html`);
  await page.waitForSelector('text=Test app behind Portcullis');
  assert.equal(await t.sessionStatus(), 200, 'signed straight back in through the IdP session');
  await t.shot(page, 'signed-back-in-without-a-form');

  // redirect
  reports.splice(0);
  const navigations = t.navigations(page);
  await page.click('button[data-mode="redirect"]');
  await page.waitForURL(`${env.gateway}${FINAL}`, { timeout: 10_000 });
  await t.shot(page, 'redirect-final-destination');
  const event = await report(reports, 'event');
  assert.deepEqual(event.data, {
    gateway: true, idp: 'unknown', mode: 'redirect', returnTo: FINAL,
  });
  const resolved = await report(reports, 'resolved');
  assert.deepEqual(resolved.data, event.data);
  const urls = navigations.map((n) => n.url);
  t.note(`top-level navigations:\n  ${urls.join('\n  ')}`);
  assert.ok(urls[0].startsWith(`${env.issuer}/session/end?`), 'through the IdP');
  assert.equal(urls.at(-1), `${env.gateway}${FINAL}`);
  assert.equal(await t.sessionStatus(), 401);
  await t.expectLoginForm(page);
  await t.shot(page, 'idp-asks-to-log-in-again');

  // The confirmation page: a link from another site (the test upstream's
  // own origin) to /logout does not log out by itself.
  await page.fill('input[name="login"]', 'alice');
  await page.fill('input[name="password"]', 'any-password');
  await Promise.all([
    page.waitForURL(`${env.gateway}/app.html`, { waitUntil: 'domcontentloaded' }),
    page.click('button[type="submit"]'),
  ]);
  await page.goto(`${env.upstream}/public/elsewhere`);
  await page.evaluate((url) => { window.location.href = url; }, `${env.gateway}/logout?return_to=${encodeURIComponent(FINAL)}`);
  await page.waitForSelector('text=Do you want to sign out?');
  assert.equal(await t.sessionStatus(), 200, 'not logged out by a cross-site link');
  await t.shot(page, 'confirmation-page');
  const before = navigations.length;
  await page.click('button[type="submit"]');
  await page.waitForURL(`${env.gateway}${FINAL}`, { timeout: 10_000 });
  const nav2 = navigations.slice(before);
  t.note(`top-level navigations:\n  ${nav2.map((n) => n.url).join('\n  ')}`);
  assert.ok(nav2.some((n) => n.url.startsWith(`${env.issuer}/session/end?`)), 'through the IdP');
  await t.shot(page, 'confirmed-final-destination');
  assert.equal(await t.sessionStatus(), 401);
  await t.expectLoginForm(page);
  await t.shot(page, 'idp-asks-to-log-in-again-after-confirming');
});
