#!/usr/bin/env node
// A parley agent in JavaScript: Node.js 18.3 or later, no npm packages
// (the built-in fetch; the event stream is parsed by hand).
//
// Either the operator registers the agent once, which gives it a token good
// only for this agent's own calls (not for approvals, not for other agents):
//
//   parley agents register --name nodequoter --capability quote --token-file nodequoter.token
//   node examples/node/agent.mjs --name nodequoter --token-file nodequoter.token
//
// or, run by the operator, it registers itself with the daemon's operator
// token in <home>/api.token, and again after every daemon restart:
//
//   node examples/node/agent.mjs --name nodequoter --capability quote
//
// It bids on every call, reports progress and returns a quote, like
// examples/python/agent.py. When the daemon restarts it reconnects with
// backoff as the same agent. Ctrl-C or SIGTERM stop it (exit 0); a problem
// it cannot mend is one line on stderr and exit 1.

import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const prog = "agent.mjs";

let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      home: { type: "string" }, // the daemon's home (default: $PARLEY_HOME, else ~/.parley)
      api: { type: "string" }, // the daemon's API URL (default: read from <home>/api)
      "token-file": { type: "string" }, // the agent token (or $PARLEY_AGENT_TOKEN); without one it registers itself
      name: { type: "string", default: "nodequoter" },
      capability: { type: "string", multiple: true }, // when it registers itself (default: quote)
      price: { type: "string", default: "2" },
    },
  }));
} catch (e) {
  fail(e.message);
}
const home = opts.home ?? (process.env.PARLEY_HOME || join(homedir(), ".parley"));
const name = opts.name;
const capabilities = opts.capability ?? ["quote"];
const price = Number(opts.price);
if (!Number.isFinite(price) || price < 0) fail(`--price ${opts.price}: want a number of 0 or more`);

// Errors: the daemon's answers carry {"error": "...", "code": "..."}; the
// code (or else the status) says what went wrong.
class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}
class Unreachable extends Error {} // no daemon, a stale address, a broken connection: try again later
class StreamBusy extends ApiError {} // the agent's stream is open elsewhere (maybe our own, for a moment)

const codes = { 400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
  409: "conflict", 413: "payload_too_large", 500: "internal", 501: "not_implemented", 503: "unavailable" };
const retriable = (e) => e instanceof Unreachable || (e instanceof ApiError && ["unavailable", "internal"].includes(e.code));

function fail(message) {
  process.stderr.write(`${prog}: ${message}\n`);
  process.exit(1);
}
const log = (message) => process.stderr.write(`${prog}: ${name}: ${message}\n`);

function readHome(file) {
  const path = join(home, file);
  let value = "";
  try {
    value = readFileSync(path, "utf8").trim();
  } catch (e) {
    if (e.code !== "ENOENT") throw new Error(`cannot read ${path}: ${e.message}`);
  }
  if (!value) throw new Unreachable(`no daemon running for home ${home} (start one with: parley run --home ${home})`);
  return value;
}

function readToken() {
  const file = opts["token-file"];
  if (!file) return process.env.PARLEY_AGENT_TOKEN || null;
  let token;
  try {
    token = readFileSync(file, "utf8").trim();
  } catch (e) {
    fail(`token file ${file}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
  }
  if (!token) fail(`token file ${file} is empty`);
  return token;
}

// send makes one request of the API and returns the response, or throws
// ApiError or Unreachable. A restarted daemon may listen elsewhere: the
// URL is read from the home each time.
async function send(method, path, body, token, what, signal) {
  const url = (opts.api ?? readHome("api")).replace(/\/+$/, "");
  let resp;
  try {
    resp = await fetch(url + path, {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", Accept: "application/json, text/event-stream" },
      body: body === undefined ? undefined : JSON.stringify(body),
      redirect: "error",
      signal,
    });
  } catch (e) {
    if (signal?.aborted) throw e;
    const cause = e.cause?.code ?? e.cause?.message ?? e.message;
    throw new Unreachable(cause === "ECONNREFUSED" ? `no daemon answers at ${url} (is it running?)` : `cannot reach the daemon at ${url}: ${cause}`);
  }
  if (resp.ok) return resp;
  const text = await resp.text().catch(() => "");
  let message = text.trim() || `HTTP ${resp.status}`;
  let code = codes[resp.status];
  try {
    const doc = JSON.parse(text);
    if (typeof doc.error === "string") message = doc.error;
    if (typeof doc.code === "string" && doc.code) code = doc.code;
  } catch {
    // not the daemon's JSON: keep the text
  }
  throw new ApiError(`${what}: ${message}`, resp.status, code);
}

// post sends an answer (bid, progress, result, failure). What the daemon
// refuses (a call that closed, a task that moved on) is logged, not fatal.
async function post(path, body, what) {
  try {
    await send("POST", path, { agent: name, ...body }, agentToken, what);
    return true;
  } catch (e) {
    log(e.message);
    return false;
  }
}

// events yields [event, data] from a Server-Sent Events response. A stream
// silent for longer than idleMs (the daemon pings every 15 s) is dead.
async function* events(resp, abort, idleMs = 60_000) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  let event = "";
  let data = [];
  let timer;
  try {
    for (;;) {
      clearTimeout(timer);
      timer = setTimeout(() => abort.abort(), idleMs);
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        if (stopping) return;
        throw new Unreachable(abort.signal.aborted ? "the event stream went silent" : `the event stream broke: ${e.message}`);
      }
      if (chunk.done) return;
      buf += decoder.decode(chunk.value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) yield [event || "message", data.join("\n")];
          event = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue; // the greeting, or a ping
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
    }
  } finally {
    clearTimeout(timer);
    reader.cancel().catch(() => {});
  }
}

const givenToken = readToken();
let agentToken = givenToken;
let registeredWith = null; // the operator token we registered with: a new one means a new daemon
let id = "";
let stopping = false;
let current = null; // the current stream's AbortController
let wake = null;

function stop() {
  stopping = true;
  current?.abort();
  wake?.();
}
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

async function openStream(token) {
  const abort = new AbortController();
  current = abort;
  if (stopping) abort.abort();
  try {
    const resp = await send("GET", `/v1/external/events?agent=${encodeURIComponent(name)}`, undefined, token,
      `event stream of ${name}`, abort.signal);
    return { resp, abort };
  } catch (e) {
    if (e instanceof ApiError && e.status === 409) throw new StreamBusy(e.message, e.status, e.code);
    throw e;
  }
}

async function connect() {
  if (givenToken) {
    try {
      return await openStream(givenToken);
    } catch (e) {
      if (e instanceof ApiError && [401, 403, 404].includes(e.status)) {
        throw new Error(`the daemon refused agent ${name}'s token (${e.message}); register it again with: ` +
          `parley agents register --name ${name} --capability ... --token-file FILE`);
      }
      throw e;
    }
  }
  const operator = readHome("api.token");
  const fresh = !agentToken || operator !== registeredWith;
  if (fresh) {
    // First connect, or a new daemon (each start writes a new operator
    // token): register again, same name, so the same key and AgentID.
    const resp = await send("POST", "/v1/external/agents", { name, capabilities }, operator, `register agent ${name}`);
    const reg = await resp.json();
    [agentToken, registeredWith, id] = [reg.token, operator, reg.id ?? ""];
  }
  try {
    return await openStream(agentToken);
  } catch (e) {
    if (!fresh && e instanceof ApiError && [401, 404].includes(e.status)) {
      // The same daemon revoked our token: someone registered the name
      // again or removed it. Taking it back would have two programs take
      // turns: stop instead.
      throw new Error(`agent ${name} was registered again or removed while this program served it ` +
        "(the daemon no longer takes its token); stopping");
    }
    throw e;
  }
}

function handle(kind, raw) {
  let ev;
  try {
    ev = JSON.parse(raw);
  } catch {
    log(`skipping a malformed ${kind} event: ${raw.slice(0, 100)}`);
    return;
  }
  const task = ev?.task;
  if (typeof task !== "string" || !task) {
    log(`skipping a ${kind} event without a task`);
    return;
  }
  if (kind === "call") {
    console.log("bid on", task);
    post("/v1/external/bid", { task, price, eta: "200ms", rationale: "node can" }, `bid on ${task}`);
  } else if (kind === "counter") {
    // A requester's counter-offer to our bid: the price is firm (a bid at
    // ev.counter.price would accept it, another price revise).
    post("/v1/external/bid", { task, refuse: "the price is firm" }, `answer to the counter on ${task}`);
  } else if (kind === "award") {
    (async () => {
      await post("/v1/external/progress", { task, fraction: 0.5, note: "working" }, `progress on ${task}`);
      const result = { quote: 7, by: "node", input: ev.input ?? null };
      if (await post("/v1/external/result", { task, result }, `result of ${task}`)) console.log("done", task);
    })();
  } else if (kind === "cancel") {
    console.log("canceled", task);
  }
}

async function main() {
  let delay = 250;
  let connectedOnce = false;
  let busy = 0;
  while (!stopping) {
    let stream;
    try {
      stream = await connect();
    } catch (e) {
      if (stopping) break;
      const again = (e instanceof StreamBusy && busy++ < 3) || (retriable(e) && connectedOnce);
      if (!again) throw e;
      const d = delay * (1 - 0.2 * Math.random());
      delay = Math.min(delay * 2, 10_000);
      log(`${e.message}; retrying in ${(d / 1000).toFixed(1)} s`);
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, d);
      });
      continue;
    }
    [connectedOnce, delay, busy] = [true, 250, 0];
    console.log(["connected", name, id].filter(Boolean).join(" "));
    let reason = "the daemon ended the event stream";
    try {
      for await (const [kind, data] of events(stream.resp, stream.abort)) handle(kind, data);
    } catch (e) {
      reason = e.message;
    }
    if (stopping) break;
    log(`${reason}; reconnecting`);
  }
}

main().then(
  () => process.exit(0),
  (e) => fail(e.message),
);
