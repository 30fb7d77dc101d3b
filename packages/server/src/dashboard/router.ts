import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Router, type Response } from 'express';
import { MetergateError } from '../errors.js';

interface Asset { type: string; body: string | Buffer }

/** uPlot from node_modules (a dependency of this package): no CDN, works offline. */
function vendorAsset(file: string, type: string): Asset {
  const require = createRequire(import.meta.url);
  return { type, body: readFileSync(require.resolve(`uplot/dist/${file}`)) };
}

/**
 * The dashboard's own files, served as they are: packages/server/static/dashboard (the browser
 * script is type-checked there by its own tsconfig in `tsc -b`; nothing is emitted). From
 * dist/src/dashboard/ that is three levels up; the Docker image copies static/ beside dist/.
 */
const STATIC_DIR = new URL('../../../static/dashboard/', import.meta.url);

function ownAsset(file: string, type: string): Asset {
  return { type, body: readFileSync(new URL(file, STATIC_DIR)) };
}

function loadAssets(): Map<string, Asset> {
  return new Map([
    ['dashboard.js', ownAsset('dashboard.js', 'text/javascript; charset=utf-8')],
    ['money.js', ownAsset('money.js', 'text/javascript; charset=utf-8')],
    ['dashboard.css', ownAsset('dashboard.css', 'text/css; charset=utf-8')],
    ['uPlot.iife.min.js', vendorAsset('uPlot.iife.min.js', 'text/javascript; charset=utf-8')],
    ['uPlot.min.css', vendorAsset('uPlot.min.css', 'text/css; charset=utf-8')],
  ]);
}

// Only our own files, no inline code, data only from this origin; never framed.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
  + "form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

function send(res: Response, asset: Asset): void {
  res.set({
    'content-type': asset.type, 'content-security-policy': CSP, 'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY', 'cache-control': 'no-cache',
  }).send(asset.body);
}

/**
 * The operator dashboard at /admin/. Only this static shell and its scripts are public: they
 * hold no data. The page asks for the admin token and sends it with every data call to the
 * token-protected /admin/* API. Mounted before the admin API router, whose token check covers
 * every other /admin path.
 */
export function dashboardRoutes(): Router {
  const assets = loadAssets();
  const page = ownAsset('index.html', 'text/html; charset=utf-8');
  const router = Router();
  router.get('/admin', (req, res) => {
    // Relative asset URLs need the trailing slash.
    if (!req.path.endsWith('/')) {
      res.redirect(308, '/admin/');
      return;
    }
    send(res, page);
  });
  router.get('/admin/ui/:file', (req, res) => {
    const asset = assets.get(String(req.params.file));
    if (asset === undefined) throw new MetergateError('not_found', `no dashboard asset ${req.path}`);
    send(res, asset);
  });
  return router;
}
