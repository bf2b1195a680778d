import { useId, useState } from 'preact/hooks';
import { call } from '../api';
import { localToRfc3339 } from '../format';
import { ENV_LABEL } from '../keys';
import { ErrorAlert, Loading, MissingKey, Page, TableWrap, Time, useConsole, useLoad } from '../ui';
import type { CustomerList } from './customers';

interface Line {
  charge: string;
  metric?: string;
  model: string;
  quantity: string;
  amount: string;
  skipped_events?: number;
}

interface Invoice {
  environment: string;
  customer_id: string;
  currency: string;
  lines: Line[];
  subtotal: string;
  minimum_true_up: string;
  discounts: string;
  tax: string;
  tax_rate_percent?: string;
  tax_inclusive?: boolean;
  total: string;
  credits_applied: string;
  amount_due: string;
  margin_percent?: string;
  flags?: { code: string; message: string }[];
}

interface Preview {
  environment: string;
  from: string;
  to: string;
  currency: string;
  invoices: Invoice[];
}

interface Params {
  customer: string;
  from: string;
  to: string;
}

function InvoiceTable({ inv, sandbox }: { inv: Invoice; sandbox: boolean }) {
  const cur = inv.currency;
  return (
    <section class="card invoice" aria-labelledby={`inv-${inv.customer_id}`}>
      <h2 id={`inv-${inv.customer_id}`}>
        {inv.customer_id}
        {sandbox ? <span class="sim"> Simulated — sandbox is never billed</span> : null}
      </h2>
      <TableWrap label={`Invoice for ${inv.customer_id}`}>
        <table>
          <caption>
            Invoice preview for {inv.customer_id} in {cur}
          </caption>
          <thead>
            <tr>
              <th scope="col">Charge</th>
              <th scope="col">Metric</th>
              <th scope="col">Pricing model</th>
              <th scope="col" class="num">
                Quantity
              </th>
              <th scope="col" class="num">
                Skipped events
              </th>
              <th scope="col" class="num">
                Amount ({cur})
              </th>
            </tr>
          </thead>
          <tbody>
            {inv.lines.map((l, i) => (
              <tr key={i}>
                <th scope="row">{l.charge}</th>
                <td>{l.metric ?? <span class="muted">—</span>}</td>
                <td>{l.model.replace(/_/g, ' ')}</td>
                <td class="num">{l.quantity}</td>
                <td class="num">{l.skipped_events ? l.skipped_events : <span class="muted">—</span>}</td>
                <td class="num">{l.amount}</td>
              </tr>
            ))}
          </tbody>
          <tfoot>
            <tr>
              <th scope="row" colSpan={5}>
                Subtotal
              </th>
              <td class="num">{inv.subtotal}</td>
            </tr>
            <tr>
              <th scope="row" colSpan={5}>
                Minimum commitment true-up
              </th>
              <td class="num">{inv.minimum_true_up}</td>
            </tr>
            <tr>
              <th scope="row" colSpan={5}>
                Discounts (coupons)
              </th>
              <td class="num">{inv.discounts}</td>
            </tr>
            <tr>
              <th scope="row" colSpan={5}>
                Tax{inv.tax_rate_percent ? ` (${inv.tax_rate_percent}%${inv.tax_inclusive ? ', included' : ''})` : ''}
              </th>
              <td class="num">{inv.tax}</td>
            </tr>
            <tr>
              <th scope="row" colSpan={5}>
                Total
              </th>
              <td class="num">{inv.total}</td>
            </tr>
            <tr>
              <th scope="row" colSpan={5}>
                Prepaid credits applied
              </th>
              <td class="num">{inv.credits_applied}</td>
            </tr>
            <tr class="total">
              <th scope="row" colSpan={5}>
                Amount due{sandbox ? ' (simulated)' : ''}
              </th>
              <td class="num">
                {inv.amount_due} {cur}
              </td>
            </tr>
            {inv.margin_percent !== undefined && (
              <tr>
                <th scope="row" colSpan={5}>
                  Margin
                </th>
                <td class="num">{inv.margin_percent}%</td>
              </tr>
            )}
          </tfoot>
        </table>
      </TableWrap>
      {(inv.flags ?? []).map((f) => (
        <p class="notice" key={f.code}>
          <strong>{f.code}</strong>: {f.message}
        </p>
      ))}
    </section>
  );
}

export function Invoices() {
  const { env, keys } = useConsole();
  const key = keys[env];
  const uid = useId();
  const [draft, setDraft] = useState<Params>({ customer: '', from: '', to: '' });
  const [params, setParams] = useState<Params>(draft);
  const customers = useLoad(
    key ? () => call<CustomerList>('/v1/customers', { key, env }) : null,
    [env, key],
  );
  const preview = useLoad(
    key
      ? () =>
          call<Preview>('/v1/invoices/preview', {
            key,
            env,
            query: {
              customer: params.customer,
              from: localToRfc3339(params.from),
              to: localToRfc3339(params.to),
            },
          })
      : null,
    [env, key, params],
  );
  const sandbox = env === 'sandbox';
  const p = preview.data;
  const set = (k: keyof Params) => (e: Event) =>
    setDraft({ ...draft, [k]: (e.target as HTMLInputElement | HTMLSelectElement).value });

  return (
    <Page title="Invoices" busy={customers.loading || preview.loading}>
      {!key ? (
        <MissingKey which={env} what={`The ${ENV_LABEL[env].toLowerCase()} invoice preview`} />
      ) : (
        <>
          <p>
            What each customer would be invoiced for the period, priced with the catalog's plans.
            {sandbox ? ' Sandbox invoices are simulated: sandbox is never billed.' : ''}
          </p>
          <form
            class="filters"
            aria-label="Invoice period"
            onSubmit={(e) => {
              e.preventDefault();
              setParams({ ...draft });
            }}
          >
            <div class="field">
              <label for={`${uid}-c`}>Customer</label>
              <select id={`${uid}-c`} value={draft.customer} onChange={set('customer')}>
                <option value="">All customers</option>
                {customers.data?.data.map((c) => (
                  <option key={c.customer_id} value={c.customer_id}>
                    {c.customer_id}
                  </option>
                ))}
              </select>
            </div>
            <div class="field">
              <label for={`${uid}-f`}>From (your time)</label>
              <input
                id={`${uid}-f`}
                type="datetime-local"
                value={draft.from}
                onInput={set('from')}
                aria-describedby={`${uid}-hint`}
              />
            </div>
            <div class="field">
              <label for={`${uid}-t`}>To (your time)</label>
              <input
                id={`${uid}-t`}
                type="datetime-local"
                value={draft.to}
                onInput={set('to')}
                aria-describedby={`${uid}-hint`}
              />
            </div>
            <div class="row actions">
              <button type="submit">Preview</button>
            </div>
            <p id={`${uid}-hint`} class="hint wide-hint">
              Leave the dates empty for the current month.
            </p>
          </form>
          <ErrorAlert error={customers.error} />
          <ErrorAlert error={preview.error} />
          <Loading when={preview.loading && !p} />
          {p && !preview.error ? (
            <>
              <p class="period">
                Period <Time iso={p.from} /> to <Time iso={p.to} />, in {p.currency}.
              </p>
              {sandbox ? (
                <p class="sim-banner">
                  <strong>Simulated — sandbox is never billed.</strong>
                </p>
              ) : null}
              {p.invoices.length === 0 ? (
                <p class="empty-note">No invoices for this period.</p>
              ) : (
                p.invoices.map((inv) => (
                  <InvoiceTable key={inv.customer_id} inv={inv} sandbox={sandbox} />
                ))
              )}
            </>
          ) : null}
        </>
      )}
    </Page>
  );
}
