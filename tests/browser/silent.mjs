// Silent logout: the IdP leg runs in a hidden iframe and the app page never
// navigates away until the final destination. Then the same through the
// gateway's own silent page (a form POST to /logout?mode=silent).

import {
  assert, env, report, scenario, until,
} from './lib.mjs';

const FINAL = '/public/signed-out';

await scenario('silent', async (t) => {
  const page = await t.context.newPage();
  const reports = t.reports(page);
  const requests = t.requests(page);

  // 1. Through logout.js.
  await t.login(page, 'alice');
  const navigations = t.navigations(page);
  const clickedAt = Date.now();
  const firstRequest = requests.length;
  await page.click('button[data-mode="silent"]');
  const resolved = await report(reports, 'resolved');
  await page.waitForURL(`${env.gateway}${FINAL}`);
  await t.shot(page, 'final-destination');

  assert.deepEqual(resolved.data, {
    gateway: true, idp: 'unknown', mode: 'silent', returnTo: FINAL,
  });
  const event = reports.find((r) => r.kind === 'event');
  assert.ok(event, 'logout.js fired the portcullis:logout event');
  assert.deepEqual(event.data, resolved.data, 'the event carries the outcome');
  assert.ok(event.at <= resolved.at, 'the event fires before the Promise settles');
  assert.deepEqual(
    navigations.map((n) => n.url),
    [`${env.gateway}${FINAL}`],
    'the only top-level navigation is to the final destination',
  );
  assert.ok(navigations[0].at - clickedAt < 4_000, 'no wait for the silent timeout');

  // The IdP leg really ran in the frame: end-session, its confirmation,
  // and the gateway's done page.
  const logoutRequests = requests.slice(firstRequest);
  const framed = logoutRequests.filter((r) => r.where === 'frame').map((r) => `${r.method} ${r.url}`);
  t.note(`frame requests:\n  ${framed.join('\n  ')}`);
  assert.ok(framed.some((r) => r.startsWith(`GET ${env.issuer}/session/end?`)), 'the frame visited the IdP');
  assert.ok(framed.some((r) => r.startsWith(`POST ${env.issuer}/session/end/confirm`)), 'the IdP page confirmed inside the frame');
  assert.ok(framed.some((r) => r.startsWith(`GET ${env.gateway}/.portcullis/logout/done?`)), 'the frame ended on /logout/done');
  assert.ok(!logoutRequests.some((r) => r.where === 'top' && r.url.startsWith(env.issuer)), 'the top level never went to the IdP');

  assert.equal(await t.sessionStatus(), 401, 'the gateway session is gone');
  await t.expectLoginForm(page);
  await t.shot(page, 'idp-asks-to-log-in-again');

  // 2. Through the gateway's silent page, as an app without logout.js
  // would use it: a same-origin form POST.
  await page.fill('input[name="login"]', 'alice');
  await page.fill('input[name="password"]', 'any-password');
  await Promise.all([
    page.waitForURL(`${env.gateway}/app.html`, { waitUntil: 'domcontentloaded' }),
    page.click('button[type="submit"]'),
  ]);
  assert.equal(await t.sessionStatus(), 200);
  await t.shot(page, 'app-signed-in-again');
  const before = navigations.length;
  await page.evaluate(() => {
    const form = document.createElement('form');
    form.method = 'post';
    form.action = '/logout?mode=silent&return_to=/public/after-silent-page';
    document.body.append(form);
    form.submit();
  });
  await page.waitForURL(`${env.gateway}/public/after-silent-page`, { timeout: 10_000 });
  await t.shot(page, 'gateway-silent-page-final-destination');
  const pageNavigations = navigations.slice(before).map((n) => new URL(n.url));
  assert.deepEqual(
    pageNavigations.map((u) => u.pathname),
    ['/logout', '/public/after-silent-page'],
    'the gateway\'s silent page, then the final destination',
  );
  assert.ok(pageNavigations.every((u) => u.origin === env.gateway), 'the top level never went to the IdP');
  await until(async () => (await t.sessionStatus()) === 401, 2_000, 'the session to end');
  await t.expectLoginForm(page);
  await t.shot(page, 'idp-asks-to-log-in-again-2');
});
