import express from 'express';
import type { Services } from '../services.js';

/**
 * JSON bodies, parsed only after authentication (nobody unauthenticated makes us parse
 * megabytes), within bodyBytesMax, whatever the Content-Type says.
 */
export function jsonBody(services: Services) {
  return express.json({ limit: services.config.bodyBytesMax, type: () => true, strict: false });
}
