// A real OpenID Connect provider (npm oidc-provider) on loopback for Stride's browser tests.
// Started by tests/tests/browser.rs; prints one JSON line with its issuer once it listens.
// Any login and password sign in (oidc-provider's development interactions); the subject is
// the login typed. ID tokens are signed with ES384, an algorithm Stride accepts by default.
import { createServer } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const redirectUri = process.env.REDIRECT_URI;
const clientId = process.env.CLIENT_ID ?? 'stride-ui';
const clientSecret = process.env.CLIENT_SECRET;
if (!redirectUri || !clientSecret) {
  console.error('REDIRECT_URI and CLIENT_SECRET are required');
  process.exit(2);
}

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const signing = { ...privateKey.export({ format: 'jwk' }), kid: 'test-op-es384', alg: 'ES384', use: 'sig' };

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES384',
    }],
    jwks: { keys: [signing] },
    enabledJWA: { idTokenSigningAlgValues: ['ES384'] },
    scopes: ['openid', 'careplan.read', 'careplan.review', 'audit.read'],
    claims: { openid: ['sub'], profile: ['name'] },
    pkce: { required: () => true },
    cookies: { keys: ['stride-browser-test-only'] },
    ttl: { IdToken: 600, AccessToken: 3600, AuthorizationCode: 60, Session: 3600, Interaction: 600, Grant: 3600 },
    async findAccount(ctx, id) {
      return { accountId: id, async claims() { return { sub: id, name: id }; } };
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  server.on('request', provider.callback());
  console.log(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks` }));
});
