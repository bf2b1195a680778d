import type { Env } from './keys';

export type PageId = 'overview' | 'events' | 'customers' | 'invoices' | 'keys' | 'webhooks';

export const PAGES: { id: PageId; label: string }[] = [
  { id: 'overview', label: 'Overview' },
  { id: 'events', label: 'Event Log' },
  { id: 'customers', label: 'Customers' },
  { id: 'invoices', label: 'Invoices' },
  { id: 'keys', label: 'Keys' },
  { id: 'webhooks', label: 'Webhooks' },
];

export interface Route {
  env: Env;
  page: PageId;
}

/** `#/sandbox/events` → {env, page}; null when the hash is not a route (e.g. empty). */
export function parseHash(hash: string): Route | null {
  const m = /^#\/(sandbox|production)\/([a-z]+)\/?$/.exec(hash);
  if (!m) return null;
  const page = PAGES.find((p) => p.id === m[2]);
  if (!page) return null;
  return { env: m[1] as Env, page: page.id };
}

export const href = (r: Route) => `#/${r.env}/${r.page}`;
