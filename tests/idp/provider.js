// A real OpenID Provider for Portcullis's integration tests.
//
// This is `oidc-provider` (OpenID Certified), configured so that a test can
// script a whole login over HTTP. It is a TEST FIXTURE: development signing
// keys, in-memory sessions, a login form that accepts any user, and
// back-channel logout allowed to loopback addresses. Never run it for real.
//
// Usage:
//   node provider.js [config.json]
//
// The optional JSON file (all keys optional):
//   {
//     "port": 0,                    // 0 = any free port (the default)
//     "host": "127.0.0.1",
//     "issuer": "http://127.0.0.1:PORT",   // default: derived from host/port
//     "issuerHost": "localhost",    // issuer http://<issuerHost>:<port> while listening on host
//                                   //   (an IdP on another site than a gateway on 127.0.0.1)
//     "clients": [ { oidc-provider client metadata ... } ],
//     "accessTokenTtl": 3600,       // seconds
//     "idTokenTtl": 3600,
//     "refreshTokenTtl": 1209600,
//     "autoSubmitLogout": false,    // end-session page submits itself (browser tests)
//     "logRequests": false,         // one "REQ <method> <path>" line per request on stderr
//     "freshSigningKey": false,     // sign with a new random RSA key (key rotation tests)
//     "refuseFraming": false,       // end-session pages refuse to be framed (X-Frame-Options: DENY
//                                   //   and CSP frame-ancestors 'none'), as many real IdPs do
//     "isolateOpener": false,       // end-session pages send Cross-Origin-Opener-Policy: same-origin,
//                                   //   which cuts a popup off from its opener
//     "noEndSession": false,        // discovery omits end_session_endpoint, like IdPs without
//                                   //   RP-initiated logout (the endpoint itself still answers)
//     "logTokens": false,           // on stderr: "TOKEN refresh_token <value>" per token response
//                                   //   with one, "REVOKE <token_type_hint> <token>" per revocation
//                                   //   request, in order (revocation tests)
//     "jwks": { "keys": [ ... ] }   // private signing keys; default: dev keystore
//   }
// Environment variables override the file: IDP_PORT, IDP_HOST, IDP_ISSUER,
// IDP_ISSUER_HOST, IDP_ACCESS_TOKEN_TTL, IDP_ID_TOKEN_TTL, IDP_REFRESH_TOKEN_TTL,
// IDP_AUTO_SUBMIT_LOGOUT=1, IDP_LOG_REQUESTS=1, IDP_FRESH_SIGNING_KEY=1,
// IDP_REFUSE_FRAMING=1, IDP_ISOLATE_OPENER=1, IDP_NO_END_SESSION=1,
// IDP_LOG_TOKENS=1, IDP_CLIENTS (a JSON array).
//
// When it listens it prints exactly one line to stdout:
//   READY http://127.0.0.1:PORT
// (the issuer). Everything else goes to stderr.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import process from 'node:process';

import Provider from 'oidc-provider';

// ---------------------------------------------------------------- settings

function loadSettings() {
  const file = process.argv[2];
  const fromFile = file ? JSON.parse(readFileSync(file, 'utf8')) : {};
  const env = process.env;
  const num = (v) => (v === undefined || v === '' ? undefined : Number(v));

  return {
    port: num(env.IDP_PORT) ?? fromFile.port ?? 0,
    host: env.IDP_HOST || fromFile.host || '127.0.0.1',
    issuer: env.IDP_ISSUER || fromFile.issuer,
    issuerHost: env.IDP_ISSUER_HOST || fromFile.issuerHost,
    clients: env.IDP_CLIENTS ? JSON.parse(env.IDP_CLIENTS) : (fromFile.clients ?? []),
    accessTokenTtl: num(env.IDP_ACCESS_TOKEN_TTL) ?? fromFile.accessTokenTtl ?? 3600,
    idTokenTtl: num(env.IDP_ID_TOKEN_TTL) ?? fromFile.idTokenTtl ?? 3600,
    refreshTokenTtl: num(env.IDP_REFRESH_TOKEN_TTL) ?? fromFile.refreshTokenTtl ?? 14 * 24 * 3600,
    autoSubmitLogout: env.IDP_AUTO_SUBMIT_LOGOUT
      ? env.IDP_AUTO_SUBMIT_LOGOUT === '1' || env.IDP_AUTO_SUBMIT_LOGOUT === 'true'
      : Boolean(fromFile.autoSubmitLogout),
    logRequests: env.IDP_LOG_REQUESTS
      ? env.IDP_LOG_REQUESTS === '1' || env.IDP_LOG_REQUESTS === 'true'
      : Boolean(fromFile.logRequests),
    freshSigningKey: env.IDP_FRESH_SIGNING_KEY
      ? env.IDP_FRESH_SIGNING_KEY === '1' || env.IDP_FRESH_SIGNING_KEY === 'true'
      : Boolean(fromFile.freshSigningKey),
    refuseFraming: env.IDP_REFUSE_FRAMING
      ? env.IDP_REFUSE_FRAMING === '1' || env.IDP_REFUSE_FRAMING === 'true'
      : Boolean(fromFile.refuseFraming),
    isolateOpener: env.IDP_ISOLATE_OPENER
      ? env.IDP_ISOLATE_OPENER === '1' || env.IDP_ISOLATE_OPENER === 'true'
      : Boolean(fromFile.isolateOpener),
    noEndSession: env.IDP_NO_END_SESSION
      ? env.IDP_NO_END_SESSION === '1' || env.IDP_NO_END_SESSION === 'true'
      : Boolean(fromFile.noEndSession),
    logTokens: env.IDP_LOG_TOKENS
      ? env.IDP_LOG_TOKENS === '1' || env.IDP_LOG_TOKENS === 'true'
      : Boolean(fromFile.logTokens),
    jwks: fromFile.jwks,
  };
}

// A new RS256 signing key with a random kid: an IdP restarted with it
// looks like one that rotated its keys.
function freshJwks() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: `fresh-${randomUUID()}`, use: 'sig', alg: 'RS256' }] };
}

// ---------------------------------------------------------------- accounts

// Pre-defined users, by login name. Any other name logs in too, with no
// groups and an unverified `<name>@example.net` address, so tests can
// check the gateway's handling of unverified email.
const ACCOUNTS = {
  alice: {
    email: 'alice@example.com', email_verified: true, groups: ['admins', 'staff'], name: 'Alice Example',
  },
  bob: {
    email: 'bob@example.org', email_verified: true, groups: ['staff'], name: 'Bob Example',
  },
};

function claimsFor(login) {
  const known = ACCOUNTS[login];
  if (known) {
    return { ...known, preferred_username: login };
  }
  return {
    email: `${login}@example.net`, email_verified: false, groups: [], preferred_username: login, name: login,
  };
}

// `findAccount` is how oidc-provider turns an account id (the login name
// typed into the dev login form) into claims.
async function findAccount(_ctx, id) {
  return {
    accountId: id,
    async claims() {
      return { sub: id, ...claimsFor(id) };
    },
  };
}

// ---------------------------------------------------------------- pages

// The end-session confirmation page. By default it is the usual "Yes, sign
// me out" form (tests POST it themselves). With autoSubmitLogout it submits
// itself with logout=yes, so a real browser in an iframe or popup needs no
// click.
function makeLogoutSource(autoSubmit) {
  return async function logoutSource(ctx, form) {
    ctx.type = 'html';
    if (autoSubmit) {
      ctx.body = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Signing out</title></head>
<body>
${form}
<script>
  var f = document.getElementById('op.logoutForm');
  var i = document.createElement('input');
  i.type = 'hidden'; i.name = 'logout'; i.value = 'yes';
  f.appendChild(i);
  f.submit();
</script>
</body></html>`;
      return;
    }
    ctx.body = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Logout Request</title></head>
<body>
<h1>Do you want to sign-out from ${ctx.host}?</h1>
${form}
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>
</body></html>`;
  };
}

// ---------------------------------------------------------------- provider

function buildConfiguration(settings) {
  return {
    clients: settings.clients,
    ...(settings.jwks ? { jwks: settings.jwks } : {}),
    findAccount,

    // Scopes and the claims they release. `groups` is released both by its
    // own scope and by `profile`, so the gateway's default scopes
    // (openid email profile) already carry it.
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'groups'],
      groups: ['groups'],
    },
    // Put the scope claims into the ID token itself (not only /userinfo):
    // the gateway reads identity from the ID token.
    conformIdTokenClaims: false,

    // Skip the consent page: grant whatever OIDC scopes and claims the
    // client asks for, on top of any grant the session already has.
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const grantId = oidc.result?.consent?.grantId
        || oidc.session.grantIdFor(oidc.client.clientId);
      let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      if (!grant) {
        grant = new oidc.provider.Grant({
          accountId: oidc.session.accountId,
          clientId: oidc.client.clientId,
        });
      }
      const scopes = [...oidc.requestParamOIDCScopes].join(' ');
      if (scopes) {
        grant.addOIDCScope(scopes);
      }
      const claims = [...oidc.requestParamClaims];
      if (claims.length) {
        grant.addOIDCClaims(claims);
      }
      await grant.save();
      return grant;
    },

    // Refresh tokens for every client allowed the refresh_token grant, even
    // without offline_access (oidc-provider drops offline_access unless the
    // request also says prompt=consent).
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },

    // PKCE (S256) on every authorization code request.
    pkce: { required: () => true },

    ttl: {
      AccessToken: () => settings.accessTokenTtl,
      IdToken: () => settings.idTokenTtl,
      RefreshToken: () => settings.refreshTokenTtl,
      AuthorizationCode: () => 60,
      Grant: () => 14 * 24 * 3600,
      Interaction: () => 3600,
      Session: () => 14 * 24 * 3600,
    },

    features: {
      devInteractions: { enabled: true },
      backchannelLogout: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      userinfo: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: makeLogoutSource(settings.autoSubmitLogout),
      },
    },

    // oidc-provider (>= 9.7) refuses to call loopback addresses, which is
    // where test gateways listen. Drop its guarding dispatcher and use the
    // plain global fetch. TESTS ONLY: this disables an SSRF protection.
    fetch(url, options) {
      const opts = { ...options };
      delete opts.dispatcher;
      return globalThis.fetch(url, opts);
    },

    // Quieter dev cookies; they are not secrets here.
    cookies: { keys: ['portcullis-test-idp-cookie-key'] },
  };
}

async function main() {
  const settings = loadSettings();

  // Listen first, so that port 0 can be resolved to the real port before
  // the issuer URL (which embeds it) is fixed.
  let handler = (_req, res) => {
    res.statusCode = 503;
    res.end('starting');
  };
  const server = createServer((req, res) => handler(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(settings.port, settings.host, resolve);
  });
  const { port } = server.address();
  const issuer = settings.issuer || `http://${settings.issuerHost || settings.host}:${port}`;

  if (settings.freshSigningKey) {
    settings.jwks = freshJwks();
  }
  const provider = new Provider(issuer, buildConfiguration(settings));
  // Log back-channel delivery failures: they are what a test looks at first
  // when a logout did not reach the gateway.
  provider.on('backchannel.error', (_ctx, err, client) => {
    process.stderr.write(`backchannel.error ${client.clientId}: ${err.message}\n`);
  });
  provider.on('server_error', (_ctx, err) => {
    process.stderr.write(`server_error: ${err.stack}\n`);
  });

  // oidc-provider itself sends no framing headers, so its end-session page
  // loads in an iframe. With refuseFraming it behaves like IdPs that forbid
  // that (silent logout must then fall back to a top-level redirect).
  // With isolateOpener its end-session pages cut a popup off from the
  // window that opened it (COOP), as some IdPs' pages do.
  if (settings.refuseFraming || settings.isolateOpener) {
    provider.use(async (ctx, next) => {
      await next();
      if (ctx.path === '/session/end' || ctx.path.startsWith('/session/end/')) {
        if (settings.refuseFraming) {
          ctx.set('X-Frame-Options', 'DENY');
          ctx.set('Content-Security-Policy', "frame-ancestors 'none'");
        }
        if (settings.isolateOpener) {
          ctx.set('Cross-Origin-Opener-Policy', 'same-origin');
        }
      }
    });
  }

  // With noEndSession the provider looks like an IdP without RP-initiated
  // logout: discovery does not name an end-session endpoint, so a relying
  // party can only end its own session.
  if (settings.noEndSession) {
    provider.use(async (ctx, next) => {
      await next();
      if (ctx.path === '/.well-known/openid-configuration' && ctx.body && typeof ctx.body === 'object') {
        delete ctx.body.end_session_endpoint;
      }
    });
  }

  // With logTokens a test can see which refresh token the gateway holds
  // (to introspect it after logout) and in what order the gateway revoked
  // its tokens. Token values on stderr: a TEST FIXTURE only.
  if (settings.logTokens) {
    provider.use(async (ctx, next) => {
      await next();
      if (ctx.path === '/token' && ctx.body && typeof ctx.body.refresh_token === 'string') {
        process.stderr.write(`TOKEN refresh_token ${ctx.body.refresh_token}\n`);
      }
      if (ctx.path === '/token/revocation' && ctx.oidc?.params) {
        const { token_type_hint: hint, token } = ctx.oidc.params;
        process.stderr.write(`REVOKE ${hint ?? '-'} ${token ?? '-'}\n`);
      }
    });
  }

  // With logRequests, tests can count what the gateway asked for (e.g.
  // that forged key ids do not make it refetch the JWKS every time).
  const callback = provider.callback();
  handler = settings.logRequests
    ? (req, res) => {
      process.stderr.write(`REQ ${req.method} ${req.url.split('?')[0]}\n`);
      callback(req, res);
    }
    : callback;
  process.stdout.write(`READY ${issuer}\n`);

  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
