'use strict';
// The usage handler against CloudWatch Logs subscription events: AWS's documented sample, and
// access-log lines in the deploy example's format delivered to a local recording ingest.

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const { handler, decode } = require('../lib/usage');
const { config, useConfig, logsEvent, NOW } = require('./helpers');

/** An ingest on a free loopback port that records every event and acknowledges it. */
async function ingest(t, answer = () => 202) {
  const batches = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const events = JSON.parse(body).events;
      const status = answer(batches.length);
      batches.push({ status, auth: req.headers.authorization, events });
      res.writeHead(status, { 'content-type': 'application/json', 'retry-after': '0' });
      res.end(JSON.stringify(status === 202 ? { accepted: events.length, duplicates: 0, rejected: [] } : {}));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  return { url: `http://127.0.0.1:${server.address().port}`, batches };
}

/** A log line in the deploy example's access-log format, rendered with these values. */
function line(values) {
  const tpl = require(path.join(__dirname, '..', '..', '..', 'deploy-examples', 'aws', 'template.json'));
  const format = tpl.Resources.Api.Properties.AccessLogSetting.Format;
  return format.replace(/\$context\.([\w.]+)/g, (_, k) => String(values[k] ?? '-'));
}

// API Gateway generates extendedRequestId; requestId is whatever the client sent in
// X-Amzn-RequestId (or a generated one).
const call = (id, extra = {}) => line({
  requestId: id, extendedRequestId: id, requestTimeEpoch: NOW - 1000, httpMethod: 'GET', path: '/prod/v1/search', stage: 'prod', status: 200,
  responseLength: 512, 'authorizer.customerId': 'cust_a', 'authorizer.environment': 'sandbox',
  'authorizer.keyId': 'key_a', 'identity.sourceIp': '203.0.113.7', ...extra,
});

const ctx = { getRemainingTimeInMillis: () => 60000 };

test("AWS's sample subscription event decodes; its lines are not access logs and are counted as such", async (t) => {
  useConfig(t, config());
  const sample = require('./events/cloudwatch-logs-aws-sample.json');
  assert.equal(decode(sample).logEvents.length, 2);
  assert.deepEqual(await handler(sample, ctx), {
    lines: 2, metered: 0, skipped: 0, invalid: 2, delivered: 0, duplicates: 0, rejected: 0, deadLettered: 0,
  });
});

test('a control message is acknowledged and meters nothing', async (t) => {
  useConfig(t, config());
  assert.deepEqual(await handler(logsEvent([], 'CONTROL_MESSAGE'), ctx), {
    lines: 0, metered: 0, skipped: 0, invalid: 0, messageType: 'CONTROL_MESSAGE',
  });
});

test('billable lines become events with the seven fields; a redelivered batch keeps its ids', async (t) => {
  const sink = await ingest(t);
  useConfig(t, config({ ingest_url: sink.url }));
  const event = logsEvent([
    call('req-1'),
    call('req-2', { httpMethod: 'GET', status: 304 }),
    call('req-3', { path: '/prod/healthz' }),
    call('req-4', { status: 500 }),
  ]);
  assert.deepEqual(await handler(event, ctx), {
    lines: 4, metered: 2, skipped: 2, invalid: 0, delivered: 2, duplicates: 0, rejected: 0, deadLettered: 0,
  });
  assert.equal(sink.batches.length, 1);
  assert.equal(sink.batches[0].auth, 'Bearer sk_test_lambda_tests');
  const [first] = sink.batches[0].events;
  assert.deepEqual(
    { ...first, id: undefined, properties: undefined },
    {
      id: undefined, customer_id: 'cust_a', metric: 'api_calls', quantity: '1',
      timestamp: '2026-03-15T11:59:59Z', product_id: 'prod_lambda', environment: 'sandbox', properties: undefined,
    },
  );
  assert.equal(first.properties.endpoint, '/v1/search');
  assert.equal(first.properties.key_id, 'key_a');
  // CloudWatch (or a Lambda retry) delivers the same batch again: the same ids, which the
  // ingest deduplicates.
  await handler(event, ctx);
  const ids = sink.batches.map((b) => b.events.map((e) => e.id));
  assert.deepEqual(ids[1], ids[0]);
});

test('an ingest that fails is retried within the invocation', async (t) => {
  const sink = await ingest(t, (n) => (n === 0 ? 503 : 202));
  useConfig(t, config({ ingest_url: sink.url, initial_backoff_ms: 100, max_backoff_ms: 200 }));
  // The real clock must move for the retry deadline to pass.
  Date.now.mock.restore();
  const r = await handler(logsEvent([call('retry-1', { requestTimeEpoch: Date.now() })]), ctx);
  assert.equal(r.delivered, 1);
  assert.deepEqual(sink.batches.map((b) => b.status), [503, 202]);
  assert.deepEqual(sink.batches[0].events[0].id, sink.batches[1].events[0].id);
});

test('an ingest still down when time runs out fails the invocation so Lambda retries it', async (t) => {
  const sink = await ingest(t, () => 503);
  useConfig(t, config({ ingest_url: sink.url }));
  Date.now.mock.restore();
  const short = { getRemainingTimeInMillis: () => 1000 };
  await assert.rejects(
    handler(logsEvent([call('down-1', { requestTimeEpoch: Date.now() })]), short),
    /1 events not yet accepted by the ingest; failing so Lambda retries this batch/,
  );
});

test('a billable line without the authorizer context is reported, not guessed', async (t) => {
  useConfig(t, config());
  const r = await handler(logsEvent([call('x', { 'authorizer.customerId': '-' })]), ctx);
  assert.equal(r.invalid, 1);
});

test('a refused request (no authorizer context, 401/403) is skipped quietly', async (t) => {
  useConfig(t, config());
  const refused = [call('r401', { status: 401, 'authorizer.customerId': '-' }), call('r403', { status: 403, 'authorizer.customerId': '-' })];
  const r = await handler(logsEvent(refused), ctx);
  assert.deepEqual([r.metered, r.skipped, r.invalid], [0, 2, 0]);
});

test('a route whose quantity the log cannot carry is refused and counted, never billed as zero', async (t) => {
  const sink = await ingest(t);
  useConfig(t, config({
    ingest_url: sink.url,
    routes: [{ method: 'GET', path_prefix: '/v1/search', feature: 'search', metric: 'bytes_in', quantity: { from: 'request_bytes' } }],
  }));
  const r = await handler(logsEvent([call('rb-1')]), ctx);
  assert.deepEqual([r.metered, r.rejected, r.delivered], [1, 1, 0]);
  assert.equal(sink.batches.length, 0);
});

test('a batch from the on-failure destination is replayed as it is', async (t) => {
  const sink = await ingest(t);
  useConfig(t, config({ ingest_url: sink.url }));
  const record = { version: '1.0', requestContext: { condition: 'RetriesExhausted' }, requestPayload: logsEvent([call('dlq-1')]) };
  const r = await handler(record, ctx);
  assert.equal(r.delivered, 1);
});

test('a request id the client chose never merges served requests: events are keyed on extendedRequestId', async (t) => {
  const sink = await ingest(t);
  useConfig(t, config({ ingest_url: sink.url }));
  // Three requests, each with the same X-Amzn-RequestId: API Gateway logs it as requestId.
  const chosen = '11111111-2222-4333-8444-555555555555';
  const lines = ['AbCdEf1=', 'AbCdEf2=', 'AbCdEf3='].map((ext) => call(chosen, { extendedRequestId: ext }));
  const r = await handler(logsEvent(lines), ctx);
  assert.deepEqual([r.metered, r.delivered, r.duplicates], [3, 3, 0]);
  assert.equal(new Set(sink.batches[0].events.map((e) => e.id)).size, 3);
});

test('a line without extendedRequestId is refused with the fix, not keyed on requestId', async (t) => {
  useConfig(t, config());
  const errors = [];
  t.mock.method(console, 'warn', (m) => errors.push(m));
  const r = await handler(logsEvent([call('c1', { extendedRequestId: '-' })]), ctx);
  assert.deepEqual([r.metered, r.invalid], [0, 1]);
  assert.match(errors.join('\n'), /extendedRequestId.*\$context\.extendedRequestId/);
});

test('a value that breaks out of its string in the log line bills nobody', async (t) => {
  useConfig(t, config());
  // If API Gateway ever wrote a path unescaped, `","customerId":"cust_b` would add a second
  // customerId: the line is refused, never billed to either customer.
  const r = await handler(logsEvent([call('inj-1', { path: '/prod/v1/search","customerId":"cust_b' })]), ctx);
  assert.deepEqual([r.metered, r.invalid], [0, 1]);
});

test('the gateway key is read from Secrets Manager once, never from the environment', async (t) => {
  const { setSecretReader } = require('../lib/engine');
  const sink = await ingest(t);
  const cfg = config({ ingest_url: sink.url });
  delete cfg.api_key;
  useConfig(t, cfg);
  const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:aforo/gateway-key-AbCdEf';
  process.env.AFORO_API_KEY_SECRET_ARN = arn;
  const asked = [];
  setSecretReader(async (a) => { asked.push(a); return 'sk_test_from_the_secret\n'; });
  t.after(() => { setSecretReader(null); delete process.env.AFORO_API_KEY_SECRET_ARN; });
  await handler(logsEvent([call('s-1')]), ctx);
  await handler(logsEvent([call('s-2')]), ctx);
  assert.deepEqual(asked, [arn], 'read once per instance');
  assert.deepEqual(sink.batches.map((b) => b.auth), ['Bearer sk_test_from_the_secret', 'Bearer sk_test_from_the_secret']);
});

test('a secret that cannot be read fails with the ARN and the permission to grant', async (t) => {
  const { setSecretReader } = require('../lib/engine');
  const cfg = config();
  delete cfg.api_key;
  useConfig(t, cfg);
  process.env.AFORO_API_KEY_SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:missing';
  setSecretReader(async () => { throw new Error('AccessDeniedException'); });
  t.after(() => { setSecretReader(null); delete process.env.AFORO_API_KEY_SECRET_ARN; });
  await assert.rejects(handler(logsEvent([call('s-3')]), ctx),
    /cannot read the gateway key from arn:aws:secretsmanager:.*missing \(AFORO_API_KEY_SECRET_ARN\): AccessDeniedException; the function's role needs secretsmanager:GetSecretValue/);
});
