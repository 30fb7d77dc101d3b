/** A cursor or argument a caller passed that a report cannot use (the API answers 400). */
export class ReportQueryError extends Error {
  constructor(readonly param: string, message: string) {
    super(message);
  }
}
