import type { ModelRules } from '@metergate/db';
import { MetergateError } from '../errors.js';

/**
 * Model allow/deny lists. An entry is an exact model id (`openai/gpt-4o-mini`) or a vendor
 * pattern (`openai/*`, every id starting with `openai/`). A variant (`…:online`, `…:free`) is
 * judged as itself and as its base model: denying `openai/gpt-4o` denies `openai/gpt-4o:online`,
 * and allowing the base allows its variants. Deny wins; a null list is no rule, an empty allow
 * list allows nothing.
 */
export function isValidPattern(entry: string): boolean {
  return entry.length > 0 && entry.length <= 256 && (entry.endsWith('/*') ? !entry.slice(0, -2).includes('*') && entry.length > 2 : !entry.includes('*'));
}

function matches(entry: string, model: string): boolean {
  if (entry.endsWith('/*')) return model.startsWith(entry.slice(0, -1));
  return entry === model;
}

function matchesAny(list: readonly string[], model: string): boolean {
  const base = model.includes(':') ? model.slice(0, model.indexOf(':')) : model;
  return list.some((entry) => matches(entry, model) || matches(entry, base));
}

/** Whether `model` passes one scope's rules. */
export function allowedBy(rules: ModelRules, model: string): boolean {
  if (rules.deny !== null && matchesAny(rules.deny, model)) return false;
  return rules.allow === null || matchesAny(rules.allow, model);
}

export interface CallerRules { user: ModelRules; key: ModelRules }

export function hasRules(rules: CallerRules): boolean {
  return [rules.user.allow, rules.user.deny, rules.key.allow, rules.key.deny].some((list) => list !== null);
}

export function modelAllowed(rules: CallerRules, model: string): boolean {
  return allowedBy(rules.user, model) && allowedBy(rules.key, model);
}

/**
 * 403 before anything is admitted or sent upstream when the call names a model its user or
 * key may not use (`model` and every `models` fallback), or names none while an allow list
 * applies (the upstream would choose one).
 */
export function assertModelsAllowed(rules: CallerRules, raw: Record<string, unknown>): void {
  if (!hasRules(rules)) return;
  const named: Array<{ model: string; param: string }> = [];
  if (typeof raw.model === 'string') named.push({ model: raw.model, param: 'model' });
  if (Array.isArray(raw.models)) for (const model of raw.models) if (typeof model === 'string') named.push({ model, param: 'models' });
  if (named.length === 0 && (rules.user.allow !== null || rules.key.allow !== null)) {
    throw new MetergateError('model_not_allowed', 'this key may use only some models: name one in `model`', { param: 'model' });
  }
  for (const { model, param } of named) {
    if (!modelAllowed(rules, model)) {
      const which = allowedBy(rules.user, model) ? 'API key' : 'user';
      throw new MetergateError('model_not_allowed', `model ${JSON.stringify(model)} is not allowed for this ${which}`, { param });
    }
  }
}
