// Calls to the agent's JSON API on the same origin, with `Authorization: Bearer <key>`.
import type { Env } from './keys';

export class ApiError extends Error {
  code: string;
  status: number;
  field?: string;
  constructor(code: string, message: string, status: number, field?: string) {
    super(message);
    this.code = code;
    this.status = status;
    this.field = field;
  }
}

export type Query = Record<string, string | number | null | undefined>;

export interface Call {
  key: string;
  env?: Env;
  method?: 'GET' | 'POST' | 'DELETE';
  query?: Query;
  body?: unknown;
}

export function url(path: string, env?: Env, query?: Query): string {
  const q = new URLSearchParams();
  if (env) q.set('environment', env);
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export async function call<T>(path: string, c: Call): Promise<T> {
  const headers: Record<string, string> = {
    Authorization: `Bearer ${c.key}`,
    Accept: 'application/json',
  };
  let body: string | undefined;
  if (c.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(c.body);
  }
  let res: Response;
  try {
    res = await fetch(url(path, c.env, c.query), {
      method: c.method ?? 'GET',
      headers,
      body,
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    throw new ApiError('network_error', `the agent could not be reached (${String(e)})`, 0);
  }
  const text = await res.text();
  let json: unknown = undefined;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  if (!res.ok) {
    const err = (json as { error?: { code?: unknown; message?: unknown; field?: unknown } } | undefined)
      ?.error;
    if (err && typeof err.code === 'string') {
      throw new ApiError(
        err.code,
        typeof err.message === 'string' ? err.message : '',
        res.status,
        typeof err.field === 'string' ? err.field : undefined,
      );
    }
    throw new ApiError(`http_${res.status}`, text.slice(0, 200) || res.statusText, res.status);
  }
  if (json === undefined) {
    throw new ApiError('bad_response', 'the agent answered with something other than JSON', res.status);
  }
  return json as T;
}

export function toApiError(e: unknown): ApiError {
  return e instanceof ApiError ? e : new ApiError('client_error', String(e), 0);
}
