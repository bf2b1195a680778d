import { useEffect, useId, useRef, useState } from 'preact/hooks';
import { ApiError, call, toApiError } from '../api';
import { ENV_LABEL } from '../keys';
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

const EVENT_TYPES = [
  'quota.threshold_reached',
  'dead_letter.created',
  'partner.sandbox_mode_changed',
  'invoice.preview_closed',
  'invoice.margin_flagged',
];

interface Endpoint {
  id: string;
  url: string;
  events: string[];
  enabled: boolean;
  created_at: string;
}

interface Delivery {
  seq: number;
  endpoint_id: string;
  event_id: string;
  type: string;
  state: string;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  created_at: string;
  delivered_at: string | null;
  next_attempt_at: string | null;
}

function Endpoints() {
  const { env, keys } = useConsole();
  const admin = keys.admin;
  const uid = useId();
  const list = useLoad(
    admin ? () => call<{ data: Endpoint[] }>('/v1/webhooks/endpoints', { key: admin, env }) : null,
    [env, admin],
  );
  const [url, setUrl] = useState('');
  const [events, setEvents] = useState<string[]>(EVENT_TYPES);
  const [created, setCreated] = useState<(Endpoint & { secret: string }) | null>(null);
  const [deleting, setDeleting] = useState<Endpoint | null>(null);

  const { busy, status, setStatus, actionError, setActionError, run } = useAction(list.reload);

  const create = (e: Event) => {
    e.preventDefault();
    if (busy) return;
    if (events.length === 0) {
      setActionError(new ApiError('no_events', 'choose at least one event type', 0, 'events'));
      return;
    }
    // All types checked: leave `events` out, which the API takes as every type.
    const body: { url: string; events?: string[] } = { url: url.trim() };
    if (events.length !== EVENT_TYPES.length) body.events = events;
    run(async () => {
      const r = await call<{ data: Endpoint & { secret: string } }>('/v1/webhooks/endpoints', {
        key: admin,
        env,
        method: 'POST',
        body,
      });
      setCreated(r.data);
      setUrl('');
      setEvents(EVENT_TYPES);
    });
  };

  const remove = (ep: Endpoint) => {
    setDeleting(null);
    run(async () => {
      await call(`/v1/webhooks/endpoints/${encodeURIComponent(ep.id)}`, {
        key: admin,
        env,
        method: 'DELETE',
      });
      setStatus(`Endpoint ${ep.id} is deleted.`);
    });
  };

  if (!admin) {
    return (
      <section aria-labelledby={`${uid}-h`}>
        <h2 id={`${uid}-h`}>Endpoints</h2>
        <MissingKey which="admin" what="Managing webhook endpoints" />
      </section>
    );
  }

  return (
    <>
      <section aria-labelledby={`${uid}-h`} aria-busy={list.loading ? 'true' : 'false'}>
        <h2 id={`${uid}-h`}>Endpoints</h2>
        <ErrorAlert error={list.error} />
        <ErrorAlert error={actionError} />
        <StatusLine text={status} />
        {created ? (
          <SecretOnce
            title={`New endpoint ${created.url}`}
            idLabel="Endpoint ID"
            id={created.id}
            secretLabel="Signing secret"
            secret={created.secret}
            onDone={() => setCreated(null)}
          >
            <p class="hint">
              The agent signs every delivery to this endpoint with this secret, so your server can
              check it came from the agent.
            </p>
          </SecretOnce>
        ) : null}
        <Loading when={list.loading && !list.data} />
        {list.data && list.data.data.length === 0 ? (
          <p class="empty-note">No endpoints in {ENV_LABEL[env].toLowerCase()} yet.</p>
        ) : null}
        {list.data && list.data.data.length ? (
          <TableWrap label={`${ENV_LABEL[env]} webhook endpoints`}>
            <table>
              <caption>{ENV_LABEL[env]} webhook endpoints</caption>
              <thead>
                <tr>
                  <th scope="col">ID</th>
                  <th scope="col">URL</th>
                  <th scope="col">Events</th>
                  <th scope="col">Enabled</th>
                  <th scope="col">Created</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {list.data.data.map((ep) => (
                  <tr key={ep.id}>
                    <th scope="row" class="mono">
                      {ep.id}
                    </th>
                    <td class="mono break">{ep.url}</td>
                    <td>
                      <ul class="plain">
                        {ep.events.map((t) => (
                          <li key={t} class="mono">
                            {t}
                          </li>
                        ))}
                      </ul>
                    </td>
                    <td>{ep.enabled ? 'Yes' : 'No'}</td>
                    <td>
                      <Time iso={ep.created_at} />
                    </td>
                    <td class="row-actions">
                      <button
                        type="button"
                        class="danger small"
                        aria-disabled={busy ? 'true' : undefined}
                        onClick={() => !busy && setDeleting(ep)}
                      >
                        Delete<span class="vh"> {ep.id}</span>
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableWrap>
        ) : null}
      </section>
      <section aria-labelledby={`${uid}-add`} class="card">
        <h2 id={`${uid}-add`}>Add an endpoint</h2>
        <form onSubmit={create}>
          <div class="field">
            <label for={`${uid}-url`}>Endpoint URL</label>
            <input
              id={`${uid}-url`}
              type="url"
              class="wide"
              required
              aria-describedby={`${uid}-url-hint`}
              value={url}
              onInput={(e) => setUrl((e.target as HTMLInputElement).value)}
            />
            <p id={`${uid}-url-hint`} class="hint">
              An http:// or https:// address of your server that accepts POST requests.
            </p>
          </div>
          <fieldset>
            <legend>Events to send</legend>
            {EVENT_TYPES.map((t) => (
              <div class="check" key={t}>
                <input
                  id={`${uid}-${t}`}
                  type="checkbox"
                  checked={events.includes(t)}
                  onChange={(e) => {
                    const on = (e.target as HTMLInputElement).checked;
                    setEvents(on ? EVENT_TYPES.filter((x) => x === t || events.includes(x)) : events.filter((x) => x !== t));
                  }}
                />
                <label for={`${uid}-${t}`} class="mono">
                  {t}
                </label>
              </div>
            ))}
          </fieldset>
          <div class="row actions">
            <button type="submit" aria-disabled={busy ? 'true' : undefined}>
              Add endpoint
            </button>
          </div>
        </form>
      </section>
      {deleting ? (
        <Confirm
          title={`Delete ${deleting.id}?`}
          body={
            <p>
              Nothing more is sent to <span class="mono break">{deleting.url}</span>. This cannot be
              undone.
            </p>
          }
          action="Delete endpoint"
          onConfirm={() => remove(deleting)}
          onCancel={() => setDeleting(null)}
        />
      ) : null}
    </>
  );
}

function Deliveries({ onBusy }: { onBusy: (b: boolean) => void }) {
  const { env, keys } = useConsole();
  const key = keys[env];
  const uid = useId();
  const [rows, setRows] = useState<Delivery[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [loading, setLoading] = useState<boolean>(!!key);
  const [error, setError] = useState<ApiError | null>(null);
  const gen = useRef(0);

  const load = async (cursor: string | null) => {
    if (!key) return;
    const g = cursor ? gen.current : ++gen.current;
    setLoading(true);
    setError(null);
    try {
      const res = await call<{ data: Delivery[]; next_cursor: string | null }>(
        '/v1/webhooks/deliveries',
        { key, env, query: { limit: 50, cursor } },
      );
      if (g !== gen.current) return;
      setRows((old) => (cursor ? [...old, ...res.data.filter((d) => !old.some((o) => o.seq === d.seq))] : res.data));
      setNext(res.next_cursor);
    } catch (e) {
      if (g === gen.current) setError(toApiError(e));
    } finally {
      if (g === gen.current) setLoading(false);
    }
  };

  useEffect(() => {
    load(null);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [env, key]);
  useEffect(() => onBusy(loading), [loading]);

  return (
    <section aria-labelledby={`${uid}-h`}>
      <h2 id={`${uid}-h`}>Deliveries</h2>
      {!key ? (
        <MissingKey which={env} what={`The ${ENV_LABEL[env].toLowerCase()} delivery log`} />
      ) : (
        <>
          <div class="toolbar">
            <button type="button" class="secondary" onClick={() => !loading && load(null)} aria-disabled={loading ? 'true' : undefined}>
              Refresh deliveries
            </button>
          </div>
          <ErrorAlert error={error} />
          <Loading when={loading && rows.length === 0} />
          {!loading && !error && rows.length === 0 ? (
            <p class="empty-note">No deliveries yet.</p>
          ) : null}
          {rows.length ? (
            <TableWrap label={`${ENV_LABEL[env]} webhook deliveries`}>
              <table>
                <caption>{ENV_LABEL[env]} webhook deliveries, newest first</caption>
                <thead>
                  <tr>
                    <th scope="col">Seq</th>
                    <th scope="col">Created</th>
                    <th scope="col">Type</th>
                    <th scope="col">Endpoint</th>
                    <th scope="col">Event ID</th>
                    <th scope="col">State</th>
                    <th scope="col" class="num">
                      Attempts
                    </th>
                    <th scope="col">Last response</th>
                    <th scope="col">Delivered</th>
                    <th scope="col">Next attempt</th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((d) => (
                    <tr key={d.seq}>
                      <th scope="row" class="num">
                        {d.seq}
                      </th>
                      <td>
                        <Time iso={d.created_at} />
                      </td>
                      <td class="mono">{d.type}</td>
                      <td class="mono">{d.endpoint_id}</td>
                      <td class="mono">{d.event_id}</td>
                      <td data-value={d.state}>
                        <Badge value={d.state} />
                      </td>
                      <td class="num">{d.attempts}</td>
                      <td class="break">
                        {d.last_status !== null ? `HTTP ${d.last_status}` : ''}
                        {d.last_status !== null && d.last_error ? ': ' : ''}
                        {d.last_error ?? ''}
                        {d.last_status === null && !d.last_error ? <span class="muted">—</span> : null}
                      </td>
                      <td>
                        <Time iso={d.delivered_at} />
                      </td>
                      <td>
                        <Time iso={d.next_attempt_at} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableWrap>
          ) : null}
          {next ? (
            <div class="pager">
              <button type="button" class="secondary" onClick={() => !loading && load(next)} aria-disabled={loading ? 'true' : undefined}>
                Older
              </button>
            </div>
          ) : null}
        </>
      )}
    </section>
  );
}

export function Webhooks() {
  const { env } = useConsole();
  const [deliveriesBusy, setDeliveriesBusy] = useState(true);
  return (
    <Page title="Webhooks" busy={deliveriesBusy}>
      <p>
        Where the agent sends {ENV_LABEL[env].toLowerCase()} notifications (quota thresholds, dead
        letters, sandbox changes, closed invoice previews), and how each delivery went.
      </p>
      <Endpoints />
      <Deliveries onBusy={setDeliveriesBusy} />
    </Page>
  );
}
