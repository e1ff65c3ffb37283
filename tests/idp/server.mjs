// A real OpenID Provider for authgate's tests and demo: panva's certified oidc-provider with
// development interactions (a login form that accepts any user name), refresh-token
// rotation, RP-initiated and back-channel logout, and JWT access tokens for a resource.
//
// Environment:
//   IDP_PORT               port on 127.0.0.1 (default 9400)
//   IDP_ISSUER             issuer URL (default http://127.0.0.1:IDP_PORT), for a provider
//                          reached under another name (examples/compose)
//   IDP_CLIENTS            JSON array of client metadata (default: the demo client)
//   IDP_ACCESS_TOKEN_TTL   seconds (default 3600); IDP_ID_TOKEN_TTL likewise
//   IDP_REFRESH_TOKEN_TTL  seconds (default 86400)
//   IDP_RESOURCE           resource indicator whose access tokens are JWTs (default urn:authgate:api)
//   IDP_AUDIENCE           audience of those JWTs (default authgate-demo)
//   IDP_CONFORM_ID_TOKEN_CLAIMS  "true": scope claims only in userinfo, not in the ID token
//   IDP_LISTEN             address to listen on (default 127.0.0.1; 0.0.0.0 in a container)
//   IDP_KEY_DIR            directory of RS256 signing keys `<kid>.pem` (PKCS#8), created
//                          when missing, so that tests can sign tokens as the provider
//                          (logout tokens by the thousand) and rotate its keys
//   IDP_KIDS               comma-separated key ids to publish from IDP_KEY_DIR; the first
//                          one signs (default "key-1")
// Prints "IDP READY <issuer>" once listening.
import Provider from 'oidc-provider';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const port = Number(process.env.IDP_PORT || 9400);
const issuer = process.env.IDP_ISSUER || `http://127.0.0.1:${port}`;
const seconds = (name, fallback) => Number(process.env[name] || fallback);
const resource = process.env.IDP_RESOURCE || 'urn:authgate:api';
const audience = process.env.IDP_AUDIENCE || 'authgate-demo';

const clients = process.env.IDP_CLIENTS
  ? JSON.parse(process.env.IDP_CLIENTS)
  : [{
      client_id: 'authgate-demo',
      client_secret: 'demo-client-secret',
      redirect_uris: ['http://127.0.0.1:8000/oauth2/callback'],
      post_logout_redirect_uris: ['http://127.0.0.1:8000/'],
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }];

// Users: any login name works; a few have groups and roles for policy tests.
const groupsOf = { alice: ['admins', 'staff'], bob: ['staff'] };
const rolesOf = { alice: ['editor'], bob: ['viewer'] };

const configuration = {
  clients,
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== resource) throw new Error('unknown resource');
        return { scope: 'api', audience, accessTokenFormat: 'jwt', accessTokenTTL: seconds('IDP_ACCESS_TOKEN_TTL', 3600) };
      },
    },
  },
  // Refresh tokens for every code grant, rotated on each use.
  issueRefreshToken: async () => true,
  rotateRefreshToken: true,
  ttl: {
    AccessToken: seconds('IDP_ACCESS_TOKEN_TTL', 3600),
    ClientCredentials: seconds('IDP_ACCESS_TOKEN_TTL', 3600),
    IdToken: seconds('IDP_ID_TOKEN_TTL', 3600),
    RefreshToken: seconds('IDP_REFRESH_TOKEN_TTL', 86400),
    Grant: 86400,
    Session: 86400,
    Interaction: 600,
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups', 'roles'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups', 'api'],
  // IDP_CONFORM_ID_TOKEN_CLAIMS=true keeps scope claims (email, groups…) out of the ID
  // token, in userinfo only, as strict providers do.
  conformIdTokenClaims: process.env.IDP_CONFORM_ID_TOKEN_CLAIMS === 'true',
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id,
      email: `${id}@example.com`,
      email_verified: id !== 'unverified',
      name: id.charAt(0).toUpperCase() + id.slice(1),
      preferred_username: id,
      groups: groupsOf[id] || [],
      roles: rolesOf[id] || [],
    }),
  }),
  cookies: { keys: ['authgate-test-idp-cookie-key-not-a-secret'] },
  // oidc-provider passes an SSRF-guarding dispatcher that refuses loopback addresses; the
  // back-channel logout receiver in the tests is on 127.0.0.1, so drop it.
  fetch: (url, { dispatcher, ...options }) => fetch(url, options),
  pkce: { required: () => false },
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
};

// Signing keys the tests can read (otherwise oidc-provider's development keys).
if (process.env.IDP_KEY_DIR) {
  const kids = (process.env.IDP_KIDS || 'key-1').split(',');
  configuration.jwks = {
    keys: kids.map((kid) => {
      const file = join(process.env.IDP_KEY_DIR, `${kid}.pem`);
      if (!existsSync(file)) {
        const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
        writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }));
      }
      const jwk = createPrivateKey(readFileSync(file)).export({ format: 'jwk' });
      return { ...jwk, kid, alg: 'RS256', use: 'sig' };
    }),
  };
}

const provider = new Provider(issuer, configuration);
provider.on('backchannel.success', (ctx, client) => console.log(`backchannel.success ${client.clientId}`));
provider.on('backchannel.error', (ctx, err, client) => console.log(`backchannel.error ${client.clientId}: ${err.message}`));
provider.on('server_error', (ctx, err) => console.log(`server_error: ${err.message}`));
// Counted by the tests: each refresh-token redemption, and every refused grant (a reused
// rotated refresh token is one, and revokes the whole grant).
provider.on('refresh_token.consumed', () => console.log('refresh_token.consumed'));
provider.on('grant.error', (ctx, err) => console.log(`grant.error: ${err.message}`));
provider.listen(port, process.env.IDP_LISTEN || '127.0.0.1', () => {
  console.log(`IDP READY ${issuer}`);
});
