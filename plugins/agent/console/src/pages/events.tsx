import { useEffect, useId, useRef, useState } from 'preact/hooks';
import { ApiError, call, toApiError } from '../api';
import { localToRfc3339, OUTCOME_LABEL } from '../format';
import { ENV_LABEL } from '../keys';
import {
  Badge,
  ErrorAlert,
  Loading,
  MissingKey,
  Modal,
  Page,
  StatusLine,
  TableWrap,
  Time,
  useConsole,
  useLoad,
} from '../ui';

export interface LogRow {
  seq: number;
  at: string;
  event_id: string;
  customer_id: string;
  metric: string;
  quantity: string;
  timestamp: string;
  outcome: string;
  code: string | null;
  dead_letter_seq: number | null;
}

interface LogPage {
  environment: string;
  data: LogRow[];
  next_cursor: string | null;
}

interface ReplayResult {
  replayed: number;
  stored: number;
  requeued: number;
  duplicates: number;
  still_refused: { seq: number; reason: string; detail?: string }[];
}

interface Filters {
  customer: string;
  metric: string;
  outcome: string;
  from: string;
  to: string;
}

const NO_FILTERS: Filters = { customer: '', metric: '', outcome: '', from: '', to: '' };
const PAGE_SIZE = 50;
const TAIL_MS = 1000;
const MAX_ROWS = 1000;

const filterQuery = (f: Filters) => ({
  customer: f.customer.trim(),
  metric: f.metric.trim(),
  outcome: f.outcome,
  from: localToRfc3339(f.from),
  to: localToRfc3339(f.to),
});

function describe(f: Filters): string {
  const parts: string[] = [];
  if (f.customer.trim()) parts.push(`customer ${f.customer.trim()}`);
  if (f.metric.trim()) parts.push(`metric ${f.metric.trim()}`);
  if (f.outcome) parts.push(`outcome ${OUTCOME_LABEL[f.outcome] ?? f.outcome}`);
  if (f.from) parts.push(`from ${f.from.replace('T', ' ')}`);
  if (f.to) parts.push(`to ${f.to.replace('T', ' ')}`);
  return parts.length ? `, filtered by ${parts.join(', ')}` : '';
}

export function replaySummary(r: ReplayResult): string {
  const requeued = r.requeued ? `, ${r.requeued} requeued` : '';
  return `Replayed ${r.replayed}: ${r.stored} stored${requeued}, ${r.duplicates} duplicates, ${r.still_refused.length} still refused`;
}

function mergeNewestFirst(newer: LogRow[], older: LogRow[]): LogRow[] {
  const seen = new Set(older.map((r) => r.seq));
  return [...newer.filter((r) => !seen.has(r.seq)), ...older].slice(0, MAX_ROWS);
}

export function EventLog() {
  const { env, keys } = useConsole();
  const key = keys[env];
  const uid = useId();
  const [draft, setDraft] = useState<Filters>(NO_FILTERS);
  const [applied, setApplied] = useState<Filters>(NO_FILTERS);
  const [rows, setRows] = useState<LogRow[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [loading, setLoading] = useState<boolean>(!!key);
  const [error, setError] = useState<ApiError | null>(null);
  const [tail, setTail] = useState(false);
  const [tailNote, setTailNote] = useState('');
  const [detail, setDetail] = useState<LogRow | null>(null);
  const [replaying, setReplaying] = useState<number | null>(null);
  const [status, setStatus] = useState('');
  const [refused, setRefused] = useState<ReplayResult['still_refused']>([]);
  const [actionError, setActionError] = useState<ApiError | null>(null);
  const gen = useRef(0);
  const lastSeq = useRef(0);
  const firstLoading = useRef(false);

  const loadFirst = async (f: Filters) => {
    if (!key) return;
    const g = ++gen.current;
    firstLoading.current = true;
    setLoading(true);
    setError(null);
    try {
      const res = await call<LogPage>('/v1/event-log', {
        key,
        env,
        query: { ...filterQuery(f), limit: PAGE_SIZE },
      });
      if (g !== gen.current) return;
      setRows(res.data);
      setNext(res.next_cursor);
      lastSeq.current = res.data.reduce((m, r) => Math.max(m, r.seq), 0);
    } catch (e) {
      if (g !== gen.current) return;
      setRows([]);
      setNext(null);
      setError(toApiError(e));
    } finally {
      if (g === gen.current) {
        firstLoading.current = false;
        setLoading(false);
      }
    }
  };

  const loadOlder = async () => {
    if (!key || !next) return;
    const g = gen.current;
    setLoading(true);
    setError(null);
    try {
      const res = await call<LogPage>('/v1/event-log', {
        key,
        env,
        query: { ...filterQuery(applied), limit: PAGE_SIZE, cursor: next },
      });
      if (g !== gen.current) return;
      setRows((old) => {
        const seen = new Set(old.map((r) => r.seq));
        return [...old, ...res.data.filter((r) => !seen.has(r.seq))];
      });
      setNext(res.next_cursor);
    } catch (e) {
      if (g === gen.current) setError(toApiError(e));
    } finally {
      if (g === gen.current) setLoading(false);
    }
  };

  useEffect(() => {
    loadFirst(applied);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [applied, env, key]);

  // Live tail: every second, the entries after the newest one seen (oldest first), prepended.
  useEffect(() => {
    if (!tail || !key) return;
    let inFlight = false;
    setTailNote('Live tail on: new events appear at the top.');
    const tick = async () => {
      if (inFlight || firstLoading.current) return;
      inFlight = true;
      const g = gen.current;
      try {
        const res = await call<LogPage>('/v1/event-log', {
          key,
          env,
          query: { ...filterQuery(applied), after: lastSeq.current },
        });
        if (g !== gen.current || res.data.length === 0) return;
        lastSeq.current = res.data.reduce((m, r) => Math.max(m, r.seq), lastSeq.current);
        const newest = [...res.data].reverse();
        setRows((old) => mergeNewestFirst(newest, old));
        setTailNote(
          `Live tail on: ${res.data.length} new ${res.data.length === 1 ? 'event' : 'events'}.`,
        );
      } catch (e) {
        setError(toApiError(e));
        setTail(false);
      } finally {
        inFlight = false;
      }
    };
    const t = setInterval(tick, TAIL_MS);
    return () => {
      clearInterval(t);
      setTailNote('Live tail off.');
    };
  }, [tail, applied, env, key]);

  const replay = async (row: LogRow) => {
    if (!key || row.dead_letter_seq === null) return;
    setReplaying(row.seq);
    setStatus('');
    setRefused([]);
    setActionError(null);
    try {
      const res = await call<ReplayResult>('/v1/dead-letters/replay', {
        key,
        env,
        method: 'POST',
        body: { seqs: [row.dead_letter_seq] },
      });
      setStatus(replaySummary(res));
      setRefused(res.still_refused ?? []);
      if (!tail) loadFirst(applied);
    } catch (e) {
      setActionError(toApiError(e));
    } finally {
      setReplaying(null);
    }
  };

  const set = (k: keyof Filters) => (e: Event) =>
    setDraft({ ...draft, [k]: (e.target as HTMLInputElement | HTMLSelectElement).value });

  if (!key) {
    return (
      <Page title="Event Log" busy={false}>
        <MissingKey which={env} what={`The ${ENV_LABEL[env].toLowerCase()} event log`} />
      </Page>
    );
  }

  return (
    <Page title="Event Log" busy={loading}>
      <p>
        Every event the agent received in {ENV_LABEL[env].toLowerCase()}, newest first, with what
        became of it.
      </p>
      <form
        class="filters"
        aria-label="Event filters"
        onSubmit={(e) => {
          e.preventDefault();
          setLoading(true);
          setApplied({ ...draft });
        }}
      >
        <div class="field">
          <label for={`${uid}-c`}>Customer</label>
          <input id={`${uid}-c`} type="text" value={draft.customer} onInput={set('customer')} />
        </div>
        <div class="field">
          <label for={`${uid}-m`}>Metric</label>
          <input id={`${uid}-m`} type="text" value={draft.metric} onInput={set('metric')} />
        </div>
        <div class="field">
          <label for={`${uid}-o`}>Outcome</label>
          <select id={`${uid}-o`} value={draft.outcome} onChange={set('outcome')}>
            <option value="">Any outcome</option>
            {Object.entries(OUTCOME_LABEL).map(([v, l]) => (
              <option key={v} value={v}>
                {l}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for={`${uid}-f`}>From (your time)</label>
          <input id={`${uid}-f`} type="datetime-local" step={1} value={draft.from} onInput={set('from')} />
        </div>
        <div class="field">
          <label for={`${uid}-t`}>To (your time)</label>
          <input id={`${uid}-t`} type="datetime-local" step={1} value={draft.to} onInput={set('to')} />
        </div>
        <div class="row actions">
          <button type="submit">Apply filters</button>
          <button
            type="button"
            class="secondary"
            onClick={() => {
              setDraft(NO_FILTERS);
              setLoading(true);
              setApplied({ ...NO_FILTERS });
            }}
          >
            Clear filters
          </button>
          <button
            type="button"
            class="secondary toggle"
            aria-pressed={tail ? 'true' : 'false'}
            onClick={() => setTail(!tail)}
          >
            Live tail
          </button>
        </div>
      </form>
      <p class="muted small" aria-live="polite">
        {tailNote}
      </p>
      <ErrorAlert error={error} />
      <ErrorAlert error={actionError} />
      <StatusLine text={status}>
        {refused.length ? (
          <ul class="refused">
            {refused.map((r) => (
              <li key={r.seq}>
                Dead letter {r.seq}: {r.reason}
                {r.detail ? ` (${r.detail})` : ''}
              </li>
            ))}
          </ul>
        ) : null}
      </StatusLine>
      <Loading when={loading && rows.length === 0} />
      {!loading && !error && rows.length === 0 ? (
        <p class="empty-note">No events{describe(applied) ? ' match these filters' : ' yet'}.</p>
      ) : null}
      {rows.length ? (
        <TableWrap label={`${ENV_LABEL[env]} events`}>
          <table>
            <caption>
              {ENV_LABEL[env]} events, newest first{describe(applied)}
            </caption>
            <thead>
              <tr>
                <th scope="col">Seq</th>
                <th scope="col">Received</th>
                <th scope="col">Event ID</th>
                <th scope="col">Customer</th>
                <th scope="col">Metric</th>
                <th scope="col" class="num">
                  Quantity
                </th>
                <th scope="col">Event time</th>
                <th scope="col">Outcome</th>
                <th scope="col">Code</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.seq}>
                  <th scope="row" class="num">
                    {r.seq}
                  </th>
                  <td>
                    <Time iso={r.at} />
                  </td>
                  <td class="mono">{r.event_id}</td>
                  <td>{r.customer_id}</td>
                  <td>{r.metric}</td>
                  <td class="num">{r.quantity}</td>
                  <td>
                    <Time iso={r.timestamp} />
                  </td>
                  <td data-value={r.outcome}>
                    <Badge value={r.outcome} />
                  </td>
                  <td data-value={r.code ?? ''} class="mono">
                    {r.code ?? <span class="muted">—</span>}
                  </td>
                  <td class="row-actions">
                    <button type="button" class="secondary small" onClick={() => setDetail(r)}>
                      Details<span class="vh"> of {r.event_id}</span>
                    </button>
                    {r.dead_letter_seq !== null ? (
                      <button
                        type="button"
                        class="small"
                        aria-disabled={replaying !== null ? 'true' : undefined}
                        onClick={() => replaying === null && replay(r)}
                      >
                        Replay<span class="vh"> {r.event_id}</span>
                      </button>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      ) : null}
      {next ? (
        <div class="pager">
          <button type="button" class="secondary" onClick={() => !loading && loadOlder()} aria-disabled={loading ? 'true' : undefined}>
            Older
          </button>
        </div>
      ) : null}
      {detail ? <Details row={detail} onClose={() => setDetail(null)} /> : null}
    </Page>
  );
}

function Details({ row, onClose }: { row: LogRow; onClose: () => void }) {
  const { env, keys } = useConsole();
  const key = keys[env];
  const r = useLoad(
    () =>
      call<{ data: LogRow & { event: unknown } }>(`/v1/event-log/${row.seq}`, { key, env }),
    [row.seq],
  );
  const d = r.data?.data;
  return (
    <Modal title={`Event ${row.event_id}`} onClose={onClose} wide>
      <div aria-busy={r.loading ? 'true' : 'false'}>
        <ErrorAlert error={r.error} />
        <Loading when={r.loading} />
        {d ? (
          <>
            <dl class="pairs">
              <dt>Seq</dt>
              <dd>{d.seq}</dd>
              <dt>Customer</dt>
              <dd>{d.customer_id}</dd>
              <dt>Metric</dt>
              <dd>{d.metric}</dd>
              <dt>Outcome</dt>
              <dd>
                <Badge value={d.outcome} />
                {d.code ? <span class="mono"> {d.code}</span> : null}
              </dd>
              <dt>Received</dt>
              <dd>
                <Time iso={d.at} />
              </dd>
              {d.dead_letter_seq !== null ? (
                <>
                  <dt>Dead letter</dt>
                  <dd>{d.dead_letter_seq}</dd>
                </>
              ) : null}
            </dl>
            <h3>Event as received</h3>
            <pre class="json" tabIndex={0} role="region" aria-label="Event JSON">
              {JSON.stringify(d.event, null, 2)}
            </pre>
          </>
        ) : null}
      </div>
    </Modal>
  );
}
