#!/usr/bin/env node
// Drives the console in headless Chromium as a person would, for the agent's Rust tests.
//
//   node test/drive.mjs <action> '<json args>'
//
// Prints ONE JSON line with the result on stdout and exits 0; on any failure prints the error
// on stderr and exits 1. Controls are found by role and accessible name (getByRole/getByLabel),
// so the names a screen reader hears are what the tests exercise.
//
// Common args: {"url": "http://127.0.0.1:PORT/console/",
//               "keys": {"sandbox": "sk_test_…", "production": "sk_live_…", "admin": "adm_…"}}
// ("console_url" may stand for "url"; create-webhook then reads the endpoint's address from
// "url", otherwise from "webhook_url".)
// Environment: AFORO_CHROMIUM (default /usr/bin/chromium), AFORO_DRIVE_TIMEOUT_MS (whole action,
// default 60000), AFORO_DRIVE_WAIT_MS (one wait, default 15000).

import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const WAIT_MS = Number(process.env.AFORO_DRIVE_WAIT_MS || 15000);
const TOTAL_MS = Number(process.env.AFORO_DRIVE_TIMEOUT_MS || 60000);

const ENV_LABEL = { sandbox: 'Sandbox', production: 'Production' };
// Page slug (used in results and screenshot names) → its nav link and <h1>.
const PAGES = {
  overview: 'Overview',
  'event-log': 'Event Log',
  customers: 'Customers',
  invoices: 'Invoices',
  keys: 'Keys',
  webhooks: 'Webhooks',
};

function need(args, ...names) {
  for (const n of names) {
    if (args[n] === undefined || args[n] === null || args[n] === '') {
      throw new Error(`missing argument "${n}"`);
    }
  }
}

function envOf(args) {
  const env = args.env ?? 'sandbox';
  if (!ENV_LABEL[env]) throw new Error(`env must be "sandbox" or "production", not ${JSON.stringify(env)}`);
  return env;
}

// --- steps a person takes -----------------------------------------------------------------

/** The console's address: "url", or "console_url" where "url" means something else. */
function consoleUrl(args) {
  const u = args.console_url ?? args.url;
  if (!u) throw new Error('missing argument "url" (the console, e.g. http://127.0.0.1:PORT/console/)');
  return u;
}

async function signIn(page, args) {
  const keys = args.keys ?? {};
  await page.goto(consoleUrl(args), { waitUntil: 'load' });
  await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
  await page.getByLabel('Sandbox key', { exact: true }).fill(keys.sandbox ?? '');
  await page.getByLabel('Production key', { exact: true }).fill(keys.production ?? '');
  await page.getByLabel('Admin key', { exact: true }).fill(keys.admin ?? '');
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  const signedIn = page.getByRole('button', { name: 'Sign out', exact: true });
  const refused = page.getByRole('alert');
  await signedIn.or(refused).first().waitFor();
  if (!(await signedIn.isVisible())) {
    throw new Error(`sign-in refused: ${(await refused.first().textContent())?.trim()}`);
  }
}

/** Waits until nothing in <main> says aria-busy="true" (every page's first loads are done). */
async function waitReady(page) {
  await page.waitForFunction(() => !document.querySelector('main [aria-busy="true"]'), null, {
    timeout: WAIT_MS,
  });
}

async function selectTab(page, env) {
  const tab = page.getByRole('tab', { name: ENV_LABEL[env], exact: true });
  await tab.click();
  await page.getByRole('tab', { name: ENV_LABEL[env], exact: true, selected: true }).waitFor();
}

async function openPage(page, env, slug) {
  const label = PAGES[slug];
  await selectTab(page, env);
  await page
    .getByRole('navigation', { name: 'Console pages' })
    .getByRole('link', { name: label, exact: true })
    .click();
  await page.getByRole('heading', { level: 1, name: label, exact: true }).waitFor();
  await waitReady(page);
}

/** Fails with the page's own error text if it shows one in a role="alert", or asks for a key. */
async function failOnAlert(page, what) {
  const missing = page.getByRole('main').getByText(/needs the .* key .* which was not entered/);
  if ((await missing.count()) > 0) {
    throw new Error(`${what}: ${(await missing.first().innerText()).replace(/\s+/g, ' ').trim()}`);
  }
  const alerts = page.getByRole('main').getByRole('alert');
  const n = await alerts.count();
  if (n > 0) {
    const texts = [];
    for (let i = 0; i < n; i++) texts.push((await alerts.nth(i).textContent())?.trim());
    throw new Error(`${what}: the console shows an error: ${texts.join(' | ')}`);
  }
}

/** The rows of a table as objects keyed by column header text; a cell's data-value wins. */
async function readTable(table) {
  if ((await table.count()) === 0) return [];
  return table.evaluate((t) => {
    const heads = [...t.tHead.rows[0].cells].map((c) => c.textContent.trim());
    return [...t.tBodies[0].rows].map((tr) =>
      Object.fromEntries(
        [...tr.cells].map((c, i) => [heads[i], c.dataset.value ?? c.textContent.trim()]),
      ),
    );
  });
}

const eventTable = (page) => page.getByRole('table', { name: /events, newest first/ });

async function filterEvents(page, { customer, outcome }) {
  if (customer === undefined && outcome === undefined) return;
  if (customer !== undefined) await page.getByLabel('Customer', { exact: true }).fill(customer);
  if (outcome !== undefined) await page.getByLabel('Outcome', { exact: true }).selectOption(outcome);
  await page.getByRole('button', { name: 'Apply filters', exact: true }).click();
  await waitReady(page);
}

/** The first (newest) row of the event log for event_id (that `has` matches), paging "Older". */
async function findEventRow(page, eventId, has) {
  for (let pageNo = 0; pageNo < 40; pageNo++) {
    await failOnAlert(page, 'event log');
    let rows = eventTable(page)
      .getByRole('row')
      .filter({ has: page.getByRole('cell', { name: eventId, exact: true }) });
    if (has) rows = rows.filter({ has });
    if ((await rows.count()) > 0) return rows.first();
    const older = page.getByRole('button', { name: 'Older', exact: true });
    if ((await older.count()) === 0) break;
    await older.click();
    await waitReady(page);
  }
  throw new Error(`no row for event ${eventId} in the event log`);
}

/** The secret a page shows once, by the labels of its two read-only fields. */
async function readShownSecret(page, idLabel, secretLabel) {
  const secret = page.getByLabel(secretLabel, { exact: true });
  const alert = page.getByRole('main').getByRole('alert');
  await secret.or(alert).first().waitFor();
  if (!(await secret.isVisible())) await failOnAlert(page, 'creating');
  return {
    id: await page.getByLabel(idLabel, { exact: true }).inputValue(),
    secret: await secret.inputValue(),
  };
}

/** Waits for a role="status" whose text matches `re` (or an alert, which fails). */
async function waitStatus(page, re, what) {
  const status = page.getByRole('status').filter({ hasText: re });
  const alert = page.getByRole('main').getByRole('alert');
  await status.or(alert).first().waitFor();
  if ((await status.count()) === 0) await failOnAlert(page, what);
  return (await status.first().innerText()).trim().split('\n')[0].trim();
}

// --- actions --------------------------------------------------------------------------------

const ACTIONS = {
  async 'event-log'(page, args) {
    const env = envOf(args);
    await signIn(page, args);
    await openPage(page, env, 'event-log');
    await failOnAlert(page, 'event log');
    await filterEvents(page, { customer: args.customer, outcome: args.outcome });
    await failOnAlert(page, 'event log');
    const rows = await readTable(eventTable(page));
    return {
      rows: rows.map((r) => ({
        event_id: r['Event ID'],
        customer_id: r['Customer'],
        outcome: r['Outcome'],
        code: r['Code'] ? r['Code'] : null,
      })),
    };
  },

  async 'event-details'(page, args) {
    need(args, 'event_id');
    const env = envOf(args);
    await signIn(page, args);
    await openPage(page, env, 'event-log');
    await filterEvents(page, { customer: args.customer, outcome: args.outcome });
    const row = await findEventRow(page, args.event_id);
    await row.getByRole('button', { name: /^Details/ }).click();
    const dialog = page.getByRole('dialog', { name: `Event ${args.event_id}` });
    const json = dialog.getByRole('region', { name: 'Event JSON' });
    await json.or(dialog.getByRole('alert')).first().waitFor();
    if (!(await json.isVisible())) {
      throw new Error(`details: ${(await dialog.getByRole('alert').textContent())?.trim()}`);
    }
    const event = JSON.parse(await json.textContent());
    await dialog.getByRole('button', { name: 'Close', exact: true }).click();
    return { event };
  },

  async 'toggle-sandbox'(page, args) {
    need(args, 'customer');
    const env = envOf(args);
    await signIn(page, args);
    await openPage(page, env, 'customers');
    await failOnAlert(page, 'customers');
    const card = page.getByRole('region', { name: args.customer, exact: true });
    if ((await card.count()) === 0) {
      throw new Error(`customer ${args.customer} is not listed in ${env}`);
    }
    await card.getByRole('button', { name: /^Move to (production|sandbox)/ }).click();
    return { message: await waitStatus(page, /\S/, 'toggle-sandbox') };
  },

  async replay(page, args) {
    need(args, 'event_id');
    const env = envOf(args);
    await signIn(page, args);
    await openPage(page, env, 'event-log');
    await filterEvents(page, { customer: args.customer, outcome: args.outcome ?? 'dead_lettered' });
    const replay = page.getByRole('button', { name: /^Replay/ });
    const row = await findEventRow(page, args.event_id, replay);
    await row.getByRole('button', { name: /^Replay/ }).click();
    return { status: await waitStatus(page, /^Replayed/, 'replay') };
  },

  async 'rotate-key'(page, args) {
    need(args, 'key_id');
    const env = envOf(args);
    await signIn(page, args);
    await openPage(page, env, 'keys');
    await failOnAlert(page, 'keys');
    await page
      .getByLabel('Grace period (seconds)', { exact: true })
      .fill(String(args.grace_secs ?? 86400));
    const row = page
      .getByRole('table', { name: 'Partner keys' })
      .getByRole('row')
      .filter({ has: page.getByRole('rowheader', { name: args.key_id, exact: true }) });
    if ((await row.count()) === 0) throw new Error(`key ${args.key_id} is not listed`);
    await row.getByRole('button', { name: /^Rotate/ }).click();
    const shown = await readShownSecret(page, 'Key ID', 'API key');
    const until = page.getByText(/The old key .* works until/).locator('time');
    const old_expires_at = (await until.count()) ? await until.first().getAttribute('datetime') : null;
    return { api_key: shown.secret, key_id: shown.id, old_expires_at };
  },

  async 'create-key'(page, args) {
    need(args, 'customer');
    const env = envOf(args);
    await signIn(page, args);
    await openPage(page, env, 'keys');
    await failOnAlert(page, 'keys');
    await page.getByLabel('Customer ID', { exact: true }).fill(args.customer);
    await page.getByRole('button', { name: 'Create key', exact: true }).click();
    const shown = await readShownSecret(page, 'Key ID', 'API key');
    return { key_id: shown.id, api_key: shown.secret };
  },

  async 'create-webhook'(page, args) {
    // "url" is also the console's address: the endpoint's is "webhook_url", or "url" when the
    // console's is given as "console_url".
    const hook = args.console_url ? args.url : args.webhook_url;
    if (!hook) throw new Error('missing argument "webhook_url" (or "url" with "console_url")');
    const env = envOf(args);
    await signIn(page, args);
    await openPage(page, env, 'webhooks');
    await failOnAlert(page, 'webhooks');
    await page.getByLabel('Endpoint URL', { exact: true }).fill(hook);
    await page.getByRole('button', { name: 'Add endpoint', exact: true }).click();
    const shown = await readShownSecret(page, 'Endpoint ID', 'Signing secret');
    return { id: shown.id, secret: shown.secret };
  },

  async audit(page, args) {
    const dir = args.screenshots;
    if (dir) fs.mkdirSync(dir, { recursive: true });
    await signIn(page, args);
    const pages = [];

    const focused = () =>
      page.evaluate(() => {
        const el = document.activeElement;
        return {
          tag: el?.tagName ?? '',
          id: el?.id ?? '',
          role: el?.getAttribute('role') ?? '',
          selected: el?.getAttribute('aria-selected') === 'true',
          inNav: !!el?.closest('nav'),
          text: (el?.textContent ?? '').trim(),
        };
      });
    const press = async (key) => {
      await page.keyboard.press(key);
      return focused();
    };
    const fresh = async () => {
      // A full load, so that focus starts at the top of the document.
      await page.goto(consoleUrl(args), { waitUntil: 'load' });
      await page.getByRole('heading', { level: 1 }).waitFor();
    };

    // The skip link is first in tab order and moves focus to the content.
    await fresh();
    let f = await press('Tab');
    if (f.text !== 'Skip to content') {
      throw new Error(`the first Tab reaches ${f.tag} "${f.text}", not the skip link`);
    }
    f = await press('Enter');
    if (f.id !== 'content') throw new Error(`the skip link moved focus to ${f.tag}#${f.id}`);

    for (const env of Object.keys(ENV_LABEL)) {
      for (const [slug, label] of Object.entries(PAGES)) {
        await fresh();
        f = await press('Tab');
        if (f.text !== 'Skip to content') throw new Error(`first Tab: ${f.tag} "${f.text}"`);
        // Tab to the selected environment tab, then arrow keys to the wanted one.
        for (let i = 0; i < 10 && f.role !== 'tab'; i++) f = await press('Tab');
        if (f.role !== 'tab' || !f.selected) throw new Error('Tab does not reach the selected environment tab');
        for (let i = 0; i < 4 && f.text !== ENV_LABEL[env]; i++) f = await press('ArrowRight');
        if (f.text !== ENV_LABEL[env] || !f.selected) {
          throw new Error(`arrow keys do not select the ${ENV_LABEL[env]} tab`);
        }
        // Tab on to the page's link in the navigation, and follow it with Enter.
        for (let i = 0; i < 30 && !(f.tag === 'A' && f.inNav && f.text === label); i++) {
          f = await press('Tab');
        }
        if (!(f.tag === 'A' && f.inNav && f.text === label)) {
          throw new Error(`Tab does not reach the "${label}" link in the navigation`);
        }
        await press('Enter');
        await page.getByRole('heading', { level: 1, name: label, exact: true }).waitFor();
        await page.getByRole('tab', { name: ENV_LABEL[env], selected: true }).waitFor();
        await waitReady(page);
        const found = await page.evaluate(async () => {
          // eslint-disable-next-line no-undef
          const r = await axe.run(document, { runOnly: ['wcag2a', 'wcag2aa'] });
          return r.violations.map((v) => ({
            id: v.id,
            impact: v.impact,
            nodes: v.nodes.length,
            help: v.help,
            targets: v.nodes.slice(0, 5).map((n) => n.target.join(' ')),
          }));
        });
        const csp = await page.evaluate(() => window.__aforoCspViolations ?? []);
        if (csp.length) {
          found.push({
            id: 'csp-violation',
            impact: 'serious',
            nodes: csp.length,
            help: 'Content-Security-Policy refused something the page loads',
            targets: csp.slice(0, 5),
          });
        }
        pages.push({ env, page: slug, violations: found });
        if (dir) {
          await page.screenshot({ path: path.join(dir, `${env}-${slug}.png`), fullPage: true });
        }
      }
    }
    return { pages };
  },
};

// --- running --------------------------------------------------------------------------------

async function run(action, args) {
  const fn = ACTIONS[action];
  if (!fn) throw new Error(`unknown action ${JSON.stringify(action)}; one of: ${Object.keys(ACTIONS).join(', ')}`);
  const browser = await chromium.launch({
    executablePath: process.env.AFORO_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    headless: true,
    timeout: WAIT_MS * 2,
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    context.setDefaultTimeout(WAIT_MS);
    context.setDefaultNavigationTimeout(WAIT_MS);
    // Before any page script: axe for the audit, and a record of what the CSP refused. Init
    // scripts are not subject to the page's Content-Security-Policy, as a <script> tag would be.
    await context.addInitScript(() => {
      window.__aforoCspViolations = [];
      document.addEventListener('securitypolicyviolation', (e) => {
        window.__aforoCspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
      });
    });
    if (action === 'audit') {
      await context.addInitScript({ path: require.resolve('axe-core/axe.min.js') });
    }
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    let timer;
    const result = await Promise.race([
      fn(page, args),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${action} took longer than ${TOTAL_MS} ms`)), TOTAL_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    if (pageErrors.length) throw new Error(`the page threw: ${pageErrors.join(' | ')}`);
    return result;
  } finally {
    await browser.close().catch(() => {});
  }
}

const [action, raw] = process.argv.slice(2);
// A last resort if closing the browser itself hangs.
setTimeout(() => {
  process.stderr.write(`drive.mjs: ${action} did not finish; exiting\n`);
  process.exit(1);
}, TOTAL_MS + 20000).unref();

let args;
try {
  args = raw ? JSON.parse(raw) : {};
} catch (e) {
  process.stderr.write(`drive.mjs: the arguments are not JSON: ${e.message}\n`);
  process.exit(1);
}
run(action, args).then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  },
  (e) => {
    process.stderr.write(`drive.mjs ${action}: ${e?.stack ?? e}\n`);
    process.exit(1);
  },
);
