import { useId, useState } from 'preact/hooks';
import { ApiError, call } from '../api';
import { localToRfc3339 } from '../format';
import {
  Badge,
  Confirm,
  ErrorAlert,
  Loading,
  MissingKey,
  Page,
  SecretOnce,
  StatusLine,
  TableWrap,
  Time,
  useAction,
  useConsole,
  useLoad,
} from '../ui';

interface KeyRow {
  key_id: string;
  customer_id: string;
  scopes: string[];
  revoked: boolean;
  expires_at: string | null;
  created_at: string;
  last_used_at: string | null;
  status: string;
}

interface KeyList {
  keys: KeyRow[];
  partners: Record<string, boolean>;
}

interface NewKey {
  key_id: string;
  api_key: string;
  customer_id: string;
}

interface Rotated {
  old: { key_id: string; expires_at?: string | null; revoked?: boolean };
  new: NewKey;
}

/** A secret just created; it lives in this page's state only. */
type Shown = { kind: 'created'; key: NewKey } | { kind: 'rotated'; r: Rotated };

export function KeysPage() {
  const { keys } = useConsole();
  const admin = keys.admin;
  const uid = useId();
  const list = useLoad(admin ? () => call<KeyList>('/v1/admin/keys', { key: admin }) : null, [admin]);
  const [customer, setCustomer] = useState('');
  const [expires, setExpires] = useState('');
  const [grace, setGrace] = useState('86400');
  const [shown, setShown] = useState<Shown | null>(null);
  const [revoking, setRevoking] = useState<KeyRow | null>(null);

  const { busy, status, setStatus, actionError, setActionError, run } = useAction(list.reload);

  const create = (e: Event) => {
    e.preventDefault();
    if (busy) return;
    const body: Record<string, string> = { customer_id: customer.trim() };
    const exp = localToRfc3339(expires);
    if (exp) body.expires_at = exp;
    run(async () => {
      const k = await call<NewKey>('/v1/admin/partners', { key: admin, method: 'POST', body });
      setShown({ kind: 'created', key: k });
      setCustomer('');
      setExpires('');
    });
  };

  const rotate = (k: KeyRow) => {
    const secs = Number(grace);
    if (!Number.isInteger(secs) || secs < 0) {
      setActionError(
        new ApiError('invalid_grace', 'the grace period is a whole number of seconds, 0 or more', 0),
      );
      return;
    }
    run(async () => {
      const r = await call<Rotated>(`/v1/admin/keys/${encodeURIComponent(k.key_id)}/rotate`, {
        key: admin,
        method: 'POST',
        body: { grace_period_secs: secs },
      });
      setShown({ kind: 'rotated', r });
    });
  };

  const revoke = (k: KeyRow) => {
    setRevoking(null);
    run(async () => {
      const r = await call<{ revoked: string }>(
        `/v1/admin/keys/${encodeURIComponent(k.key_id)}/revoke`,
        { key: admin, method: 'POST' },
      );
      setStatus(`Key ${r.revoked} is revoked.`);
    });
  };

  if (!admin) {
    return (
      <Page title="Keys" busy={false} envKey={false}>
        <MissingKey which="admin" what="Managing partner keys" />
      </Page>
    );
  }

  const known = new Set<string>([
    ...Object.keys(list.data?.partners ?? {}),
    ...(list.data?.keys ?? []).map((k) => k.customer_id),
  ]);

  return (
    <Page title="Keys" busy={list.loading} envKey={false}>
      <p>
        Partner API keys. They are the same in sandbox and production: a partner's sandbox mode
        decides where its usage counts.
      </p>
      <ErrorAlert error={actionError} />
      <StatusLine text={status} />
      {shown?.kind === 'created' ? (
        <SecretOnce
          title={`New key for ${shown.key.customer_id}`}
          idLabel="Key ID"
          id={shown.key.key_id}
          secretLabel="API key"
          secret={shown.key.api_key}
          onDone={() => setShown(null)}
        />
      ) : null}
      {shown?.kind === 'rotated' ? (
        <SecretOnce
          title={`Rotated key for ${shown.r.new.customer_id}`}
          idLabel="Key ID"
          id={shown.r.new.key_id}
          secretLabel="API key"
          secret={shown.r.new.api_key}
          onDone={() => setShown(null)}
        >
          <p class="old-key">
            {shown.r.old.revoked || !shown.r.old.expires_at ? (
              <>
                The old key <span class="mono">{shown.r.old.key_id}</span> is revoked now.
              </>
            ) : (
              <>
                The old key <span class="mono">{shown.r.old.key_id}</span> works until{' '}
                <Time iso={shown.r.old.expires_at} />.
              </>
            )}
          </p>
        </SecretOnce>
      ) : null}

      <section aria-labelledby={`${uid}-create`} class="card">
        <h2 id={`${uid}-create`}>Create key</h2>
        <form onSubmit={create} class="filters">
          <div class="field">
            <label for={`${uid}-cust`}>Customer ID</label>
            <input
              id={`${uid}-cust`}
              type="text"
              required
              list={`${uid}-known`}
              value={customer}
              onInput={(e) => setCustomer((e.target as HTMLInputElement).value)}
            />
            <datalist id={`${uid}-known`}>
              {[...known].sort().map((c) => (
                <option key={c} value={c} />
              ))}
            </datalist>
          </div>
          <div class="field">
            <label for={`${uid}-exp`}>Expires (optional, your time)</label>
            <input
              id={`${uid}-exp`}
              type="datetime-local"
              value={expires}
              onInput={(e) => setExpires((e.target as HTMLInputElement).value)}
            />
          </div>
          <div class="row actions">
            <button type="submit" aria-disabled={busy ? 'true' : undefined}>
              Create key
            </button>
          </div>
        </form>
      </section>

      <section aria-labelledby={`${uid}-list`}>
        <h2 id={`${uid}-list`}>All keys</h2>
        <div class="field">
          <label for={`${uid}-grace`}>Grace period (seconds)</label>
          <input
            id={`${uid}-grace`}
            type="number"
            min={0}
            step={1}
            value={grace}
            aria-describedby={`${uid}-grace-hint`}
            onInput={(e) => setGrace((e.target as HTMLInputElement).value)}
          />
          <p id={`${uid}-grace-hint`} class="hint">
            How long an old key keeps working after Rotate (86400 is one day; 0 revokes it at once).
          </p>
        </div>
        <ErrorAlert error={list.error} />
        <Loading when={list.loading && !list.data} />
        {list.data && list.data.keys.length === 0 ? <p class="empty-note">No keys yet.</p> : null}
        {list.data && list.data.keys.length ? (
          <TableWrap label="Partner keys">
            <table>
              <caption>Partner keys</caption>
              <thead>
                <tr>
                  <th scope="col">Key ID</th>
                  <th scope="col">Customer</th>
                  <th scope="col">Created</th>
                  <th scope="col">Last used</th>
                  <th scope="col">Expires</th>
                  <th scope="col">Status</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {list.data.keys.map((k) => (
                  <tr key={k.key_id}>
                    <th scope="row" class="mono">
                      {k.key_id}
                    </th>
                    <td>{k.customer_id}</td>
                    <td>
                      <Time iso={k.created_at} />
                    </td>
                    <td>
                      <Time iso={k.last_used_at} />
                    </td>
                    <td>
                      <Time iso={k.expires_at} />
                    </td>
                    <td data-value={k.status}>
                      <Badge value={k.status} />
                    </td>
                    <td class="row-actions">
                      {!k.revoked && k.status !== 'revoked' ? (
                        <>
                          <button
                            type="button"
                            class="secondary small"
                            aria-disabled={busy ? 'true' : undefined}
                            onClick={() => !busy && rotate(k)}
                          >
                            Rotate<span class="vh"> {k.key_id}</span>
                          </button>
                          <button
                            type="button"
                            class="danger small"
                            aria-disabled={busy ? 'true' : undefined}
                            onClick={() => !busy && setRevoking(k)}
                          >
                            Revoke<span class="vh"> {k.key_id}</span>
                          </button>
                        </>
                      ) : null}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableWrap>
        ) : null}
      </section>
      {revoking ? (
        <Confirm
          title={`Revoke ${revoking.key_id}?`}
          body={
            <p>
              Requests with this key of <strong>{revoking.customer_id}</strong> are refused from
              now on. This cannot be undone.
            </p>
          }
          action="Revoke key"
          onConfirm={() => revoke(revoking)}
          onCancel={() => setRevoking(null)}
        />
      ) : null}
    </Page>
  );
}
