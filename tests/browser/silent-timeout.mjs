// Silent logout when the IdP refuses to be framed (the test IdP sends
// X-Frame-Options: DENY and frame-ancestors 'none' on its end-session
// pages): no announcement arrives, so after silent_timeout (2 s here)
// logout.js sends the whole window to the IdP, which ends its session and
// comes back to the final destination.

import {
  assert, env, report, scenario,
} from './lib.mjs';

const FINAL = '/public/signed-out';
const SILENT_TIMEOUT_MS = 2_000;

await scenario('silent-timeout', async (t) => {
  const page = await t.context.newPage();
  const reports = t.reports(page);
  const requests = t.requests(page);

  await t.login(page, 'alice');
  const navigations = t.navigations(page);
  const firstRequest = requests.length;
  const refused = page.waitForResponse((r) => r.url().startsWith(`${env.issuer}/session/end?`)
    && r.request().frame() !== page.mainFrame());
  await page.click('button[data-mode="silent"]');
  const click = await report(reports, 'click');

  // The frame reached the IdP, which refused to be framed.
  const framedResponse = await refused;
  assert.equal(framedResponse.headers()['x-frame-options'], 'DENY');
  await t.shot(page, 'waiting-for-the-framed-idp');
  assert.equal(page.url(), `${env.gateway}/app.html`, 'still on the app while waiting');

  const rejected = await report(reports, 'rejected', SILENT_TIMEOUT_MS + 5_000);
  assert.match(rejected.data, /timed out/);
  await page.waitForURL(`${env.gateway}${FINAL}`, { timeout: 10_000 });
  await t.shot(page, 'final-destination-after-the-fallback');

  const event = reports.find((r) => r.kind === 'event');
  assert.deepEqual(event?.data, {
    gateway: true, idp: 'unknown', mode: 'silent', fallback: 'redirect',
  }, 'the event says the silent attempt fell back to a redirect');
  assert.ok(!reports.some((r) => r.kind === 'resolved'), 'the Promise does not resolve');

  // The top level left for the IdP only after the timeout, and came back.
  const urls = navigations.map((n) => n.url);
  t.note(`top-level navigations:\n  ${urls.join('\n  ')}`);
  assert.equal(navigations.length, 2, 'the IdP, then straight to the destination');
  assert.ok(navigations[0].url.startsWith(`${env.issuer}/session/end?`), 'first the IdP');
  assert.equal(urls.at(-1), `${env.gateway}${FINAL}`);
  const waited = navigations[0].at - click.at;
  assert.ok(waited >= SILENT_TIMEOUT_MS - 100, `left the app only after silent_timeout (${waited} ms)`);
  const topLevel = requests.slice(firstRequest).filter((r) => r.where === 'top').map((r) => `${r.method} ${r.url}`);
  assert.ok(topLevel.some((r) => r.startsWith(`POST ${env.issuer}/session/end/confirm`)), 'the IdP confirmed at the top level');

  assert.equal(await t.sessionStatus(), 401, 'the gateway session is gone');
  await t.expectLoginForm(page);
  await t.shot(page, 'idp-asks-to-log-in-again');
});
