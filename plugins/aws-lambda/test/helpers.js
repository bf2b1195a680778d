'use strict';
// Shared by the tests: a configuration with an inline snapshot, a fixed clock, events.

const crypto = require('node:crypto');
const zlib = require('node:zlib');
const { mock } = require('node:test');
const { resetEngine } = require('../lib/engine');

const hash = (key) => `sha256:${crypto.createHash('sha256').update(key).digest('hex')}`;

/** 2026-03-15T12:00:00Z: the engine's clock in every test. */
const NOW = Date.UTC(2026, 2, 15, 12, 0, 0);

function config(extra = {}) {
  return {
    api_key: 'sk_test_lambda_tests',
    product_id: 'prod_lambda',
    ingest_url: 'http://127.0.0.1:9',
    routes: [
      { method: 'GET', path_prefix: '/v1/search', feature: 'search', metric: 'api_calls' },
      { path_prefix: '/v1/export', feature: 'export', metric: 'exports' },
    ],
    entitlements: {
      customers: {
        cust_a: { features: { search: { quota: 2, window: 'month' }, export: { allowed: false } } },
      },
      consumer_keys: [{ key_id: 'key_a', hash: hash('ck_lambda_alpha'), customer_id: 'cust_a' }],
    },
    ...extra,
  };
}

/** A fresh engine on `cfg`, with Date.now() fixed at NOW (restored by the test runner). */
function useConfig(t, cfg) {
  resetEngine();
  process.env.AFORO_CONFIG = JSON.stringify(cfg);
  t.mock.method(Date, 'now', () => NOW);
  t.after(() => { resetEngine(); delete process.env.AFORO_CONFIG; });
}

/** A CloudWatch Logs subscription event carrying `messages` (strings), as AWS encodes it. */
function logsEvent(messages, messageType = 'DATA_MESSAGE') {
  const payload = {
    messageType,
    owner: '123456789012',
    logGroup: 'API-Gateway-Execution-Logs_abcdef123/prod',
    logStream: 'access',
    subscriptionFilters: ['aforo-usage'],
    logEvents: messages.map((m, i) => ({ id: String(1000 + i), timestamp: NOW, message: m })),
  };
  return { awslogs: { data: zlib.gzipSync(Buffer.from(JSON.stringify(payload))).toString('base64') } };
}

module.exports = { hash, NOW, config, useConfig, logsEvent, mock };
