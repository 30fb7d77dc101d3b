-- What served a usage entry and whether it was BYOK (hardening issue items 12 and 13).
--
-- From this migration on, a usage entry's `model` is the model that SERVED the call (the
-- `model` of the response body or stream chunks, or of /generation when the cost was looked
-- up), falling back to the model the client asked for when the upstream named none. Rollups
-- and reports key by `model`, so they group by the served model. `requested_model` keeps what
-- the client asked for (NULL when it sent only a `models` fallback list, or no model at all),
-- `provider` the upstream provider that served it (OpenRouter's `provider`/`provider_name`),
-- `is_byok` whether it was a bring-your-own-key call (whose cost is OpenRouter's fee plus the
-- provider's charge). NULL in the three on grants, adjustments and usage entries settled
-- before 0008 (those keep the requested model in `model`: what served them is not known).
--
-- Nullable columns without a default: a catalogue-only change, no rewrite of a large ledger;
-- the append-only trigger is not involved (no UPDATE of existing rows).
alter table ledger_entries
  add column requested_model text,
  add column provider text,
  add column is_byok boolean;
