#!/usr/bin/env node
// idp.mjs: a real OpenID provider (the npm package oidc-provider) for vmcp's Go end-to-end
// tests of incoming OIDC authentication and of outgoing token exchange. It issues RFC 9068 JWT
// access tokens through the client-credentials grant with RFC 8707 resource indicators, and
// exchanges them for tokens of other audiences with RFC 8693 token exchange (a grant registered
// with oidc-provider's provider.registerGrantType). Test use only: plain http on loopback,
// in-memory state, fixed client secrets.
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
//   --ttl SECONDS          access token lifetime of the client-credentials grant (default 600)
//   --exchange-audiences "A B"
//                          audiences (and resources) a token may be exchanged for, space
//                          separated; others are refused with invalid_target (default: any
//                          non-empty string)
//   --exchange-deny "S1 S2"
//                          subjects (the subject token's sub) whose tokens are never exchanged:
//                          invalid_grant, "subject S1 may not be exchanged" (default: none)
//   --exchange-ttl SECONDS lifetime of exchanged tokens (default 600)
//   --gateway-jwks FILE    register the client vmcp-gateway-jwt (private_key_jwt) with the
//                          public JWKS ({"keys":[...]}, no private members) in FILE
//   --exit-on-stdin-close  exit when standard input reaches EOF (so a dying parent that holds
//                          the write end of a pipe cannot leave the provider running)
//
// Standard output: exactly one line once listening, then nothing:
//   READY {"issuer":"http://127.0.0.1:PORT","jwks_uri":"http://127.0.0.1:PORT/jwks",
//          "token_endpoint":"http://127.0.0.1:PORT/token","port":PORT,
//          "kids":{"RS256":"...","ES256":"..."}}
// ("kids" names the keys new tokens are signed with). Logs go to standard error: one line per
// HTTP request and one per token issued, exchanged or refused; never a token or a secret.
// SIGTERM / SIGINT: stop listening and exit 0. Start-up errors: a message on stderr, exit 1.
// On Node 20, oidc-provider 9 prints "Unsupported runtime. Use Node.js v22.x LTS" to stderr (a
// check of process.release.lts, not an engines constraint); everything used here works on 20.
//
// Clients (all confidential). oidc-provider takes the secret of a client_secret_basic or a
// client_secret_post client either way: HTTP Basic, or client_id/client_secret form fields.
//   grant_types ["client_credentials"], client_secret_basic:
//   vmcp-test         / vmcp-test-secret          RS256 tokens with the requested scopes
//   vmcp-test-es256   / vmcp-test-es256-secret    ES256 tokens with the requested scopes
//   vmcp-test-noscope / vmcp-test-noscope-secret  RS256 tokens that never carry a scope
//   vmcp-eng          / vmcp-eng-secret           RS256 tokens with the requested scopes and
//                                                 "groups":["eng"]
//   vmcp-support      / vmcp-support-secret       RS256 tokens with the requested scopes and
//                                                 "groups":["support"]
//   vmcp-nogrant      / vmcp-nogrant-secret       like vmcp-test; its token exchange requests
//                                                 are refused by oidc-provider's grant_types
//                                                 check: HTTP 400 {"error":"invalid_request",
//                                                 "error_description":"requested grant type is
//                                                 not allowed for this client"} (not
//                                                 unauthorized_client)
//   grant_types ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"]
//   (the gateway; its client-credentials tokens are like vmcp-test's):
//   vmcp-gateway      / vmcp-gateway-secret       client_secret_basic
//   vmcp-gateway-post / vmcp-gateway-post-secret  client_secret_post
//   vmcp-gateway-jwt  (only with --gateway-jwks)  private_key_jwt: client_assertion_type
//       urn:ietf:params:oauth:client-assertion-type:jwt-bearer, client_assertion a JWT signed
//       (RS256, PS256, ES256, Ed25519 or EdDSA) with a key of the --gateway-jwks file, claims
//       iss = sub = "vmcp-gateway-jwt", a unique jti (replays are refused), exp, and aud one of
//       the issuer (http://127.0.0.1:PORT) or the token endpoint URL (.../token) — or an array
//       holding one of them. Anything else: 401 invalid_client.
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
//   alg=RS256|ES256   signing algorithm, overriding the client's default (not for exchanges)
//   ttl=N             lifetime of this token in seconds (N >= 1), exchanged ones included
//   shift=N           move iat, nbf and exp by N seconds (the token then carries nbf):
//                     shift=-3600 gives an expired token, shift=3600 a not-yet-valid one
//                     (not for exchanges)
//
// Access token: header {"alg":"RS256"|"ES256","typ":"at+jwt","kid":...}; claims
//   {"jti","sub":<client id>,"iat","exp","scope"(absent when empty),"client_id",
//    "iss":<issuer>,"aud":<resource>} (+ "nbf" with shift, + "groups" for vmcp-eng and
//    vmcp-support).
//
// Token exchange (RFC 8693), for the vmcp-gateway* clients. Form parameters:
//   grant_type=urn:ietf:params:oauth:grant-type:token-exchange
//   subject_token         required: a JWT of this provider (signed by one of its keys, the
//                         old ones of --rotate included; iss = this issuer; sub and exp
//                         present, not expired, nbf passed), e.g. a client-credentials token
//                         or an exchanged one; otherwise invalid_grant
//   subject_token_type    required: urn:ietf:params:oauth:token-type:access_token or
//                         urn:ietf:params:oauth:token-type:jwt; otherwise invalid_request
//   audience, resource    0..n each (may be repeated), at least one in all, each a non-empty
//                         string within --exchange-audiences; otherwise invalid_target
//   scope                 the new token's scope (taken as given, not narrowed); default: the
//                         subject token's
//   requested_token_type  if given, urn:ietf:params:oauth:token-type:access_token
//                         (otherwise invalid_request)
//   actor_token, actor_token_type
//                         optional, together (otherwise invalid_request); checked as the
//                         subject token; the new token then carries "act":{"sub":<its sub>}
// A subject in --exchange-deny: invalid_grant. Other parameters given twice: invalid_request.
// The exchanged token: header {"alg":"RS256","typ":"at+jwt","kid":<kids.RS256>}; claims
//   {"iss","sub":<subject token's sub>,"aud":<the audiences if any, else the resources: a
//    string when one, an array when several>,"client_id":<the exchanging client>,
//    "scope"(absent when empty),"groups"(the subject token's, when it has one),
//    "act"(with an actor token),"iat","exp":iat + ttl,"jti"}
//   curl -s -u vmcp-gateway:vmcp-gateway-secret \
//        -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
//        -d subject_token="$TOKEN" \
//        -d subject_token_type=urn:ietf:params:oauth:token-type:access_token \
//        -d audience=jira http://127.0.0.1:PORT/token
//   -> {"access_token":"eyJ...","issued_token_type":"urn:ietf:params:oauth:token-type:access_token",
//       "token_type":"Bearer","expires_in":600,"scope":"mcp:tools"}
//
// Test endpoint: GET /_test/exchanges (outside oidc-provider) -> 200
//   {"issued":[{"client","sub","aud":[...],"act":<actor sub>|null,"scope":<string>|null,"exp"}],
//    "refused":[{"client":<client id>|null,"sub":<subject's sub>|null,"error":<OAuth error>}]}
// every token exchange request of this process in order: issued ones, and refused ones
// (client authentication and grant_types failures included; sub is null unless the subject
// token was verified). aud is always an array here. No token values are kept.

import * as http from 'node:http';
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';

import {
  SignJWT, calculateJwkThumbprint, createLocalJWKSet, exportJWK, generateKeyPair, importJWK, jwtVerify,
} from 'jose';

import { listen, stopOn } from './lifecycle.mjs';

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
        'exchange-audiences': { type: 'string' },
        'exchange-deny': { type: 'string', default: '' },
        'exchange-ttl': { type: 'string', default: '600' },
        'gateway-jwks': { type: 'string' },
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
  const exchangeTTL = Number(values['exchange-ttl']);
  if (!Number.isSafeInteger(exchangeTTL) || exchangeTTL < 1) fail(`bad --exchange-ttl ${values['exchange-ttl']}`);
  const words = (v) => v.split(/\s+/).filter(Boolean);
  const scopes = words(values.scopes);
  // undefined: any non-empty audience / resource may be asked for.
  const exchangeAudiences = values['exchange-audiences'] === undefined
    ? undefined : new Set(words(values['exchange-audiences']));
  const exchangeDeny = new Set(words(values['exchange-deny']));
  return {
    ...values, port, ttl, scopes, exchangeTTL, exchangeAudiences, exchangeDeny,
  };
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

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const TOKEN_TYPE_ACCESS = 'urn:ietf:params:oauth:token-type:access_token';
const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';
// The subject_token_type / actor_token_type values accepted: both name a JWT of this issuer.
const INPUT_TOKEN_TYPES = new Set([TOKEN_TYPE_ACCESS, TOKEN_TYPE_JWT]);

// confidential is the metadata of a client with no redirects and no response types.
const confidential = (c, grantTypes, method = 'client_secret_basic') => ({
  ...c,
  grant_types: grantTypes,
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: method,
});

// loadGatewayJWKS reads the public JWKS of vmcp-gateway-jwt (--gateway-jwks).
function loadGatewayJWKS(file) {
  let doc;
  try {
    doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    fail(`--gateway-jwks ${file}: ${err.message}`);
  }
  if (!Array.isArray(doc?.keys) || doc.keys.length === 0) fail(`--gateway-jwks ${file}: not a non-empty JWKS ({"keys":[...]})`);
  for (const [i, k] of doc.keys.entries()) {
    if (!k || typeof k !== 'object' || !k.kty) fail(`--gateway-jwks ${file}: key ${i} is not a JWK`);
    if (k.d !== undefined) fail(`--gateway-jwks ${file}: key ${i} is private; give the public JWKS`);
  }
  return { keys: doc.keys };
}

// clients are the statically registered clients (see the header comment).
function clients(opts) {
  const cc = ['client_credentials'];
  const exchange = ['client_credentials', TOKEN_EXCHANGE];
  const list = [
    ...[
      { client_id: 'vmcp-test', client_secret: 'vmcp-test-secret' },
      { client_id: 'vmcp-test-es256', client_secret: 'vmcp-test-es256-secret' },
      { client_id: 'vmcp-test-noscope', client_secret: 'vmcp-test-noscope-secret' },
      { client_id: 'vmcp-eng', client_secret: 'vmcp-eng-secret' },
      { client_id: 'vmcp-support', client_secret: 'vmcp-support-secret' },
      { client_id: 'vmcp-nogrant', client_secret: 'vmcp-nogrant-secret' },
    ].map((c) => confidential(c, cc)),
    confidential({ client_id: 'vmcp-gateway', client_secret: 'vmcp-gateway-secret' }, exchange),
    confidential({ client_id: 'vmcp-gateway-post', client_secret: 'vmcp-gateway-post-secret' }, exchange, 'client_secret_post'),
  ];
  if (opts['gateway-jwks'] !== undefined) {
    list.push(confidential({ client_id: 'vmcp-gateway-jwt', jwks: loadGatewayJWKS(opts['gateway-jwks']) }, exchange, 'private_key_jwt'));
  }
  return list;
}

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
    clients: clients(opts),
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

// exchanges records the token exchanges of this process for GET /_test/exchanges: issued
// ({client, sub, aud: [...], act, scope, exp}) and refused ({client, sub, error}), in order.
// No token value is ever recorded.
const exchanges = { issued: [], refused: [] };

// The parameters of the token exchange grant (RFC 8693 section 2.1) besides grant_type and
// client authentication; audience and resource may be repeated.
const EXCHANGE_PARAMS = [
  'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type',
  'requested_token_type', 'audience', 'resource', 'scope',
];
const EXCHANGE_DUPES = ['audience', 'resource'];

// invalidGrant is an invalid_grant error with description (InvalidGrant's constructor takes
// none and says "grant request is invalid").
function invalidGrant(description, cause) {
  const err = new errors.InvalidGrant(cause ? { cause } : undefined);
  err.error_description = description;
  return err;
}

// asList is a parameter that may be repeated, as an array (empty when absent).
const asList = (v) => (v === undefined ? [] : [v].flat());

// tokenExchange returns the handler of the token exchange grant. Client authentication, the
// client's grant_types check, duplicate-parameter rejection (except audience and resource) and
// the scope syntax check have been done by oidc-provider's token endpoint before it runs.
function tokenExchange(opts, issuer, keys, kids) {
  const publicKeys = keys.map(({
    d, p, q, dp, dq, qi, ...pub
  }) => pub);
  const ownKeys = createLocalJWKSet({ keys: publicKeys });
  const signingJWK = keys.find((k) => k.kid === kids.RS256);
  let signingKey; // a promise of the imported key, made on first use

  // verify checks that token is a JWT of this provider (own key, iss, not expired) and returns
  // its claims; what names the parameter in errors.
  const verify = async (token, what) => {
    try {
      const { payload } = await jwtVerify(token, ownKeys, {
        issuer, algorithms: ALGS, requiredClaims: ['sub', 'exp'],
      });
      return payload;
    } catch (err) {
      // jose's messages name the failed check, never the token.
      throw invalidGrant(`${what} is not a valid token of this issuer: ${err.code ?? err.name}: ${err.message}`, err);
    }
  };

  return async function tokenExchangeHandler(ctx) {
    const p = ctx.oidc.params;
    const client = ctx.oidc.client.clientId;
    for (const name of ['subject_token', 'subject_token_type']) {
      if (p[name] === undefined) throw new errors.InvalidRequest(`missing required parameter '${name}'`);
    }
    if (!INPUT_TOKEN_TYPES.has(p.subject_token_type)) {
      throw new errors.InvalidRequest(`unsupported subject_token_type (want ${[...INPUT_TOKEN_TYPES].join(' or ')})`);
    }
    if (p.actor_token !== undefined && p.actor_token_type === undefined) {
      throw new errors.InvalidRequest('actor_token_type is required with actor_token');
    }
    if (p.actor_token === undefined && p.actor_token_type !== undefined) {
      throw new errors.InvalidRequest('actor_token_type must not be given without actor_token');
    }
    if (p.actor_token_type !== undefined && !INPUT_TOKEN_TYPES.has(p.actor_token_type)) {
      throw new errors.InvalidRequest(`unsupported actor_token_type (want ${[...INPUT_TOKEN_TYPES].join(' or ')})`);
    }
    if (p.requested_token_type !== undefined && p.requested_token_type !== TOKEN_TYPE_ACCESS) {
      throw new errors.InvalidRequest(`unsupported requested_token_type (only ${TOKEN_TYPE_ACCESS} is issued)`);
    }
    const ttl = knob(ctx, 'ttl') ?? opts.exchangeTTL;
    if (ttl < 1) throw new errors.InvalidRequest('test knob ttl must be >= 1');

    const subject = await verify(p.subject_token, 'subject_token');
    ctx.state.exchangeSub = subject.sub; // for the refusal record
    if (opts.exchangeDeny.has(subject.sub)) {
      throw invalidGrant(`subject ${subject.sub} may not be exchanged`);
    }
    const actor = p.actor_token === undefined ? undefined : await verify(p.actor_token, 'actor_token');

    const audiences = asList(p.audience);
    const resources = asList(p.resource);
    if (audiences.length === 0 && resources.length === 0) {
      throw new errors.InvalidTarget('audience or resource is required');
    }
    for (const target of [...audiences, ...resources]) {
      if (typeof target !== 'string' || target === '') {
        throw new errors.InvalidTarget('audience and resource must be non-empty strings');
      }
      if (opts.exchangeAudiences !== undefined && !opts.exchangeAudiences.has(target)) {
        throw new errors.InvalidTarget(`${JSON.stringify(target)} is not an audience tokens may be exchanged for`);
      }
    }
    const aud = [...new Set(audiences.length > 0 ? audiences : resources)];

    const scope = p.scope ?? (typeof subject.scope === 'string' ? subject.scope : '');
    const iat = Math.floor(Date.now() / 1000);
    const exp = iat + ttl;
    const claims = {
      iss: issuer,
      sub: subject.sub,
      aud: aud.length === 1 ? aud[0] : aud,
      client_id: client,
      ...(scope ? { scope } : undefined),
      ...(subject.groups !== undefined ? { groups: subject.groups } : undefined),
      ...(actor ? { act: { sub: actor.sub } } : undefined),
      iat,
      exp,
      jti: randomBytes(32).toString('base64url'),
    };
    const accessToken = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: kids.RS256 })
      .sign(await (signingKey ??= importJWK(signingJWK, 'RS256')));

    exchanges.issued.push({
      client, sub: subject.sub, aud, act: actor?.sub ?? null, scope: scope || null, exp,
    });
    log(`token exchanged: client=${client} sub=${subject.sub} aud=${aud.join(',')} act=${actor?.sub ?? '-'} scope=${scope || '-'} ttl=${ttl}`);

    ctx.body = {
      access_token: accessToken,
      issued_token_type: TOKEN_TYPE_ACCESS,
      token_type: 'Bearer',
      expires_in: ttl,
      ...(scope ? { scope } : undefined),
    };
  };
}

// recordRefusal records a refused token exchange request (any error at the token endpoint
// once grant_type is known, client authentication included) and logs it.
function recordRefusal(ctx, err) {
  const client = ctx.oidc?.client?.clientId ?? ctx.oidc?.params?.client_id ?? null;
  const sub = ctx.state?.exchangeSub ?? null;
  const error = err.expose ? err.error ?? err.message : 'server_error';
  exchanges.refused.push({ client, sub, error });
  log(`exchange refused: client=${client ?? '-'} sub=${sub ?? '-'} ${error}: ${err.error_description ?? err.message}`);
}

const isExchange = (ctx) => ctx.oidc?.params?.grant_type === TOKEN_EXCHANGE;

async function main() {
  const opts = parseOptions();
  const keys = await loadKeys(opts);

  // Listen first so that --port 0 knows its port before the issuer is fixed.
  let handler = (_req, res) => { res.statusCode = 503; res.end(); };
  const server = http.createServer((req, res) => handler(req, res));
  const port = await listen(server, opts.port, fail);
  const issuer = `http://127.0.0.1:${port}`;

  const kids = {};
  for (const alg of ALGS) kids[alg] = keys.find((k) => keyAlg(k) === alg).kid;

  const provider = new Provider(issuer, configuration(opts, keys));
  // Registered grants get oidc-provider's client authentication and checks (see tokenExchange);
  // a client may use the grant only when its grant_types lists it.
  provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange(opts, issuer, keys, kids), EXCHANGE_PARAMS, EXCHANGE_DUPES);
  provider.on('grant.success', (ctx) => {
    if (isExchange(ctx)) return; // the handler logged it
    const p = ctx.oidc.params ?? {};
    log(`token issued: client=${ctx.oidc.client?.clientId} resource=${p.resource ?? '-'} scope=${p.scope ?? '-'} query=${ctx.querystring || '-'}`);
  });
  provider.on('grant.error', (ctx, err) => {
    if (isExchange(ctx)) {
      recordRefusal(ctx, err);
      return;
    }
    log(`token refused: client=${ctx.oidc?.client?.clientId ?? '-'} ${err.error ?? err.name}: ${err.error_description ?? err.message}`);
  });
  provider.on('server_error', (ctx, err) => {
    log(`server error: ${err.stack ?? err}`);
    if (isExchange(ctx)) recordRefusal(ctx, err);
  });
  const callback = provider.callback();
  handler = (req, res) => {
    log(`${req.method} ${req.url}`);
    if (new URL(req.url, issuer).pathname === '/_test/exchanges') {
      if (req.method !== 'GET') {
        res.writeHead(405, { Allow: 'GET' }).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
      res.end(JSON.stringify(exchanges));
      return;
    }
    callback(req, res);
  };
  log(`issuer ${issuer}, keys ${keys.map((k) => `${k.kid}(${keyAlg(k)})`).join(', ')}`);

  stopOn(server, log, opts['exit-on-stdin-close']);

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
