// The keys a person signed in with. Kept in sessionStorage only (gone when the tab closes),
// never in localStorage, a URL or a log.

export type Env = 'sandbox' | 'production';
export const ENVS: Env[] = ['sandbox', 'production'];

export interface Keys {
  sandbox: string;
  production: string;
  admin: string;
}

export const KEY_INFO = {
  sandbox: { label: 'Sandbox key', prefix: 'sk_test_' },
  production: { label: 'Production key', prefix: 'sk_live_' },
  admin: { label: 'Admin key', prefix: 'adm_' },
} as const;

export const ENV_LABEL: Record<Env, string> = { sandbox: 'Sandbox', production: 'Production' };

const STORE = 'aforo-console-keys';

export function loadKeys(): Keys | null {
  try {
    const raw = sessionStorage.getItem(STORE);
    if (!raw) return null;
    const v = JSON.parse(raw) as Partial<Keys>;
    const k: Keys = {
      sandbox: typeof v.sandbox === 'string' ? v.sandbox : '',
      production: typeof v.production === 'string' ? v.production : '',
      admin: typeof v.admin === 'string' ? v.admin : '',
    };
    return k.sandbox || k.production || k.admin ? k : null;
  } catch {
    return null;
  }
}

export function saveKeys(k: Keys): void {
  sessionStorage.setItem(STORE, JSON.stringify(k));
}

export function clearKeys(): void {
  sessionStorage.removeItem(STORE);
}
