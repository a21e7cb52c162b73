// Login with `cookie_samesite = "strict"` when the IdP is on another site
// (issuer http://localhost:PORT, gateway http://127.0.0.1:PORT). The IdP's
// 303 to the callback is cross-site, so a Strict cookie set there is not
// sent on a redirect that continues the chain: the callback must hand the
// last step to a page of its own, whose navigation is same-site. With a 303
// instead the app page is asked for without the session and the browser
// goes back to the IdP, which signs it straight in again, in a loop.

import { assert, env, scenario } from './lib.mjs';

const APP = '/app.html';

await scenario('strict-cross-site', async (t) => {
  const gateway = new URL(env.gateway);
  const issuer = new URL(env.issuer);
  assert.notEqual(issuer.hostname, gateway.hostname, 'the IdP is on another site');
  t.note(`gateway ${gateway.origin}, IdP ${issuer.origin}`);

  const page = await t.context.newPage();
  const navigations = t.navigations(page);
  const requests = t.requests(page);
  await t.login(page, 'alice', APP);

  const cookie = (await t.context.cookies(env.gateway)).find((c) => c.name === 'portcullis');
  assert.ok(cookie, 'the session cookie is set');
  assert.equal(cookie.sameSite, 'Strict');

  // The hop page was shown, then the app page, and the IdP was asked to
  // authorize once: no second round trip.
  const committed = navigations.map((n) => new URL(n.url));
  const hop = committed.findIndex((u) => u.origin === gateway.origin && u.pathname === '/.portcullis/callback');
  assert.ok(hop >= 0, `the callback's page was committed: ${committed.join(' ')}`);
  assert.ok(
    committed.slice(hop + 1).some((u) => u.origin === gateway.origin && u.pathname === APP),
    'then the app page',
  );
  const authorizations = requests.filter((r) => {
    const u = new URL(r.url);
    return u.origin === issuer.origin && u.pathname === '/auth';
  });
  assert.equal(authorizations.length, 1, 'one trip to the authorization endpoint');

  // The app page's own same-site requests carry the session too.
  await page.reload({ waitUntil: 'domcontentloaded' });
  await page.waitForSelector('text=Test app behind Portcullis');
  assert.equal(new URL(page.url()).origin, gateway.origin, 'still on the app, not sent to the IdP');
  await t.shot(page, 'app-after-reload');
});
