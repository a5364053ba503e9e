// The library's test wait (src/testing/until.ts), for the integration tests.
export { until, waitFor } from '../../src/testing/until.js';
