import { call } from '../api';
import { formatCount } from '../format';
import { ENV_LABEL } from '../keys';
import { ErrorAlert, Loading, MissingKey, Page, Time, useConsole, useLoad } from '../ui';

interface OverviewData {
  environment: string;
  day_start: string;
  events_today: number;
  by_outcome: Record<'accepted' | 'duplicate' | 'late' | 'rejected' | 'dead_lettered', number>;
  ingest_requests: number;
  ingest_p95_ms: number | null;
  /** The p95 is past the histogram's last bound: at least ingest_p95_ms. */
  ingest_p95_above: boolean;
  webhooks: { pending: number; delivered: number; failed: number };
}

function Figure({ label, value, note }: { label: string; value: string; note?: string }) {
  return (
    <div class="figure">
      <dt>{label}</dt>
      <dd>
        <span class="value">{value}</span>
        {note ? <span class="note">{note}</span> : null}
      </dd>
    </div>
  );
}

export function Overview() {
  const { env, keys } = useConsole();
  const key = keys[env];
  const r = useLoad(key ? () => call<OverviewData>('/v1/overview', { key, env }) : null, [env, key]);
  const d = r.data;
  return (
    <Page title="Overview" busy={r.loading}>
      {!key ? (
        <MissingKey which={env} what={`The ${ENV_LABEL[env].toLowerCase()} overview`} />
      ) : (
        <>
          <div class="toolbar">
            <button type="button" class="secondary" onClick={() => !r.loading && r.reload()} aria-disabled={r.loading ? 'true' : undefined}>
              Refresh
            </button>
          </div>
          <ErrorAlert error={r.error} />
          <Loading when={r.loading && !d} />
          {d ? (
            <>
              <p>
                {ENV_LABEL[env]} events received since <Time iso={d.day_start} />.
              </p>
              <section aria-labelledby="ov-events">
                <h2 id="ov-events">Events today</h2>
                <dl class="figures">
                  <Figure label="Events today" value={formatCount(d.events_today)} />
                  <Figure label="Accepted" value={formatCount(d.by_outcome.accepted)} />
                  <Figure label="Duplicates" value={formatCount(d.by_outcome.duplicate)} />
                  <Figure label="Late" value={formatCount(d.by_outcome.late)} />
                  <Figure label="Rejected" value={formatCount(d.by_outcome.rejected)} />
                  <Figure label="Dead-lettered" value={formatCount(d.by_outcome.dead_lettered)} />
                </dl>
              </section>
              <section aria-labelledby="ov-ingest">
                <h2 id="ov-ingest">Ingest</h2>
                <dl class="figures">
                  <Figure label="Ingest requests" value={formatCount(d.ingest_requests)} />
                  <Figure
                    label="Ingest p95 latency"
                    value={
                      d.ingest_p95_ms === null
                        ? 'no requests yet'
                        : `${d.ingest_p95_above ? '> ' : '≤ '}${d.ingest_p95_ms.toLocaleString(undefined, { maximumFractionDigits: 2 })} ms`
                    }
                  />
                </dl>
              </section>
              <section aria-labelledby="ov-webhooks">
                <h2 id="ov-webhooks">Webhook deliveries</h2>
                <dl class="figures">
                  <Figure label="Pending" value={formatCount(d.webhooks.pending)} />
                  <Figure label="Delivered" value={formatCount(d.webhooks.delivered)} />
                  <Figure label="Failed" value={formatCount(d.webhooks.failed)} />
                </dl>
              </section>
            </>
          ) : null}
        </>
      )}
    </Page>
  );
}
