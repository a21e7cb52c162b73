// oidc-provider 6.31.1 for Portcullis's front-channel logout tests.
//
// The 7.x+ line removed Front-Channel Logout; 6.31.1 still renders the
// hidden iframes (`frontchannel_logout_uri?iss=…&sid=…`) on its logout
// page. TEST FIXTURE ONLY: development signing keys, in-memory sessions, a
// login form that accepts any user. Its back-channel tokens follow an old
// draft (no `exp`, no `typ`): do not use it for back-channel tests.
//
// Usage: node provider.js config.json
//   { "port": 0, "host": "127.0.0.1", "clients": [ ...client metadata... ] }
// Prints exactly one line to stdout when listening:
//   READY http://127.0.0.1:PORT

'use strict';

const { readFileSync } = require('fs');
const { createServer } = require('http');

const { Provider } = require('oidc-provider');

function loadSettings() {
  const file = process.argv[2];
  const fromFile = file ? JSON.parse(readFileSync(file, 'utf8')) : {};
  return {
    port: fromFile.port || 0,
    host: fromFile.host || '127.0.0.1',
    clients: fromFile.clients || [],
  };
}

async function findAccount(_ctx, id) {
  return {
    accountId: id,
    async claims() {
      return {
        sub: id, email: `${id}@example.com`, email_verified: true, preferred_username: id,
      };
    },
  };
}

// The usual "Yes, sign me out" confirmation; tests POST it with logout=yes.
async function logoutSource(ctx, form) {
  ctx.body = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Logout Request</title></head>
<body>
${form}
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
</body></html>`;
}

async function main() {
  const settings = loadSettings();
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
  const issuer = `http://${settings.host}:${port}`;

  const provider = new Provider(issuer, {
    clients: settings.clients,
    findAccount,
    scopes: ['openid', 'offline_access', 'email', 'profile'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username'],
    },
    pkce: { methods: ['S256'], required: () => true },
    features: {
      devInteractions: { enabled: true },
      frontchannelLogout: { enabled: true, ack: 'draft-04' },
      rpInitiatedLogout: { enabled: true, logoutSource },
    },
    cookies: { keys: ['portcullis-test-idp-legacy-cookie-key'] },
  });
  provider.on('server_error', (_ctx, err) => {
    process.stderr.write(`server_error: ${err.stack}\n`);
  });
  handler = provider.callback;
  process.stdout.write(`READY ${issuer}\n`);

  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
