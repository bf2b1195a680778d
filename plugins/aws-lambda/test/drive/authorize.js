'use strict';
// Drives the authorizer for the Rust cross-host tests: reads {"config", "requests"} on stdin
// (requests: {method, path, headers, sourceIp}), runs each through the real handler as a v2
// (HTTP API) event and as a v1 (REST) event on two fresh engines, prints one JSON line:
// [{"v2": {isAuthorized, context}, "v1": {"effect": "Allow"|"Deny"|"Unauthorized", context}}].

const { handler } = require('../../lib/authorizer');
const { resetEngine } = require('../../lib/engine');

async function main() {
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const { config, requests } = JSON.parse(input);
  process.env.AFORO_CONFIG = JSON.stringify(config);
  console.log = () => {}; // keep stdout for the answer
  const v2 = [];
  resetEngine();
  for (const r of requests) {
    v2.push(await handler({
      version: '2.0', type: 'REQUEST', rawPath: r.path, rawQueryString: '', headers: r.headers,
      routeArn: 'arn:aws:execute-api:us-east-1:123456789012:api/prod/GET/x',
      requestContext: { http: { method: r.method, path: r.path, sourceIp: r.sourceIp }, requestId: 'x' },
    }));
  }
  const v1 = [];
  resetEngine();
  for (const r of requests) {
    try {
      const p = await handler({
        type: 'REQUEST', httpMethod: r.method, path: r.path, headers: r.headers,
        methodArn: 'arn:aws:execute-api:us-east-1:123456789012:api/prod/GET/x',
        requestContext: { identity: { sourceIp: r.sourceIp } },
      });
      v1.push({ effect: p.policyDocument.Statement[0].Effect, context: p.context });
    } catch (e) {
      v1.push({ effect: e.message === 'Unauthorized' ? 'Unauthorized' : `error: ${e.message}`, context: {} });
    }
  }
  process.stdout.write(`${JSON.stringify(requests.map((_, i) => ({ v2: v2[i], v1: v1[i] })))}\n`);
}

main().catch((e) => { process.stderr.write(`${e.stack}\n`); process.exit(1); });
