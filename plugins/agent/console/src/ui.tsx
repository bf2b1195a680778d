// Pieces every page uses: loading data, errors, missing keys, times, secrets shown once.
import { createContext, type ComponentChildren } from 'preact';
import { useContext, useEffect, useId, useRef, useState } from 'preact/hooks';
import { ApiError, toApiError } from './api';
import { ENV_LABEL, KEY_INFO, type Env, type Keys } from './keys';
import { formatTime } from './format';

export interface ConsoleCtx {
  env: Env;
  keys: Keys;
  editKeys: () => void;
}

export const Ctx = createContext<ConsoleCtx>(null as unknown as ConsoleCtx);
export const useConsole = () => useContext(Ctx);

export interface Loaded<T> {
  data?: T;
  error?: ApiError;
  loading: boolean;
  reload: () => void;
}

/** Runs `fn` when `deps` change (and on reload()); `fn` null means "nothing to load". */
/** A change the admin makes: one at a time, its status line and its error, then a reload. */
export function useAction(reload: () => void) {
  const [busy, setBusy] = useState(false);
  const [status, setStatus] = useState('');
  const [actionError, setActionError] = useState<ApiError | null>(null);
  const run = async (f: () => Promise<void>) => {
    setBusy(true);
    setStatus('');
    setActionError(null);
    try {
      await f();
      reload();
    } catch (e) {
      setActionError(toApiError(e));
    } finally {
      setBusy(false);
    }
  };
  return { busy, status, setStatus, actionError, setActionError, run };
}

export function useLoad<T>(fn: (() => Promise<T>) | null, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: ApiError; loading: boolean }>({
    loading: fn !== null,
  });
  const [n, setN] = useState(0);
  useEffect(() => {
    if (!fn) {
      setState({ loading: false });
      return;
    }
    let live = true;
    setState((s) => ({ data: s.data, loading: true }));
    fn().then(
      (data) => live && setState({ data, loading: false }),
      (e) => live && setState({ error: toApiError(e), loading: false }),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, n]);
  return { ...state, reload: () => setN((x) => x + 1) };
}

export function Page(props: {
  title: string;
  busy: boolean;
  children: ComponentChildren;
  /** Whether the page reads with the environment's key (all but Keys). */
  envKey?: boolean;
}) {
  const { env, keys } = useConsole();
  const info = KEY_INFO[env];
  const k = keys[env];
  return (
    <section class="page" aria-labelledby="page-title" aria-busy={props.busy ? 'true' : 'false'}>
      <h1 id="page-title" tabIndex={-1}>
        {props.title}
      </h1>
      {props.envKey !== false && k && !k.startsWith(info.prefix) ? (
        <p class="notice">
          The {info.label.toLowerCase()} you entered does not start with <code>{info.prefix}</code>
          , so the agent will most likely refuse it.
        </p>
      ) : null}
      {props.children}
    </section>
  );
}

export function ErrorAlert({ error }: { error?: ApiError | null }) {
  if (!error) return null;
  return (
    <div role="alert" class="alert">
      <strong class="mono">{error.code}</strong>: {error.message || 'the request failed'}
      {error.field ? (
        <>
          {' '}
          (field <code>{error.field}</code>)
        </>
      ) : null}
    </div>
  );
}

/** An empty live region that always exists, so what is put in it later is announced. */
export function StatusLine({ text, children }: { text?: string; children?: ComponentChildren }) {
  return (
    <div role="status" class={text || children ? 'status' : 'status empty'}>
      {text}
      {children}
    </div>
  );
}

export function Loading({ when }: { when: boolean }) {
  return when ? <p class="loading">Loading…</p> : null;
}

/** Said when the key a page needs was not entered. */
export function MissingKey({ which, what }: { which: Env | 'admin'; what: string }) {
  const { editKeys } = useConsole();
  const info = KEY_INFO[which];
  return (
    <div class="notice">
      <p>
        {what} needs the <strong>{info.label}</strong> (it starts with <code>{info.prefix}</code>
        ), which was not entered.
      </p>
      <button type="button" class="secondary" onClick={editKeys}>
        Enter the {info.label.toLowerCase()}
      </button>
    </div>
  );
}

export function EnvNote({ env }: { env: Env }) {
  return <span class={`env-badge env-${env}`}>{ENV_LABEL[env]}</span>;
}

export function Time({ iso }: { iso?: string | null }) {
  if (!iso) return <span class="muted">—</span>;
  return (
    <time dateTime={iso} title={iso}>
      {formatTime(iso)}
    </time>
  );
}

export function Badge({ value }: { value: string }) {
  return <span class={`badge b-${value.replace(/[^a-z_]/g, '')}`}>{value.replace(/_/g, ' ')}</span>;
}

/**
 * A secret the API returns once: shown in read-only fields with a warning. It lives only in
 * the state of the page that created it, so leaving the page drops it.
 */
export function SecretOnce(props: {
  title: string;
  idLabel: string;
  id: string;
  secretLabel: string;
  secret: string;
  children?: ComponentChildren;
  onDone: () => void;
}) {
  const uid = useId();
  const head = useRef<HTMLHeadingElement>(null);
  const input = useRef<HTMLInputElement>(null);
  const [copied, setCopied] = useState('');
  useEffect(() => {
    head.current?.focus();
  }, [props.secret]);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(props.secret);
      setCopied('Copied to the clipboard.');
    } catch {
      input.current?.select();
      setCopied('Selected: press Ctrl+C (or ⌘C) to copy.');
    }
  };
  return (
    <section class="secret" aria-labelledby={`${uid}-h`}>
      <h2 id={`${uid}-h`} tabIndex={-1} ref={head}>
        {props.title}
      </h2>
      <p class="warn">
        <strong>Copy it now: it is not shown again.</strong>
      </p>
      <div class="field">
        <label for={`${uid}-id`}>{props.idLabel}</label>
        <input id={`${uid}-id`} class="mono" type="text" readOnly value={props.id} />
      </div>
      <div class="field">
        <label for={`${uid}-s`}>{props.secretLabel}</label>
        <div class="row">
          <input
            id={`${uid}-s`}
            ref={input}
            class="mono wide"
            type="text"
            readOnly
            value={props.secret}
            autocomplete="off"
            spellcheck={false}
          />
          <button type="button" class="secondary" onClick={copy}>
            Copy<span class="vh"> {props.secretLabel}</span>
          </button>
        </div>
      </div>
      {props.children}
      <StatusLine text={copied} />
      <button type="button" onClick={props.onDone}>
        Done, I have copied it
      </button>
    </section>
  );
}

/** A modal <dialog>: focus stays inside, Escape closes it. */
export function Modal(props: {
  title: ComponentChildren;
  onClose: () => void;
  children: ComponentChildren;
  wide?: boolean;
}) {
  const uid = useId();
  const ref = useRef<HTMLDialogElement>(null);
  const onClose = useRef(props.onClose);
  onClose.current = props.onClose;
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    const opener = document.activeElement as HTMLElement | null;
    const closed = () => onClose.current();
    d.addEventListener('close', closed);
    if (!d.open) d.showModal();
    return () => {
      d.removeEventListener('close', closed);
      if (d.open) d.close();
      // Back to the control that opened it, as a native close would do.
      if (opener?.isConnected) opener.focus();
    };
  }, []);
  return (
    <dialog ref={ref} class={props.wide ? 'wide' : ''} aria-labelledby={`${uid}-t`}>
      <div class="dialog-head">
        <h2 id={`${uid}-t`}>{props.title}</h2>
        <button type="button" class="secondary" onClick={() => props.onClose()}>
          Close
        </button>
      </div>
      {props.children}
    </dialog>
  );
}

/** Asks before something that cannot be undone. */
export function Confirm(props: {
  title: string;
  body: ComponentChildren;
  action: string;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  return (
    <Modal title={props.title} onClose={props.onCancel}>
      <div class="confirm-body">{props.body}</div>
      <div class="row">
        <button type="button" class="danger" onClick={props.onConfirm}>
          {props.action}
        </button>
        <button type="button" class="secondary" onClick={props.onCancel}>
          Cancel
        </button>
      </div>
    </Modal>
  );
}

/**
 * A table's box: scrolls sideways when the table is wider than the page, and then is a
 * focusable, named region so that keyboard users can scroll it too.
 */
export function TableWrap({ label, children }: { label: string; children: ComponentChildren }) {
  const ref = useRef<HTMLDivElement>(null);
  const [scrolls, setScrolls] = useState(false);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const check = () => setScrolls(el.scrollWidth > el.clientWidth + 1);
    check();
    const ro = new ResizeObserver(check);
    ro.observe(el);
    if (el.firstElementChild) ro.observe(el.firstElementChild);
    return () => ro.disconnect();
  }, []);
  return scrolls ? (
    <div ref={ref} class="table-wrap" tabIndex={0} role="region" aria-label={`${label} (scrolls sideways)`}>
      {children}
    </div>
  ) : (
    <div ref={ref} class="table-wrap">
      {children}
    </div>
  );
}
