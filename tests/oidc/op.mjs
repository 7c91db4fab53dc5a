// A real OpenID Connect provider (npm oidc-provider) on loopback for Stride's browser tests.
// Started by tests/tests/browser.rs; prints one JSON line with its issuer once it listens.
// Any login and password sign in (oidc-provider's development interactions); the subject is
// the login typed. ID tokens are signed with ES384, an algorithm Stride accepts by default.
//
// With SMART_REDIRECT_URI set it is also a mock EHR's SMART App Launch 2.0 authorization
// server for the FHIR base `${issuer}/fhir`:
// - GET /fhir/.well-known/smart-configuration (S256 only, launch-ehr and launch-standalone);
// - POST /ehr/launch {patient, appContext, ttlSeconds} opens a launch as the EHR does when a
//   clinician follows a card's smart link, and answers {launch};
// - an authorization request of the public client `stride-smart` must name a launch that is
//   known and not expired (else the EHR answers `access_denied`), or ask for `launch/patient`
//   (a standalone launch: the patient is SMART_STANDALONE_PATIENT), and `aud` must be the
//   FHIR base;
// - the token response carries the launch's `patient` and `appContext`; the ID token carries
//   `fhirUser`: Practitioner/<login>, or Patient/<login> for a login starting with `patient-`.
import { createServer } from 'node:http';
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

const smartRedirectUri = process.env.SMART_REDIRECT_URI;
const standalonePatient = process.env.SMART_STANDALONE_PATIENT;
const SMART_CLIENT = 'stride-smart';

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
  const fhirBase = `${issuer}/fhir`;
  const clients = [];
  if (smartRedirectUri) {
    clients.push({
      client_id: SMART_CLIENT,
      redirect_uris: [smartRedirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      id_token_signed_response_alg: 'ES384',
    });
  }
  const provider = new Provider(issuer, {
    clients: [...clients, {
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
    scopes: ['openid', 'fhirUser', 'launch', 'launch/patient', 'careplan.read', 'careplan.review', 'audit.read', 'analytics.read', 'guideline.approve'],
    claims: { openid: ['sub'], profile: ['name'], fhirUser: ['fhirUser'] },
    // Scope claims (fhirUser) go into the ID token, as SMART App Launch expects.
    conformIdTokenClaims: false,
    extraParams: ['launch', 'aud'],
    pkce: { required: () => true },
    cookies: { keys: ['stride-browser-test-only'] },
    ttl: { IdToken: 600, AccessToken: 3600, AuthorizationCode: 60, Session: 3600, Interaction: 600, Grant: 3600 },
    async findAccount(ctx, id) {
      const fhirUser = `${fhirBase}/${id.startsWith('patient-') ? 'Patient' : 'Practitioner'}/${id}`;
      return { accountId: id, async claims() { return { sub: id, name: id, fhirUser }; } };
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  if (smartRedirectUri) provider.use(mockEhr(issuer, fhirBase));
  server.on('request', provider.callback());
  console.log(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks` }));
});

// The EHR around the authorization server: its SMART configuration, its launches, and the
// launch context added to the token response.
function mockEhr(issuer, fhirBase) {
  const launches = new Map(); // launch id → {patient, appContext, expiresAt}
  const byChallenge = new Map(); // PKCE challenge → launch context, until the code is traded
  const s256 = (v) => createHash('sha256').update(v).digest('base64url');
  const json = (ctx, status, body) => { ctx.status = status; ctx.type = 'application/json'; ctx.body = body; };
  const readBody = (ctx) => new Promise((resolve) => {
    let text = '';
    ctx.req.on('data', (c) => { text += c; });
    ctx.req.on('end', () => resolve(text ? JSON.parse(text) : {}));
  });
  return async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/fhir/.well-known/smart-configuration') {
      return json(ctx, 200, {
        issuer,
        jwks_uri: `${issuer}/jwks`,
        authorization_endpoint: `${issuer}/auth`,
        token_endpoint: `${issuer}/token`,
        grant_types_supported: ['authorization_code'],
        token_endpoint_auth_methods_supported: ['none', 'client_secret_basic'],
        scopes_supported: ['openid', 'fhirUser', 'launch', 'launch/patient', 'careplan.read', 'careplan.review'],
        response_types_supported: ['code'],
        code_challenge_methods_supported: ['S256'],
        capabilities: ['launch-ehr', 'launch-standalone', 'client-public', 'context-ehr-patient',
          'context-standalone-patient', 'sso-openid-connect', 'permission-v2'],
      });
    }
    if (ctx.method === 'POST' && ctx.path === '/ehr/launch') {
      const b = await readBody(ctx);
      const launch = randomUUID();
      launches.set(launch, { patient: b.patient, appContext: b.appContext, expiresAt: Date.now() + 1000 * (b.ttlSeconds ?? 300) });
      return json(ctx, 201, { launch });
    }
    if (ctx.method === 'GET' && ctx.path === '/auth' && ctx.query.client_id === SMART_CLIENT) {
      const q = ctx.query;
      const refuse = (error) => {
        const to = new URL(smartRedirectUri);
        to.searchParams.set('error', error);
        if (q.state) to.searchParams.set('state', q.state);
        ctx.redirect(to.href);
      };
      if (q.aud !== fhirBase) return refuse('invalid_request');
      const scopes = String(q.scope ?? '').split(' ');
      let context;
      if (q.launch) {
        const l = launches.get(q.launch);
        if (!l || l.expiresAt < Date.now() || !scopes.includes('launch')) return refuse('access_denied');
        context = { patient: l.patient, appContext: l.appContext };
      } else if (scopes.includes('launch/patient') && standalonePatient) {
        context = { patient: standalonePatient };
      } else {
        return refuse('invalid_scope');
      }
      if (q.code_challenge) byChallenge.set(q.code_challenge, context);
    }
    await next();
    if (ctx.oidc?.route === 'token' && ctx.body?.access_token && ctx.oidc.params?.code_verifier) {
      const challenge = s256(ctx.oidc.params.code_verifier);
      const context = byChallenge.get(challenge);
      if (context) {
        byChallenge.delete(challenge);
        ctx.body = { ...ctx.body, patient: context.patient, ...(context.appContext ? { appContext: context.appContext } : {}) };
      }
    }
  };
}
