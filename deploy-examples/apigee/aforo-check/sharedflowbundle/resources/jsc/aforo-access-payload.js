// The body of POST /v1/canAccess, built with JSON.stringify: whatever bytes a client puts in
// x-api-key (quotes, backslashes, `","tenantId":"…`, control characters) stay one JSON string,
// so a header can never add a field or name a customer. A message template would paste the
// value verbatim, and escapeJSON is documented to escape double quotes only (SOURCES.md).
// No tenantId: at the PreProxyFlowHook nothing has authenticated the caller, so the caller is
// its consumer key, and the agent refuses tenantId from this gateway key anyway.
var key = context.getVariable('request.header.x-api-key');
var body = {
  featureKey: String(context.getVariable('aforo.feature') || ''),
  clientIp: String(context.getVariable('client.ip') || '')
};
if (key !== null && key !== undefined) {
  // Present but empty is sent as empty: the agent answers 401, as for no key.
  body.apiKey = String(key);
}
context.setVariable('aforo.access_payload', JSON.stringify(body));
