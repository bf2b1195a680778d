import { useId, useState } from 'preact/hooks';
import { KEY_INFO, type Keys } from './keys';

type Which = keyof Keys;

const ORDER: Which[] = ['sandbox', 'production', 'admin'];

export function SignIn(props: { initial: Keys | null; onSave: (k: Keys) => void; onCancel?: () => void }) {
  const uid = useId();
  const [keys, setKeys] = useState<Keys>(props.initial ?? { sandbox: '', production: '', admin: '' });
  const [errors, setErrors] = useState<{ form?: string }>({});

  const submit = (e: Event) => {
    e.preventDefault();
    const k: Keys = {
      sandbox: keys.sandbox.trim(),
      production: keys.production.trim(),
      admin: keys.admin.trim(),
    };
    const errs: { form?: string } = {};
    if (!k.sandbox && !k.production && !k.admin) errs.form = 'Enter at least one key.';
    setErrors(errs);
    if (!errs.form) props.onSave(k);
  };
  return (
    <section class="page signin" aria-labelledby="page-title">
      <h1 id="page-title" tabIndex={-1}>
        Sign in
      </h1>
      <p>
        Enter the keys you were given. Any of them may be left empty; pages that need a missing
        key say so. The keys stay in this browser tab only and are forgotten when you sign out
        or close it.
      </p>
      <form onSubmit={submit} noValidate>
        {ORDER.map((w) => {
          const id = `${uid}-${w}`;
          const hint = `${id}-hint`;
          return (
            <div class="field" key={w}>
              <label for={id}>{KEY_INFO[w].label}</label>
              <input
                id={id}
                name={w}
                type="password"
                class="mono wide"
                autocomplete="off"
                spellcheck={false}
                value={keys[w]}
                aria-describedby={hint}
                onInput={(e) => setKeys({ ...keys, [w]: (e.target as HTMLInputElement).value })}
              />
              <p id={hint} class="hint">
                Starts with <code>{KEY_INFO[w].prefix}</code>
                {w === 'admin' ? ' (for changes: keys, sandbox mode, webhooks).' : '.'}
              </p>
            </div>
          );
        })}
        {errors.form ? (
          <p role="alert" class="alert">
            {errors.form}
          </p>
        ) : null}
        <div class="row">
          <button type="submit">Sign in</button>
          {props.onCancel ? (
            <button type="button" class="secondary" onClick={props.onCancel}>
              Cancel
            </button>
          ) : null}
        </div>
      </form>
    </section>
  );
}
