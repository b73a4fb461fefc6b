#!/usr/bin/env node
// idp.mjs: a real OpenID provider (the npm package oidc-provider) for vmcp's Go end-to-end
// tests of incoming OIDC authentication. It issues RFC 9068 JWT access tokens through the
// client-credentials grant with RFC 8707 resource indicators. Test use only: plain http on
// loopback, in-memory state, fixed client secrets.
//
// Usage:
//   node test/js/idp.mjs [options]
//
// Options:
//   --port N               listen on 127.0.0.1:N (default 0 = a free port); the issuer is
//                          http://127.0.0.1:N with no trailing slash
//   --audience URL         resource used when a token request names none (default: none, so a
//                          request without `resource` is refused with invalid_target)
//   --scopes "A B"         scopes the resource server knows (default "mcp:tools mcp:admin");
//                          requested scopes outside this list are dropped from the token
//   --keys FILE            load the signing keys from FILE: a JWKS ({"keys":[...]}) of private
//                          JWKs. Missing RS256 / ES256 keys are generated. Without --keys, one
//                          RS256 (RSA 2048) and one ES256 (P-256) key are generated.
//   --rotate               generate a fresh RS256 and a fresh ES256 key and put them before the
//                          loaded ones: new tokens are signed with the fresh keys, the old ones
//                          stay in the JWKS (for verification only)
//   --keys-out FILE        write the private JWKS in use (after --keys / --rotate) to FILE (0600)
//   --ttl SECONDS          access token lifetime (default 600)
//   --exit-on-stdin-close  exit when standard input reaches EOF (so a dying parent that holds
//                          the write end of a pipe cannot leave the provider running)
//
// Standard output: exactly one line once listening, then nothing:
//   READY {"issuer":"http://127.0.0.1:PORT","jwks_uri":"http://127.0.0.1:PORT/jwks",
//          "token_endpoint":"http://127.0.0.1:PORT/token","port":PORT,
//          "kids":{"RS256":"...","ES256":"..."}}
// ("kids" names the keys new tokens are signed with). Logs go to standard error.
// SIGTERM / SIGINT: stop listening and exit 0. Start-up errors: a message on stderr, exit 1.
// On Node 20, oidc-provider 9 prints "Unsupported runtime. Use Node.js v22.x LTS" to stderr (a
// check of process.release.lts, not an engines constraint); everything used here works on 20.
//
// Clients (all confidential, grant_types ["client_credentials"]; the secret may be sent with
// HTTP Basic (client_secret_basic) or as client_id/client_secret form fields):
//   vmcp-test         / vmcp-test-secret          RS256 tokens with the requested scopes
//   vmcp-test-es256   / vmcp-test-es256-secret    ES256 tokens with the requested scopes
//   vmcp-test-noscope / vmcp-test-noscope-secret  RS256 tokens that never carry a scope
//   vmcp-eng          / vmcp-eng-secret           RS256 tokens with the requested scopes and
//                                                 "groups":["eng"]
//   vmcp-support      / vmcp-support-secret       RS256 tokens with the requested scopes and
//                                                 "groups":["support"]
// (the groups claim, for authorization rules, is added by extraTokenClaims, keyed on the client
// id; the other clients' tokens carry none)
//
// Token request (any absolute http(s) URL is accepted as the resource; the token's aud is it):
//   curl -s -u vmcp-test:vmcp-test-secret -d grant_type=client_credentials \
//        -d resource=http://127.0.0.1:4483/mcp --data-urlencode "scope=mcp:tools" \
//        http://127.0.0.1:PORT/token
//   -> {"access_token":"eyJ...","expires_in":600,"token_type":"Bearer","scope":"mcp:tools"}
// Errors are OAuth JSON bodies with HTTP 400/401, e.g. {"error":"invalid_client",...}.
//
// Test knobs, as query parameters on the token endpoint URL (POST /token?alg=ES256&ttl=5):
//   alg=RS256|ES256   signing algorithm, overriding the client's default
//   ttl=N             lifetime of this token in seconds (N >= 1)
//   shift=N           move iat, nbf and exp by N seconds (the token then carries nbf):
//                     shift=-3600 gives an expired token, shift=3600 a not-yet-valid one
//
// Access token: header {"alg":"RS256"|"ES256","typ":"at+jwt","kid":...}; claims
//   {"jti","sub":<client id>,"iat","exp","scope"(absent when empty),"client_id",
//    "iss":<issuer>,"aud":<resource>} (+ "nbf" with shift, + "groups" for vmcp-eng and
//    vmcp-support).

import * as http from 'node:http';
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';

import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';

// oidc-provider prints notices with console.info; standard output carries only READY. It is
// imported after this redirection so that nothing it prints while loading reaches stdout.
const toStderr = (...args) => console.error(...args);
console.log = toStderr;
console.info = toStderr;
console.debug = toStderr;

const { default: Provider, errors } = await import('oidc-provider');

const log = (msg) => process.stderr.write(`idp: ${msg}\n`);

function fail(msg) {
  process.stderr.write(`idp: ${msg}\n`);
  process.exit(1);
}

const ALGS = ['RS256', 'ES256'];

function parseOptions() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string', default: '0' },
        audience: { type: 'string' },
        scopes: { type: 'string', default: 'mcp:tools mcp:admin' },
        keys: { type: 'string' },
        'keys-out': { type: 'string' },
        rotate: { type: 'boolean', default: false },
        ttl: { type: 'string', default: '600' },
        'exit-on-stdin-close': { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail(err.message);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad --port ${values.port}`);
  const ttl = Number(values.ttl);
  if (!Number.isSafeInteger(ttl) || ttl < 1) fail(`bad --ttl ${values.ttl}`);
  if (values.audience !== undefined && !isHttpURL(values.audience)) {
    fail(`bad --audience ${values.audience}: need an absolute http(s) URL`);
  }
  const scopes = values.scopes.split(/\s+/).filter(Boolean);
  return { ...values, port, ttl, scopes };
}

function isHttpURL(s) {
  const u = URL.parse(s);
  return u !== null && (u.protocol === 'http:' || u.protocol === 'https:') && !u.hash;
}

// newKey generates a private signing JWK for alg with kid = its RFC 7638 thumbprint.
async function newKey(alg) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.alg = alg;
  jwk.use = 'sig';
  return jwk;
}

function keyAlg(jwk) {
  if (jwk.alg) return jwk.alg;
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  return undefined;
}

async function loadKeys(opts) {
  let keys = [];
  if (opts.keys) {
    let doc;
    try {
      doc = JSON.parse(fs.readFileSync(opts.keys, 'utf8'));
    } catch (err) {
      fail(`--keys ${opts.keys}: ${err.message}`);
    }
    keys = Array.isArray(doc) ? doc : doc?.keys;
    if (!Array.isArray(keys)) fail(`--keys ${opts.keys}: not a JWKS ({"keys":[...]})`);
    for (const [i, k] of keys.entries()) {
      if (!k || typeof k !== 'object' || !k.d) fail(`--keys ${opts.keys}: key ${i} is not a private JWK`);
      if (!k.kid) k.kid = await calculateJwkThumbprint(k);
    }
  }
  if (opts.rotate) {
    keys = [...await Promise.all(ALGS.map(newKey)), ...keys];
  }
  for (const alg of ALGS) {
    if (!keys.some((k) => keyAlg(k) === alg)) keys.push(await newKey(alg));
  }
  const kids = new Set();
  for (const k of keys) {
    if (kids.has(k.kid)) fail(`duplicate kid ${k.kid}`);
    kids.add(k.kid);
  }
  if (opts['keys-out']) {
    fs.writeFileSync(opts['keys-out'], `${JSON.stringify({ keys }, null, 2)}\n`, { mode: 0o600 });
  }
  return keys;
}

const CLIENTS = [
  { client_id: 'vmcp-test', client_secret: 'vmcp-test-secret' },
  { client_id: 'vmcp-test-es256', client_secret: 'vmcp-test-es256-secret' },
  { client_id: 'vmcp-test-noscope', client_secret: 'vmcp-test-noscope-secret' },
  { client_id: 'vmcp-eng', client_secret: 'vmcp-eng-secret' },
  { client_id: 'vmcp-support', client_secret: 'vmcp-support-secret' },
].map((c) => ({
  ...c,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
}));

// GROUPS are the groups claims of the clients that have one, by client id.
const GROUPS = {
  'vmcp-eng': ['eng'],
  'vmcp-support': ['support'],
};

// knob reads an integer query parameter of the token request, or undefined.
function knob(ctx, name) {
  const v = ctx?.query?.[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v === '' || !Number.isSafeInteger(n)) {
    throw new errors.InvalidRequest(`test knob ${name} must be an integer`);
  }
  return n;
}

function configuration(opts, keys) {
  return {
    clients: CLIENTS,
    jwks: { keys },
    scopes: ['openid', ...opts.scopes],
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => {
          const resource = oneOf ?? opts.audience;
          // Without a resource the token would be opaque; these tests only want JWTs.
          if (resource === undefined) throw new errors.InvalidTarget('resource is required (no --audience default)');
          return resource;
        },
        getResourceServerInfo: async (ctx, resource, client) => {
          if (!isHttpURL(resource)) {
            throw new errors.InvalidTarget('resource must be an absolute http(s) URL');
          }
          let alg = client.clientId === 'vmcp-test-es256' ? 'ES256' : 'RS256';
          const want = ctx?.query?.alg;
          if (want !== undefined) {
            if (!ALGS.includes(want)) throw new errors.InvalidRequest(`test knob alg must be one of ${ALGS.join(', ')}`);
            alg = want;
          }
          const ttl = knob(ctx, 'ttl') ?? opts.ttl;
          if (ttl < 1) throw new errors.InvalidRequest('test knob ttl must be >= 1');
          return {
            scope: client.clientId === 'vmcp-test-noscope' ? '' : opts.scopes.join(' '),
            audience: resource,
            accessTokenFormat: 'jwt',
            accessTokenTTL: ttl,
            jwt: { sign: { alg } },
          };
        },
      },
    },
    // Claims added to the access tokens of a client (client credentials: token.clientId).
    extraTokenClaims: async (_ctx, token) => {
      const groups = GROUPS[token.clientId];
      return groups ? { groups: [...groups] } : undefined;
    },
    formats: {
      customizers: {
        jwt: async (ctx, _token, jwt) => {
          const shift = knob(ctx, 'shift');
          if (shift) {
            jwt.payload.iat += shift;
            jwt.payload.exp += shift;
            jwt.payload.nbf = jwt.payload.iat;
          }
        },
      },
    },
  };
}

async function main() {
  const opts = parseOptions();
  const keys = await loadKeys(opts);

  // Listen first so that --port 0 knows its port before the issuer is fixed.
  let handler = (_req, res) => { res.statusCode = 503; res.end(); };
  const server = http.createServer((req, res) => handler(req, res));
  server.keepAliveTimeout = 5000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((err) => fail(`listen on 127.0.0.1:${opts.port}: ${err.message}`));
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, configuration(opts, keys));
  provider.on('grant.success', (ctx) => {
    const p = ctx.oidc.params ?? {};
    log(`token issued: client=${ctx.oidc.client?.clientId} resource=${p.resource ?? '-'} scope=${p.scope ?? '-'} query=${ctx.querystring || '-'}`);
  });
  provider.on('grant.error', (ctx, err) => {
    log(`token refused: client=${ctx.oidc?.client?.clientId ?? '-'} ${err.error ?? err.name}: ${err.error_description ?? err.message}`);
  });
  provider.on('server_error', (_ctx, err) => log(`server error: ${err.stack ?? err}`));
  const callback = provider.callback();
  handler = (req, res) => {
    log(`${req.method} ${req.url}`);
    callback(req, res);
  };

  const kids = {};
  for (const alg of ALGS) kids[alg] = keys.find((k) => keyAlg(k) === alg).kid;
  log(`issuer ${issuer}, keys ${keys.map((k) => `${k.kid}(${keyAlg(k)})`).join(', ')}`);

  let stopping = false;
  const stop = (why) => {
    if (stopping) return;
    stopping = true;
    log(`stopping (${why})`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (opts['exit-on-stdin-close']) {
    process.stdin.on('end', () => stop('stdin closed'));
    process.stdin.on('error', () => stop('stdin error'));
    process.stdin.resume();
  }

  const ready = {
    issuer,
    jwks_uri: `${issuer}/jwks`,
    token_endpoint: `${issuer}/token`,
    port,
    kids,
  };
  process.stdout.write(`READY ${JSON.stringify(ready)}\n`);
}

main().catch((err) => fail(err.stack ?? String(err)));
