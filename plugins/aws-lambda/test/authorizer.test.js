'use strict';
// The authorizer against API Gateway's documented REQUEST events (v1 REST, v2 HTTP API):
// exact responses, and the mapping of each refusal through the deploy example's gateway
// responses.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { handler } = require('../lib/authorizer');
const { config, useConfig } = require('./helpers');

const v1 = () => structuredClone(require('./events/rest-v1-request.json'));
const v2 = () => structuredClone(require('./events/http-v2-request.json'));
const METHOD_ARN = 'arn:aws:execute-api:us-east-1:123456789012:abcdef123/prod/GET/v1/search';
// 2026-03-15T12:00Z to 2026-04-01T00:00Z, the monthly window's reset.
const RESET = 16 * 86400 + 12 * 3600;

test('REST: a key within its quota gets an Allow policy with the quota in the context', async (t) => {
  useConfig(t, config());
  assert.deepEqual(await handler(v1()), {
    principalId: 'cust_a',
    policyDocument: {
      Version: '2012-10-17',
      Statement: [{ Action: 'execute-api:Invoke', Effect: 'Allow', Resource: METHOD_ARN }],
    },
    context: {
      allowed: true, status: 200, customerId: 'cust_a', environment: 'sandbox', feature: 'search',
      metric: 'api_calls', keyId: 'key_a', quota: 2, remaining: 1, resetSeconds: RESET,
    },
  });
});

test('REST: past the quota the answer is Deny with quota_exhausted and Retry-After', async (t) => {
  useConfig(t, config());
  await handler(v1());
  await handler(v1());
  assert.deepEqual(await handler(v1()), {
    principalId: 'anonymous',
    policyDocument: {
      Version: '2012-10-17',
      Statement: [{ Action: 'execute-api:Invoke', Effect: 'Deny', Resource: METHOD_ARN }],
    },
    context: {
      allowed: false, status: 429, code: 'quota_exhausted',
      message: 'the quota of 2 per month is used up', quota: 2, remaining: 0, retryAfter: RESET,
    },
  });
});

test('REST: with rate_limit_headers false the context keeps the quota from clients, and the 429 its Retry-After', async (t) => {
  useConfig(t, config({ rate_limit_headers: false }));
  const allowed = await handler(v1());
  assert.equal(allowed.policyDocument.Statement[0].Effect, 'Allow');
  assert.deepEqual(allowed.context, {
    allowed: true, status: 200, customerId: 'cust_a', environment: 'sandbox', feature: 'search',
    metric: 'api_calls', keyId: 'key_a',
  });
  await handler(v1());
  const denied = await handler(v1());
  assert.equal(denied.policyDocument.Statement[0].Effect, 'Deny', 'the quota is still enforced');
  assert.deepEqual(denied.context, {
    allowed: false, status: 429, code: 'quota_exhausted',
    message: 'the quota of 2 per month is used up', retryAfter: RESET,
  });
});

test('REST: a missing or unknown key is the documented Unauthorized error (401)', async (t) => {
  useConfig(t, config());
  const none = v1();
  delete none.headers['X-Api-Key'];
  await assert.rejects(handler(none), { message: 'Unauthorized' });
  const wrong = v1();
  wrong.headers['X-Api-Key'] = 'ck_not_a_key';
  await assert.rejects(handler(wrong), { message: 'Unauthorized' });
});

test('REST: a feature outside the plan is Deny no_access', async (t) => {
  useConfig(t, config());
  const e = v1();
  e.path = '/v1/export';
  e.httpMethod = 'POST';
  const r = await handler(e);
  assert.equal(r.policyDocument.Statement[0].Effect, 'Deny');
  assert.deepEqual(r.context, {
    allowed: false, status: 403, code: 'no_access', message: 'the plan does not include \\"export\\"',
  });
});

test('HTTP API: the simple response, allowed then refused', async (t) => {
  useConfig(t, config());
  assert.deepEqual(await handler(v2()), {
    isAuthorized: true,
    context: {
      allowed: true, status: 200, customerId: 'cust_a', environment: 'sandbox', feature: 'search',
      metric: 'api_calls', keyId: 'key_a', quota: 2, remaining: 1, resetSeconds: RESET,
    },
  });
  await handler(v2());
  const r = await handler(v2());
  assert.equal(r.isAuthorized, false);
  assert.equal(r.context.code, 'quota_exhausted');
  const anon = v2();
  delete anon.headers['x-api-key'];
  assert.deepEqual(await handler(anon), {
    isAuthorized: false,
    context: { allowed: false, status: 401, code: 'invalid_key', message: 'an API key is required' },
  });
});

test('HTTP API on a named stage: the stage in rawPath is not part of the route', async (t) => {
  useConfig(t, config());
  const e = v2();
  e.rawPath = '/prod/v1/search';
  e.requestContext.stage = 'prod';
  const r = await handler(e);
  assert.equal(r.isAuthorized, true);
  assert.equal(r.context.feature, 'search');
});

test('REST: a null header (API Gateway sends them) is ignored, and the usage-plan API key is used', async (t) => {
  useConfig(t, config());
  const e = v1();
  delete e.headers['X-Api-Key'];
  e.headers['X-Null'] = null;
  e.requestContext.identity.apiKey = 'ck_lambda_alpha';
  const r = await handler(e);
  assert.equal(r.policyDocument.Statement[0].Effect, 'Allow');
});

test('a bad configuration fails with the field named', async (t) => {
  useConfig(t, config({ batch_size: 0 }));
  await assert.rejects(handler(v1()), /aforo: invalid configuration: batch_size: must be 1\.\.=1000, got 0/);
});

/** Renders a gateway response of the deploy example as API Gateway would for a Deny. */
function gatewayResponse(type, context) {
  const tpl = require(path.join(__dirname, '..', '..', '..', 'deploy-examples', 'aws', 'template.json'));
  const r = tpl.Resources.Api.Properties.GatewayResponses[type];
  const sub = (s) => s.replace(/\$context\.authorizer\.(\w+)/g, (_, k) => (context[k] === undefined ? '' : String(context[k])));
  const headers = {};
  for (const [name, expr] of Object.entries(r.ResponseParameters.Headers)) {
    const m = /^context\.authorizer\.(\w+)$/.exec(expr);
    headers[name] = m ? String(context[m[1]] ?? '') : expr.replace(/^'|'$/g, '');
  }
  return { status: r.StatusCode, headers, body: JSON.parse(sub(r.ResponseTemplates['application/json'])) };
}

test('the deploy example maps each refusal to a response a client can act on', async (t) => {
  useConfig(t, config());
  await handler(v1());
  await handler(v1());
  const quota = await handler(v1());
  // API Gateway cannot answer 429 from an authorizer: ACCESS_DENIED (403) carries the code,
  // the intended status and Retry-After.
  assert.deepEqual(gatewayResponse('ACCESS_DENIED', quota.context), {
    status: 403,
    headers: { 'Retry-After': String(RESET), 'RateLimit-Limit': '2', 'RateLimit-Remaining': '0' },
    body: { error: { code: 'quota_exhausted', message: 'the quota of 2 per month is used up', status: '429' } },
  });
  const e = v1();
  e.path = '/v1/export';
  const noAccess = await handler(e);
  assert.deepEqual(gatewayResponse('ACCESS_DENIED', noAccess.context).body, {
    error: { code: 'no_access', message: 'the plan does not include "export"', status: '403' },
  });
  assert.equal(gatewayResponse('UNAUTHORIZED', {}).status, 401);
  assert.deepEqual(gatewayResponse('UNAUTHORIZED', {}).body.error.code, 'invalid_key');
});
