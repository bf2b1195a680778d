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

/** Reads a Secrets Manager secret's string with the AWS SDK the Node.js runtimes include. */
async function readSecret(arn) {
  const { SecretsManagerClient, GetSecretValueCommand } = require('@aws-sdk/client-secrets-manager');
  const out = await new SecretsManagerClient({}).send(new GetSecretValueCommand({ SecretId: arn }));
  if (typeof out.SecretString !== 'string') {
    throw new Error(`aforo: the secret ${arn} has no SecretString: store the gateway key (sk_test_… or sk_live_…) as plain text`);
  }
  return out.SecretString;
}

let secretReader = readSecret;

/** Replaces how secrets are read (tests). */
function setSecretReader(fn) {
  secretReader = fn || readSecret;
}

/** The environment with AFORO_API_KEY read from Secrets Manager when AFORO_API_KEY_SECRET_ARN
 * names the secret (once per instance, at cold start): the key is never in a function's
 * environment, where every reader of the function's configuration would see it. */
async function withKey(env) {
  const arn = env.AFORO_API_KEY_SECRET_ARN;
  if (!arn || env.AFORO_API_KEY) return env;
  let key;
  try {
    key = (await secretReader(arn)).trim();
  } catch (e) {
    throw new Error(`aforo: cannot read the gateway key from ${arn} (AFORO_API_KEY_SECRET_ARN): ${e.message}; the function's role needs secretsmanager:GetSecretValue on it`);
  }
  return { ...env, AFORO_API_KEY: key };
}

/** The instance's engine once its key is read (see `withKey`). */
async function engineReady(env = process.env) {
  if (engine) return engine;
  return getEngine(await withKey(env));
}

/** The instance's engine, built on first use; throws with the field at fault on bad config. */
function getEngine(env = process.env) {
  if (engine) return engine;
  const vars = {};
  for (const [k, v] of Object.entries(env)) {
    if (k.startsWith('AFORO_') && k !== 'AFORO_API_KEY_SECRET_ARN') vars[k] = v;
  }
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

module.exports = { getEngine, engineReady, setSecretReader, resetEngine, runCalls, writeLogs };
