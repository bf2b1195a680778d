'use strict';
// Drives the usage handler for the Rust tests: reads {"lines": [...], "times": N} on stdin and
// invokes the real handler N times with the same CloudWatch Logs event (a redelivery), printing
// each invocation's summary as one JSON line. Configuration comes from AFORO_* variables.

const zlib = require('node:zlib');
const { handler } = require('../../lib/usage');

async function main() {
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const { lines, times } = JSON.parse(input);
  const payload = {
    messageType: 'DATA_MESSAGE', owner: '123456789012', logGroup: 'access', logStream: 'prod',
    subscriptionFilters: ['aforo'], logEvents: lines.map((m, i) => ({ id: String(i), timestamp: Date.now(), message: m })),
  };
  const event = { awslogs: { data: zlib.gzipSync(Buffer.from(JSON.stringify(payload))).toString('base64') } };
  console.log = () => {};
  const out = [];
  for (let i = 0; i < times; i += 1) out.push(await handler(event, { getRemainingTimeInMillis: () => 30000 }));
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((e) => { process.stderr.write(`${e.stack}\n`); process.exit(1); });
