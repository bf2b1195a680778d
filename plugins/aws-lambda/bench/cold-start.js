'use strict';
// Cold start of the Lambda package in Node: a fresh process loads the wasm (compile +
// instantiate), builds the engine, syncs a snapshot of CUSTOMERS customers from a local
// entitlements URL (as a deployed authorizer does from the agent or the ingest), and answers
// its first authorizer event. Prints the median of RUNS fresh processes, and the warm
// per-request cost.
//   node bench/cold-start.js            # RUNS=15 CUSTOMERS=1000

const { execFile } = require('node:child_process');
const http = require('node:http');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const RUNS = Number(process.env.RUNS || 15);
const CUSTOMERS = Number(process.env.CUSTOMERS || 1000);

if (process.argv[2] === '--child') {
  const t0 = process.hrtime.bigint();
  const { handler } = require('../lib/authorizer');
  const event = {
    version: '2.0', type: 'REQUEST', rawPath: '/v1/search', rawQueryString: '',
    headers: { 'x-api-key': 'ck_bench_00001' },
    requestContext: { http: { method: 'GET', path: '/v1/search', sourceIp: '203.0.113.7' } },
  };
  console.log = () => {};
  console.info = () => {};
  handler(event).then(async (r) => {
    const cold = Number(process.hrtime.bigint() - t0) / 1e6;
    if (!r.isAuthorized) throw new Error(JSON.stringify(r));
    const n = 20000;
    const t1 = process.hrtime.bigint();
    for (let i = 0; i < n; i += 1) await handler(event);
    const warm = Number(process.hrtime.bigint() - t1) / 1e3 / n;
    process.stdout.write(JSON.stringify({ cold, warm }));
  });
  return;
}

const customers = {};
const keys = [];
for (let i = 0; i < CUSTOMERS; i += 1) {
  const id = `cust_${String(i).padStart(5, '0')}`;
  customers[id] = { features: { search: { quota: 1e12 } } };
  keys.push({ key_id: `k${i}`, hash: `sha256:${crypto.createHash('sha256').update(`ck_bench_${String(i).padStart(5, '0')}`).digest('hex')}`, customer_id: id });
}
const snapshot = JSON.stringify({ customers, consumer_keys: keys });

async function main() {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(snapshot);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${server.address().port}`;
  const config = JSON.stringify({
    api_key: 'sk_test_bench', product_id: 'bench', ingest_url: base,
    entitlements_url: `${base}/v1/entitlements`, failure_mode: 'closed',
    routes: [{ method: 'GET', path_prefix: '/v1/search', feature: 'search', metric: 'api_calls' }],
  });
  const results = [];
  for (let i = 0; i < RUNS; i += 1) {
    const out = await new Promise((resolve, reject) => {
      execFile(process.execPath, [__filename, '--child'], { env: { ...process.env, AFORO_CONFIG: config } },
        (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout)));
    });
    results.push(JSON.parse(out));
  }
  server.close();
  report(results);
}

function report(results) {
const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const wasm = fs.statSync(path.join(__dirname, '..', 'pkg', 'aforo_lambda_bg.wasm')).size;
console.log(`node ${process.version}; ${CUSTOMERS} customers in the snapshot; ${RUNS} fresh processes`);
console.log(`aforo_lambda_bg.wasm: ${wasm} bytes`);
console.log(`cold start (require + compile + engine + first decision): median ${median(results.map((r) => r.cold)).toFixed(1)} ms`);
console.log(`snapshot: ${snapshot.length} bytes, synced over HTTP during each cold start`);
console.log(`warm authorizer call (handler, v2 event): median ${median(results.map((r) => r.warm)).toFixed(1)} µs`);
}

main().catch((e) => { console.error(e); process.exit(1); });
