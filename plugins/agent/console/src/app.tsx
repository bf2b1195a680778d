import type { JSX } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { clearKeys, ENV_LABEL, ENVS, loadKeys, saveKeys, type Env, type Keys } from './keys';
import { href, PAGES, parseHash, type PageId, type Route } from './routes';
import { SignIn } from './signin';
import { Ctx, type ConsoleCtx } from './ui';
import { Overview } from './pages/overview';
import { EventLog } from './pages/events';
import { Customers } from './pages/customers';
import { Invoices } from './pages/invoices';
import { KeysPage } from './pages/keys';
import { Webhooks } from './pages/webhooks';

const PAGE_COMPONENT: Record<PageId, () => JSX.Element> = {
  overview: Overview,
  events: EventLog,
  customers: Customers,
  invoices: Invoices,
  keys: KeysPage,
  webhooks: Webhooks,
};

function defaultEnv(k: Keys | null): Env {
  return k && !k.sandbox && k.production ? 'production' : 'sandbox';
}

function useRoute(keys: Keys | null): [Route, (r: Route) => void] {
  const read = () => parseHash(location.hash) ?? { env: defaultEnv(keys), page: 'overview' as PageId };
  const [route, setRoute] = useState<Route>(read);
  useEffect(() => {
    const on = () => {
      const r = parseHash(location.hash);
      if (r) setRoute(r);
    };
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  const go = (r: Route) => {
    if (location.hash !== href(r)) location.hash = href(r);
    setRoute(r);
  };
  return [route, go];
}

function SkipLink() {
  return (
    <a
      class="skip"
      href="#content"
      onClick={(e) => {
        // The hash is the router's: move focus without changing it.
        e.preventDefault();
        document.getElementById('content')?.focus();
      }}
    >
      Skip to content
    </a>
  );
}

function EnvTabs(props: { env: Env; onSelect: (e: Env) => void }) {
  const refs = useRef<Record<string, HTMLButtonElement | null>>({});
  const onKey = (e: KeyboardEvent) => {
    const i = ENVS.indexOf(props.env);
    let next: number | null = null;
    if (e.key === 'ArrowRight' || e.key === 'ArrowDown') next = (i + 1) % ENVS.length;
    else if (e.key === 'ArrowLeft' || e.key === 'ArrowUp') next = (i - 1 + ENVS.length) % ENVS.length;
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = ENVS.length - 1;
    if (next === null) return;
    e.preventDefault();
    const env = ENVS[next];
    props.onSelect(env);
    refs.current[env]?.focus();
  };
  return (
    <div role="tablist" aria-label="Environment" class="tabs" onKeyDown={onKey}>
      {ENVS.map((env) => (
        <button
          key={env}
          ref={(el) => {
            refs.current[env] = el;
          }}
          type="button"
          role="tab"
          id={`tab-${env}`}
          aria-selected={props.env === env ? 'true' : 'false'}
          aria-controls="env-panel"
          tabIndex={props.env === env ? 0 : -1}
          class={`tab env-${env}`}
          onClick={() => props.onSelect(env)}
        >
          {ENV_LABEL[env]}
        </button>
      ))}
    </div>
  );
}

export function App() {
  const [keys, setKeys] = useState<Keys | null>(loadKeys);
  const [editing, setEditing] = useState(false);
  const [route, go] = useRoute(keys);
  const focusHeading = useRef(false);

  useEffect(() => {
    const page = PAGES.find((p) => p.id === route.page)!;
    document.title =
      keys && !editing
        ? `${page.label} · ${ENV_LABEL[route.env]} · aforo agent console`
        : 'Sign in · aforo agent console';
    if (focusHeading.current) {
      focusHeading.current = false;
      document.getElementById('page-title')?.focus();
    }
  }, [route, keys, editing]);

  const ctx: ConsoleCtx | null = useMemo(
    () =>
      keys
        ? {
            env: route.env,
            keys,
            editKeys: () => {
              focusHeading.current = true;
              setEditing(true);
            },
          }
        : null,
    [keys, route.env],
  );

  const signOut = () => {
    clearKeys();
    setKeys(null);
    setEditing(false);
    focusHeading.current = true;
    go({ env: 'sandbox', page: 'overview' });
  };

  if (!keys || editing || !ctx) {
    return (
      <>
        <SkipLink />
        <header class="top">
          <p class="brand">
            aforo <span>agent console</span>
          </p>
        </header>
        <main id="content" tabIndex={-1}>
          <SignIn
            initial={keys}
            onSave={(k) => {
              saveKeys(k);
              setKeys(k);
              setEditing(false);
              focusHeading.current = true;
              if (!parseHash(location.hash)) go({ env: defaultEnv(k), page: 'overview' });
            }}
            onCancel={
              keys
                ? () => {
                    focusHeading.current = true;
                    setEditing(false);
                  }
                : undefined
            }
          />
        </main>
      </>
    );
  }

  const PageComponent = PAGE_COMPONENT[route.page];
  return (
    <Ctx.Provider value={ctx}>
      <SkipLink />
      <header class="top">
        <p class="brand">
          aforo <span>agent console</span>
        </p>
        <EnvTabs env={route.env} onSelect={(env) => go({ env, page: route.page })} />
        <div class="account">
          <button type="button" class="secondary" onClick={ctx.editKeys}>
            Change keys
          </button>
          <button type="button" class="secondary" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <div class={`layout env-${route.env}`}>
        <nav aria-label="Console pages">
          <ul>
            {PAGES.map((p) => (
              <li key={p.id}>
                <a
                  href={href({ env: route.env, page: p.id })}
                  aria-current={p.id === route.page ? 'page' : undefined}
                  onClick={() => {
                    if (p.id === route.page) document.getElementById('page-title')?.focus();
                    else focusHeading.current = true;
                  }}
                >
                  {p.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <main id="content" tabIndex={-1}>
          <div role="tabpanel" id="env-panel" aria-labelledby={`tab-${route.env}`}>
            <PageComponent key={`${route.env}/${route.page}`} />
          </div>
        </main>
      </div>
    </Ctx.Provider>
  );
}
