import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import type { Services } from '../services.js';
import { assertJsonDepth } from './json-depth.js';

/**
 * JSON bodies, parsed only after authentication (nobody unauthenticated makes us parse
 * megabytes), within bodyBytesMax, whatever the Content-Type says, and nested no deeper than
 * jsonDepthMax — checked here, before any route looks at the body or anything is admitted.
 */
export function jsonBody(services: Services): RequestHandler {
  const parse = express.json({ limit: services.config.bodyBytesMax, type: () => true, strict: false });
  return (req: Request, res: Response, next: NextFunction): void => {
    parse(req, res, (error?: unknown) => {
      if (error) {
        next(error);
        return;
      }
      try {
        assertJsonDepth(req.body);
      } catch (depthError) {
        next(depthError);
        return;
      }
      next();
    });
  };
}
