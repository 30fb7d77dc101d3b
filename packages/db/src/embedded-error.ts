import { CodedError } from './coded-error.js';

/**
 * A failure to start the embedded Postgres. Its message is a sentence for the person who ran
 * `npm start` or `npm test`: what went wrong and what to do; launchers print it without a stack.
 */
export class EmbeddedPostgresError extends CodedError<'port_in_use' | 'launch_failed' | 'unsafe_directory'> {}

/** What every launch failure ends with: the two ways out that always exist. */
export const EMBEDDED_ADVICE = 'Set EMBEDDED_PG_PORT to a free port, or set DATABASE_URL to use a Postgres of your own.';
