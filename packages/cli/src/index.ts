export const CLI_NAME = 'metergate';
export { buildProgram, run } from './program.js';
export { ExitCode, CliError } from './errors.js';
