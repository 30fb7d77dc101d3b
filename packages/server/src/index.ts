export { loadConfig, ConfigError, type Config } from './config.js';
export { startRuntime, MIGRATIONS_DIR, type Runtime, type RuntimeOptions } from './runtime.js';
export { createLogger, type Logger } from './log.js';
export { MetergateError, type ErrorCode } from './errors.js';
export { DoneSplitter } from './upstream/done-splitter.js';
export { SseTap } from './upstream/sse-tap.js';
export { costFromUsage } from './billing/usage-cost.js';
export { newApiKey, hashApiKey } from './auth/api-keys.js';
