'use strict';
// REQUEST Lambda authorizer for REST (v1 payload, IAM policy response) and HTTP APIs (v2
// payload, simple response). The decision is the core's, from the entitlement snapshot this
// instance keeps in memory (inline in AFORO_CONFIG, or synced from entitlements_url in the
// background). Authorizer caching must stay off: every request counts against its quota.

const { engineReady, runCalls, writeLogs } = require('./engine');

/** An HTTP API's rawPath starts with the stage unless it is `$default`; routes omit it. */
function withoutStage(path, stage) {
  if (!stage || stage === '$default') return path;
  const prefix = `/${stage}`;
  if (path === prefix) return '/';
  return path.startsWith(`${prefix}/`) ? path.slice(prefix.length) : path;
}

/** The request as the core reads it, from a v1 or v2 authorizer event. */
function requestOf(event) {
  const headers = {};
  for (const [k, v] of Object.entries(event.headers || {})) {
    if (v !== null && v !== undefined) headers[k.toLowerCase()] = String(v);
  }
  if (event.version === '2.0') {
    const ctx = event.requestContext || {};
    const http = ctx.http || {};
    const query = event.rawQueryString ? `?${event.rawQueryString}` : '';
    return { method: http.method || '', path: `${withoutStage(event.rawPath || http.path || '/', ctx.stage)}${query}`, headers, sourceIp: http.sourceIp };
  }
  const identity = (event.requestContext && event.requestContext.identity) || {};
  // An API key checked by an API Gateway usage plan is also accepted as the consumer key.
  if (identity.apiKey && !headers['x-api-key']) headers['x-api-key'] = identity.apiKey;
  return { method: event.httpMethod || '', path: event.path || '/', headers, sourceIp: identity.sourceIp };
}

/** The authorizer context: strings, numbers and booleans only (API Gateway's rule). The
 * message is JSON-escaped: gateway response templates paste it inside a JSON string. */
function contextOf(d) {
  const out = {};
  for (const k of ['allowed', 'status', 'code', 'message', 'customerId', 'environment', 'feature', 'metric',
    'keyId', 'quota', 'remaining', 'resetSeconds', 'retryAfter']) {
    if (d[k] !== undefined && d[k] !== null) out[k] = d[k];
  }
  if (typeof out.message === 'string') out.message = JSON.stringify(out.message).slice(1, -1);
  return out;
}

/** REST API: an IAM policy. 401 is the documented `Unauthorized` error; other refusals are a
 * Deny whose context carries the reason to the ACCESS_DENIED gateway response. */
function policyResponse(event, d) {
  if (d.status === 401) throw new Error('Unauthorized');
  return {
    principalId: d.customerId || 'anonymous',
    policyDocument: {
      Version: '2012-10-17',
      Statement: [{ Action: 'execute-api:Invoke', Effect: d.allowed ? 'Allow' : 'Deny', Resource: event.methodArn }],
    },
    context: contextOf(d),
  };
}

/** HTTP API: the simple response (a refusal is always 403 there). */
function simpleResponse(d) {
  return { isAuthorized: Boolean(d.allowed), context: contextOf(d) };
}

async function handler(event) {
  const eng = await engineReady();
  eng.tick(Date.now());
  const calls = runCalls(eng);
  // A cold instance waits for its first snapshot; a warm one decides now and lets the refresh
  // land in the background (it completes in this or a later invocation).
  if (!eng.hasSnapshot()) await calls; else calls.catch(() => {});
  const d = JSON.parse(eng.authorize(JSON.stringify(requestOf(event)), Date.now()));
  writeLogs(eng);
  return event.version === '2.0' ? simpleResponse(d) : policyResponse(event, d);
}

module.exports = { handler, requestOf, contextOf };
