// A real OpenID Connect provider for the browser tests of single sign-on:
// the certified `oidc-provider` package, on loopback, with one confidential
// client (StreamSpace) and the users named in OIDC_TEST_USERS. Its
// development login form accepts any password for those users. Started by
// scripts/test-ui.sh; see docs/OIDC.md.
//
//   OIDC_PORT=9000 OIDC_REDIRECT_URI=http://127.0.0.1:8080/api/v1/auth/oidc/callback \
//   OIDC_CLIENT_SECRET=… OIDC_TEST_USERS='{"ada":["admins"],"ben":[]}' node provider.mjs
//
// Prints "oidc-provider ready at URL" when it listens.

import crypto from 'node:crypto';
import Provider from 'oidc-provider';

function mustEnv(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
}

const port = Number(mustEnv('OIDC_PORT'));
const issuer = `http://127.0.0.1:${port}`;
/** Username → groups. Anyone else cannot sign in. */
const users = JSON.parse(mustEnv('OIDC_TEST_USERS'));

// A fresh RS256 signing key per run: the tests trust only what the
// discovery document publishes.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `run-${Date.now()}`, alg: 'RS256', use: 'sig' };

const configuration = {
  clients: [
    {
      client_id: mustEnv('OIDC_CLIENT_ID'),
      client_secret: mustEnv('OIDC_CLIENT_SECRET'),
      redirect_uris: [mustEnv('OIDC_REDIRECT_URI')],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  scopes: ['openid', 'profile', 'groups'],
  claims: { openid: ['sub'], profile: ['preferred_username', 'name'], groups: ['groups'] },
  // Put the scopes' claims in the ID token itself, where StreamSpace reads them.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  async findAccount(_ctx, id) {
    if (!Object.hasOwn(users, id)) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: `subject-${id}`, preferred_username: id, name: id, groups: users[id] };
      },
    };
  },
  // StreamSpace is a first-party client: no consent screen.
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile groups');
    await grant.save();
    return grant;
  },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (_ctx, err) => console.error('server_error', err));
provider.on('grant.error', (_ctx, err) => console.error('grant.error', err.message, err.error_description ?? ''));
provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider ready at ${issuer}`);
});
