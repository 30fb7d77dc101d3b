// @metergate/simulator: an in-process or standalone OpenRouter simulator for tests and
// benchmarks of the Metergate proxy. See /work/shared/openrouter-protocol.md for the protocol.
export { startSimulator } from './simulator.js';
export { MODELS, DEFAULT_MODEL_ID, findModel, priceOf, type ModelSpec, type Price } from './models.js';
export { formatUsd, usdNumber } from './money.js';
export { completionText, tokenText } from './lorem.js';
export { STEERING_LIMITS } from './steering.js';
export type {
  FinishReason,
  GenerationRecord,
  RequestLogEntry,
  SimErrorBefore,
  SimSteering,
  Simulator,
  SimulatorOptions,
} from './types.js';
