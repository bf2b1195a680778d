import { useState } from 'preact/hooks';
import { ApiError, call, toApiError } from '../api';
import { formatCount } from '../format';
import { ENV_LABEL } from '../keys';
import {
  Badge,
  ErrorAlert,
  Loading,
  MissingKey,
  Page,
  StatusLine,
  TableWrap,
  Time,
  useConsole,
  useLoad,
} from '../ui';

export interface Feature {
  feature: string;
  allowed: boolean;
  quota: number | null;
  used: number | null;
  remaining: number | null;
  window_start: string | null;
  window_end: string | null;
}

export interface Customer {
  customer_id: string;
  status: string;
  sandbox_mode: boolean;
  daily_credits: null | {
    limit: number;
    used: number;
    remaining: number;
    day_start: string;
    enforced: boolean;
  };
  features: Feature[];
}

export interface CustomerList {
  environment: string;
  data: Customer[];
}

function Usage({ label, used, quota }: { label: string; used: number | null; quota: number | null }) {
  if (quota === null) {
    return <span>{used === null ? 'Unlimited' : `${formatCount(used)} used, no quota`}</span>;
  }
  const u = used ?? 0;
  const pct = quota > 0 ? Math.round((u / quota) * 100) : 100;
  return (
    <span class="usage">
      <progress
        max={quota > 0 ? quota : 1}
        value={Math.min(u, quota > 0 ? quota : 1)}
        aria-label={`${label}: ${formatCount(u)} of ${formatCount(quota)} used`}
      />
      <span>
        {formatCount(u)} / {formatCount(quota)} ({pct}%)
      </span>
    </span>
  );
}

function CustomerCard(props: {
  c: Customer;
  canToggle: boolean;
  busy: boolean;
  onToggle: (c: Customer) => void;
}) {
  const { c } = props;
  const hid = `cust-${c.customer_id.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const dc = c.daily_credits;
  return (
    <section class="card" aria-labelledby={hid}>
      <div class="card-head">
        <h2 id={hid}>{c.customer_id}</h2>
        {props.canToggle ? (
          <button type="button" class="secondary" aria-disabled={props.busy ? 'true' : undefined} onClick={() => !props.busy && props.onToggle(c)}>
            {c.sandbox_mode ? 'Move to production' : 'Move to sandbox'}
            <span class="vh">: {c.customer_id}</span>
          </button>
        ) : null}
      </div>
      <dl class="pairs inline">
        <dt>Status</dt>
        <dd>
          <Badge value={c.status} />
        </dd>
        <dt>Sandbox mode</dt>
        <dd>{c.sandbox_mode ? 'On (usage counts in sandbox)' : 'Off (usage counts in production)'}</dd>
        <dt>Daily credits</dt>
        <dd>
          {dc ? (
            <>
              <Usage label={`${c.customer_id} daily credits`} used={dc.used} quota={dc.limit} />{' '}
              {formatCount(dc.remaining)} remaining since <Time iso={dc.day_start} />
              {dc.enforced ? ' (enforced)' : ' (not enforced)'}
            </>
          ) : (
            'None'
          )}
        </dd>
      </dl>
      {c.features.length ? (
        <TableWrap label={`Features of ${c.customer_id}`}>
          <table>
            <caption>Features of {c.customer_id}: usage against quota</caption>
            <thead>
              <tr>
                <th scope="col">Feature</th>
                <th scope="col">Allowed</th>
                <th scope="col">Usage</th>
                <th scope="col" class="num">
                  Remaining
                </th>
                <th scope="col">Window</th>
              </tr>
            </thead>
            <tbody>
              {c.features.map((f) => (
                <tr key={f.feature}>
                  <th scope="row">{f.feature}</th>
                  <td>{f.allowed ? 'Yes' : 'No'}</td>
                  <td>
                    <Usage label={`${c.customer_id} ${f.feature}`} used={f.used} quota={f.quota} />
                  </td>
                  <td class="num">{f.remaining === null ? '—' : formatCount(f.remaining)}</td>
                  <td>
                    {f.window_start || f.window_end ? (
                      <>
                        <Time iso={f.window_start} /> to <Time iso={f.window_end} />
                      </>
                    ) : (
                      <span class="muted">—</span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      ) : (
        <p class="muted">No features in the plan.</p>
      )}
    </section>
  );
}

export function Customers() {
  const { env, keys } = useConsole();
  const key = keys[env];
  const r = useLoad(key ? () => call<CustomerList>('/v1/customers', { key, env }) : null, [env, key]);
  const [status, setStatus] = useState('');
  const [toggling, setToggling] = useState(false);
  const [actionError, setActionError] = useState<ApiError | null>(null);

  const toggle = async (c: Customer) => {
    setToggling(true);
    setStatus('');
    setActionError(null);
    try {
      const res = await call<{ message: string }>(
        `/v1/admin/partners/${encodeURIComponent(c.customer_id)}/toggle-sandbox`,
        { key: keys.admin, method: 'POST', body: { sandbox_mode: !c.sandbox_mode } },
      );
      setStatus(res.message);
      r.reload();
    } catch (e) {
      setActionError(toApiError(e));
    } finally {
      setToggling(false);
    }
  };

  return (
    <Page title="Customers" busy={r.loading}>
      {!key ? (
        <MissingKey which={env} what={`The ${ENV_LABEL[env].toLowerCase()} customer list`} />
      ) : (
        <>
          <p>
            Customers whose usage counts in {ENV_LABEL[env].toLowerCase()}, with what they have used
            of their quotas.
          </p>
          {!keys.admin ? (
            <p class="notice small">
              Moving a customer between sandbox and production needs the admin key.
            </p>
          ) : null}
          <ErrorAlert error={r.error} />
          <ErrorAlert error={actionError} />
          <StatusLine text={status} />
          <Loading when={r.loading && !r.data} />
          {r.data && r.data.data.length === 0 ? (
            <p class="empty-note">No customers in {ENV_LABEL[env].toLowerCase()}.</p>
          ) : null}
          {r.data?.data.map((c) => (
            <CustomerCard
              key={c.customer_id}
              c={c}
              canToggle={!!keys.admin}
              busy={toggling}
              onToggle={toggle}
            />
          ))}
        </>
      )}
    </Page>
  );
}
