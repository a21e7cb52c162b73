// Test driver for verify.mjs (tests/forward_auth.rs): verifies the token in
// argv[2]; `--at <unix seconds>` checks it as of another time. Prints the
// claims as JSON and exits 0, or prints the error and exits 1.
import { whoIs } from './verify.mjs';

const [token, flag, at] = process.argv.slice(2);
const options = flag === '--at' ? { currentDate: new Date(Number(at) * 1000) } : {};
try {
  const claims = await whoIs({ 'x-portcullis-jwt-assertion': token }, options);
  console.log(JSON.stringify(claims));
} catch (err) {
  console.log(`REJECTED ${err.code ?? ''} ${err.message}`);
  process.exit(1);
}
