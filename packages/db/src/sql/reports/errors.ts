import { CodedError } from '../../coded-error.js';

/** A cursor or argument a caller passed that a report cannot use (the API answers 400). */
export class ReportQueryError extends CodedError<'invalid_report_query'> {
  constructor(readonly param: string, message: string) {
    super('invalid_report_query', message);
  }
}
