// How an app behind Portcullis checks who the user is (npm `jose`).
import { createRemoteJWKSet, jwtVerify } from 'jose';

const ORIGIN = process.env.PORTCULLIS_ORIGIN ?? 'https://app.example.com'; // the public URL
const AUDIENCE = process.env.APP_ORIGIN ?? 'http://127.0.0.1:3000'; // this app, as the route's upstream names it
const jwks = createRemoteJWKSet(new URL('/.portcullis/jwks.json', ORIGIN));

export async function whoIs(headers, options = {}) {
  const token = headers['x-portcullis-jwt-assertion'];
  const { payload } = await jwtVerify(token, jwks, {
    issuer: ORIGIN, audience: AUDIENCE, algorithms: ['ES256'], ...options,
  });
  return payload; // { sub, email, email_verified, groups, sid, iat, exp }
}
