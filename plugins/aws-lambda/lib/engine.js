'use strict';
// One core engine per Lambda instance (kept across invocations), configured from the
// environment: AFORO_CONFIG (the filter's JSON configuration) merged under AFORO_* variables.
// Outbound calls the engine starts (snapshot sync, ingest batches) are made here with fetch.

const path = require('node:path');

let wasm;
function core() {
  if (!wasm) wasm = require(path.join(__dirname, '..', 'pkg', 'aforo_lambda.js'));
  return wasm;
}

let engine = null;

/** The instance's engine, built on first use; throws with the field at fault on bad config. */
function getEngine(env = process.env) {
  if (engine) return engine;
  const vars = {};
  for (const [k, v] of Object.entries(env)) if (k.startsWith('AFORO_')) vars[k] = v;
  const seed = Math.floor(Math.random() * Number.MAX_SAFE_INTEGER);
  try {
    engine = new (core().Engine)(env.AFORO_CONFIG || '', JSON.stringify(vars), seed);
  } catch (e) {
    throw new Error(`aforo: invalid configuration: ${e.message}`);
  }
  console.log(`aforo: ${engine.summary()}`);
  return engine;
}

/** Drops the instance's engine (tests). */
function resetEngine() {
  if (engine) engine.free();
  engine = null;
}

function writeLogs(eng) {
  for (const l of JSON.parse(eng.takeLogs())) {
    (console[l.level] || console.log)(l.message);
  }
}

/** Makes every call the engine started and hands the answers back; resolves when all are done. */
async function runCalls(eng) {
  const calls = JSON.parse(eng.takeCalls());
  await Promise.all(calls.map(async (c) => {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), c.timeoutMs);
    try {
      const r = await fetch(c.url, {
        method: c.method,
        headers: c.headers,
        body: c.method === 'GET' ? undefined : c.body,
        signal: ctl.signal,
      });
      const body = new Uint8Array(await r.arrayBuffer());
      const headers = {};
      r.headers.forEach((v, k) => { headers[k] = v; });
      eng.onResponse(c.token, r.status, JSON.stringify(headers), body, Date.now());
    } catch (e) {
      eng.onFailure(c.token, Date.now());
    } finally {
      clearTimeout(timer);
    }
  }));
  writeLogs(eng);
  return calls.length;
}

module.exports = { getEngine, resetEngine, runCalls, writeLogs };
