/** Positional parameters, each cast where it is used (`$n::type`): SQL text never holds a value. */
export class Params {
  readonly values: unknown[] = [];

  add(value: unknown, type: string): string {
    this.values.push(value);
    return `$${this.values.length}::${type}`;
  }
}
