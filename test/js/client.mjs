#!/usr/bin/env node
// client.mjs: a real MCP client (the official TypeScript SDK's Client over its
// StreamableHTTPClientTransport), driven by vmcp's Go end-to-end tests.
//
// Usage:
//   node test/js/client.mjs [options] <url> <operations>
//
//   <url>         the MCP endpoint, e.g. http://127.0.0.1:4483/mcp
//   <operations>  a JSON array of operations, given inline (argument starts with "["),
//                 as "-" to read it from standard input, or as the path of a file holding it.
//
// Options (before <url>):
//   --header K=V             send header K with value V on every HTTP request (repeatable;
//                            split at the first "="), e.g. --header "Authorization=Bearer abc"
//   --timeout MS             default per-request timeout in ms (default 30000)
//   --protocol-version V     ask for protocol revision V in initialize instead of the SDK's latest
//   --client-name NAME       clientInfo.name sent in initialize (default "vmcp-e2e-client")
//
// An operation is an object {"op": NAME, ...fields} (a bare string "listTools" is {"op":"listTools"});
// fields may also be nested under "params". Any operation may carry "timeoutMs".
//   listTools                                  -> {"tools":[...all pages...], "pages":N}
//   callTool {name, arguments}                 -> the CallToolResult as received (isError stays a result)
//   listResources                              -> {"resources":[...], "pages":N}
//   listResourceTemplates                      -> {"resourceTemplates":[...], "pages":N}
//   readResource {uri}                         -> the ReadResourceResult ({"contents":[...]})
//   listPrompts                                -> {"prompts":[...], "pages":N}
//   getPrompt {name, arguments}                -> the GetPromptResult
//   complete {ref, argument, context?}         -> the CompleteResult ({"completion":{...}})
//                                                 ref: {"type":"ref/prompt","name":..} or {"type":"ref/resource","uri":..}
//   waitToolsListChanged {timeoutMs, fresh?}   -> {"received":true|false, "count":N}
//        Waits for notifications/tools/list_changed. By default a notification that arrived
//        since connecting (or since the previous waitToolsListChanged returned) and not yet
//        consumed counts at once; with "fresh":true only one arriving after this step starts
//        counts. Times out after timeoutMs (default 10000) with {"received":false}. count is
//        the number of notifications consumed by this step.
//   ping                                       -> {}
//   sleep {ms}                                 -> {}
// List operations follow nextCursor until it is absent (at most 1000 pages).
//
// Output: exactly one JSON line on stdout, exit status 0:
//   {"results":[r0, r1, ...], "session":{"id","protocolVersion","serverInfo","capabilities"},
//    "notifications":{"notifications/tools/list_changed":N, ...}}
// where each r is the operation's result or {"error":{"code","message","data"?,"httpStatus"?,"headers"?}}.
//   - JSON-RPC errors: code/message/data as the server sent them.
//   - HTTP-level failures (non-2xx): httpStatus is the HTTP status, headers holds the response's
//     Retry-After / WWW-Authenticate / Content-Type when present; if the body was a JSON-RPC
//     error, code/message/data are taken from it, otherwise code is the HTTP status.
//   - anything else (timeouts, invalid responses): the SDK's error code (or -1) and message.
// An unknown op yields {"error":{"code":-32601,...}} for that step; the other steps still run.
//
// Before each step starts, a line "STEP <index> <op>" is written to stderr, so a test can
// act (e.g. change a backend's tools) once the client is waiting.
//
// Connection failure (initialize fails: refused, 401, bad answer): a message on stderr, a line
// {"connectError":{...same shape as an error above...}} on stdout, and exit status 1.
// Bad arguments or unreadable operations: a message on stderr, nothing on stdout, exit status 2.

import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

const MAX_PAGES = 1000;

function usage(msg) {
  process.stderr.write(`client.mjs: ${msg}\nusage: node client.mjs [--header K=V]... [--timeout MS] [--protocol-version V] <url> <operations-json|file|->\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { headers: {}, timeout: 30000, protocolVersion: undefined, clientName: 'vmcp-e2e-client' };
  const pos = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--header' || a === '-H') {
      const kv = next();
      const eq = kv.indexOf('=');
      if (eq <= 0) usage(`--header wants K=V, got ${JSON.stringify(kv)}`);
      opts.headers[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else if (a === '--timeout') {
      opts.timeout = Number(next());
      if (!Number.isFinite(opts.timeout) || opts.timeout <= 0) usage('--timeout wants a positive number of ms');
    } else if (a === '--protocol-version') {
      opts.protocolVersion = next();
    } else if (a === '--client-name') {
      opts.clientName = next();
    } else if (a.startsWith('--') && pos.length === 0) {
      usage(`unknown option ${a}`);
    } else {
      pos.push(a);
    }
  }
  if (pos.length !== 2) usage('want exactly <url> and <operations>');
  let url;
  try {
    url = new URL(pos[0]);
  } catch {
    usage(`bad url ${JSON.stringify(pos[0])}`);
  }
  let text = pos[1];
  if (text === '-') text = readFileSync(0, 'utf8');
  else if (!text.trimStart().startsWith('[')) text = readFileSync(text, 'utf8');
  let ops;
  try {
    ops = JSON.parse(text);
  } catch (e) {
    usage(`operations are not valid JSON: ${e.message}`);
  }
  if (!Array.isArray(ops)) usage('operations must be a JSON array');
  return { url, ops, opts };
}

// The last non-2xx answer to a POST, so an HTTP-level error can report status and headers.
let lastHttpFailure = null;

function makeFetch(protocolVersion) {
  return async (input, init) => {
    const method = (init?.method ?? 'GET').toUpperCase();
    if (protocolVersion && method === 'POST' && typeof init?.body === 'string') {
      try {
        const msg = JSON.parse(init.body);
        if (msg && msg.method === 'initialize' && msg.params) {
          msg.params.protocolVersion = protocolVersion;
          init = { ...init, body: JSON.stringify(msg) };
        }
      } catch {
        // not JSON: send unchanged
      }
    }
    const res = await fetch(input, init);
    if (method === 'POST' && !res.ok) {
      const headers = {};
      for (const h of ['retry-after', 'www-authenticate', 'content-type']) {
        const v = res.headers.get(h);
        if (v !== null) headers[h] = v;
      }
      lastHttpFailure = { status: res.status, headers };
    }
    return res;
  };
}

function errorInfo(err) {
  if (err instanceof McpError) {
    const out = { code: err.code, message: err.message.replace(/^MCP error -?\d+: /, '') };
    if (err.data !== undefined) out.data = err.data;
    return out;
  }
  const name = err?.constructor?.name ?? '';
  const message = String(err?.message ?? err);
  if (name === 'StreamableHTTPError' || name === 'UnauthorizedError') {
    const fail = lastHttpFailure;
    const httpStatus = name === 'UnauthorizedError' ? 401 : typeof err.code === 'number' && err.code > 0 ? err.code : fail?.status;
    const out = { code: httpStatus ?? -1, message, httpStatus };
    if (fail && fail.status === httpStatus) out.headers = fail.headers;
    // "Streamable HTTP error: Error POSTing to endpoint: <body>"
    const m = message.match(/Error POSTing to endpoint: ([\s\S]*)$/);
    if (m) {
      out.body = m[1];
      try {
        const body = JSON.parse(m[1]);
        if (body && body.error && typeof body.error.code === 'number') {
          out.code = body.error.code;
          out.message = body.error.message;
          if (body.error.data !== undefined) out.data = body.error.data;
          if (body.id !== undefined) out.id = body.id;
          delete out.body;
        }
      } catch {
        // body is not JSON
      }
    }
    return out;
  }
  return { code: typeof err?.code === 'number' ? err.code : -1, message };
}

async function listAll(fetchPage, key) {
  const items = [];
  let cursor;
  let pages = 0;
  const seen = new Set();
  for (;;) {
    const res = await fetchPage(cursor === undefined ? {} : { cursor });
    pages++;
    items.push(...(res[key] ?? []));
    cursor = res.nextCursor;
    if (cursor === undefined || cursor === null || cursor === '') break;
    if (seen.has(cursor)) throw new Error(`server repeated cursor ${JSON.stringify(cursor)}`);
    seen.add(cursor);
    if (pages >= MAX_PAGES) throw new Error(`more than ${MAX_PAGES} pages`);
  }
  return { [key]: items, pages };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const { url, ops, opts } = parseArgs(process.argv.slice(2));

  const notifications = {};
  const count = (method) => {
    notifications[method] = (notifications[method] ?? 0) + 1;
  };
  // tools/list_changed bookkeeping for waitToolsListChanged.
  let toolsChangedPending = 0;
  let toolsChangedWaiter = null;

  const client = new Client({ name: opts.clientName, version: '0.0.0' }, { capabilities: {} });
  client.fallbackNotificationHandler = async (n) => count(n.method);
  client.setNotificationHandler(ToolListChangedNotificationSchema, async (n) => {
    count(n.method);
    toolsChangedPending++;
    if (toolsChangedWaiter) toolsChangedWaiter();
  });
  client.onerror = (err) => {
    // One line per error: the SDK's validation errors span many lines.
    const text = String(err?.message ?? err).replace(/\s+/g, ' ');
    process.stderr.write(`client.mjs: transport error: ${text.length > 300 ? text.slice(0, 300) + '...' : text}\n`);
  };

  const transport = new StreamableHTTPClientTransport(url, {
    requestInit: { headers: opts.headers },
    fetch: makeFetch(opts.protocolVersion),
    // Do not retry the standalone GET stream for long after the server goes away.
    reconnectionOptions: { initialReconnectionDelay: 200, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1.5, maxRetries: 2 },
  });

  try {
    await client.connect(transport, { timeout: opts.timeout });
  } catch (err) {
    const info = errorInfo(err);
    process.stderr.write(`client.mjs: connecting to ${url} failed: ${info.message}\n`);
    await writeLine({ connectError: info });
    process.exit(1);
  }

  const results = [];
  for (let i = 0; i < ops.length; i++) {
    let op = ops[i];
    if (typeof op === 'string') op = { op };
    const name = op?.op;
    const p = { ...(op ?? {}), ...(op?.params ?? {}) };
    const reqOpts = { timeout: p.timeoutMs ?? opts.timeout };
    process.stderr.write(`STEP ${i} ${name}\n`);
    lastHttpFailure = null;
    try {
      let r;
      switch (name) {
        case 'listTools':
          r = await listAll((q) => client.listTools(q, reqOpts), 'tools');
          break;
        case 'callTool':
          r = await client.callTool({ name: p.name, arguments: p.arguments ?? {} }, undefined, reqOpts);
          break;
        case 'listResources':
          r = await listAll((q) => client.listResources(q, reqOpts), 'resources');
          break;
        case 'listResourceTemplates':
          r = await listAll((q) => client.listResourceTemplates(q, reqOpts), 'resourceTemplates');
          break;
        case 'readResource':
          r = await client.readResource({ uri: p.uri }, reqOpts);
          break;
        case 'listPrompts':
          r = await listAll((q) => client.listPrompts(q, reqOpts), 'prompts');
          break;
        case 'getPrompt': {
          const params = { name: p.name };
          if (p.arguments !== undefined) params.arguments = p.arguments;
          r = await client.getPrompt(params, reqOpts);
          break;
        }
        case 'complete': {
          const params = { ref: p.ref, argument: p.argument };
          if (p.context !== undefined) params.context = p.context;
          r = await client.complete(params, reqOpts);
          break;
        }
        case 'waitToolsListChanged': {
          const timeoutMs = p.timeoutMs ?? 10000;
          if (p.fresh) toolsChangedPending = 0;
          if (toolsChangedPending === 0) {
            await new Promise((resolve) => {
              const t = setTimeout(resolve, timeoutMs);
              toolsChangedWaiter = () => {
                clearTimeout(t);
                resolve();
              };
            });
            toolsChangedWaiter = null;
          }
          r = { received: toolsChangedPending > 0, count: toolsChangedPending };
          toolsChangedPending = 0;
          break;
        }
        case 'ping':
          r = await client.ping(reqOpts);
          break;
        case 'sleep':
          await sleep(p.ms ?? 0);
          r = {};
          break;
        default:
          r = { error: { code: -32601, message: `client.mjs: unknown op ${JSON.stringify(name)}` } };
      }
      results.push(r ?? {});
    } catch (err) {
      results.push({ error: errorInfo(err) });
    }
  }

  const session = {
    id: transport.sessionId ?? null,
    protocolVersion: transport.protocolVersion ?? null,
    serverInfo: client.getServerVersion() ?? null,
    capabilities: client.getServerCapabilities() ?? null,
  };
  // End the session politely (DELETE); a server that does not support it answers 405, which is fine.
  try {
    await Promise.race([transport.terminateSession(), sleep(2000)]);
  } catch {
    // ignore
  }
  try {
    await Promise.race([client.close(), sleep(2000)]);
  } catch {
    // ignore
  }
  await writeLine({ results, session, notifications });
  process.exit(0);
}

function writeLine(obj) {
  return new Promise((resolve) => process.stdout.write(JSON.stringify(obj) + '\n', resolve));
}

main().catch(async (err) => {
  process.stderr.write(`client.mjs: ${err?.stack ?? err}\n`);
  await writeLine({ connectError: { code: -1, message: String(err?.message ?? err) } });
  process.exit(1);
});
