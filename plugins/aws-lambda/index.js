'use strict';
// AWS Lambda entry points: `index.authorizer` (REQUEST authorizer, REST and HTTP APIs) and
// `index.usage` (API Gateway access logs from a CloudWatch Logs subscription).
module.exports = {
  authorizer: require('./lib/authorizer').handler,
  usage: require('./lib/usage').handler,
};
