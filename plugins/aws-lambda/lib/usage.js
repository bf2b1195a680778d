'use strict';
// API Gateway access logs, delivered by a CloudWatch Logs subscription (base64 gzip payload),
// become usage events: one per billable log line, its id derived from $context.extendedRequestId
// (API Gateway's own id; a client can set requestId), so a redelivered batch or a retried
// invocation counts once and every served request is its own event. Delivery is the core's: batches,
// retries with backoff, Retry-After, dead letters for refused events.

const zlib = require('node:zlib');
const { engineReady, runCalls, writeLogs } = require('./engine');

/** The decoded subscription payload: a CloudWatch Logs event, or the on-failure destination
 * record that wraps one (`requestPayload`), so a dead-lettered batch is replayed as it is. */
function decode(event) {
  const logs = (event && event.awslogs) || (event && event.requestPayload && event.requestPayload.awslogs);
  const data = logs && logs.data;
  if (typeof data !== 'string') throw new Error('aforo: not a CloudWatch Logs event (awslogs.data is missing)');
  return JSON.parse(zlib.gunzipSync(Buffer.from(data, 'base64')).toString('utf8'));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function handler(event, context) {
  const payload = decode(event);
  const summary = { lines: 0, metered: 0, skipped: 0, invalid: 0 };
  if (payload.messageType !== 'DATA_MESSAGE') return { ...summary, messageType: payload.messageType };
  const eng = await engineReady();
  const before = JSON.parse(eng.counters());
  for (const line of payload.logEvents || []) {
    summary.lines += 1;
    const r = JSON.parse(eng.meterLog(line.message, Date.now()));
    if (r.metered) summary.metered += 1;
    else if (r.skipped) summary.skipped += 1;
    else {
      summary.invalid += 1;
      console.warn(`aforo: log line ${line.id} not metered: ${r.invalid}`);
    }
  }
  // Deliver before returning: a frozen Lambda delivers nothing. Keep a margin for the reply.
  const remaining = () => (context && context.getRemainingTimeInMillis ? context.getRemainingTimeInMillis() : 30000);
  eng.flush(Date.now());
  for (;;) {
    await runCalls(eng);
    const c = JSON.parse(eng.counters());
    if (c.buffered === 0) {
      Object.assign(summary, {
        delivered: c.delivered - before.delivered,
        duplicates: c.duplicates - before.duplicates,
        rejected: c.rejected - before.rejected,
        deadLettered: c.deadLettered - before.deadLettered,
      });
      return summary;
    }
    if (remaining() < 3000) {
      // Let Lambda retry the invocation (then its on-failure destination): ids are stable, so
      // the retry counts nothing twice.
      throw new Error(`aforo: ${c.buffered} events not yet accepted by the ingest; failing so Lambda retries this batch`);
    }
    await sleep(Math.min(eng.tickPeriodMs(), 1000));
    eng.tick(Date.now());
  }
}

module.exports = { handler, decode };
