import type { Server } from 'node:http';
import type { Services } from './services.js';

/**
 * SIGTERM: refuse new calls (503 draining, readiness 503) but keep listening so load balancers
 * see it, let in-flight calls finish and settle up to the deadline, keep the heartbeat going
 * meanwhile (else other replicas would reconcile our live streams), then cut what is left,
 * hand pending lookups to the reconciler, stop beating (row removed) and close.
 */
export async function shutdown(services: Services, server: Server, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  const left = () => Math.max(0, until - Date.now());
  services.lifecycle.draining = true;
  void services.heartbeat.markDraining();
  const reconcilerStopped = services.reconciler.stop(left());
  const webhooksStopped = services.webhooks.stop(left());
  await waitForCalls(services, until);
  await reconcilerStopped;
  await webhooksStopped;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  // Cut streams end as client_closed: upstream aborted, the partial cost settled. A
  // non-streaming call goes on (its generation runs to the end upstream and is billed in
  // full; aborting it would lose the id): it is waited for, up to its own duration limit, while
  // the heartbeat, settler and pools are still up, so its settle lands before they stop.
  await waitForCalls(services, Date.now() + services.config.upstreamDurationMsMax + services.config.settleTimeoutMs);
  if (services.lifecycle.inFlight > 0) services.log.error({ inFlight: services.lifecycle.inFlight }, 'calls still running past their duration limit at shutdown; the reconciler settles them');
  await closed;
  services.costLookup.handOff();
  await services.costLookup.drain(Math.max(left(), 1_000));
  const unsettled = await services.settler.drain(left());
  if (unsettled > 0) services.log.error({ unsettled }, 'shutting down with unsettled costs; the reconciler will settle them from the generation lookup');
  const keys = await services.idempotencyWriter.drain(left());
  if (keys > 0) services.log.warn({ keys }, 'shutting down with idempotency keys unwritten; the reconciler finishes them');
  services.settler.stop();
  services.idempotencyWriter.stop();
  services.priceBook.stop();
  await services.heartbeat.stop();
  services.unsettledGauges.stop();
  await services.upstream.close();
  await services.pools.end();
}

async function waitForCalls(services: Services, until: number): Promise<void> {
  while (services.lifecycle.inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
}
