/**
 * "Run ICA on this recording…": a dialog built from the served parameter schema and bounded by
 * the recording's header. What the user types is kept as typed; the server's validation (the
 * CLI's own messages) is shown under each field.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { header, IHeader, info, IProblem, post, schema, validate } from './api';
import { IRun } from './model';

const SHOWN = ['method', 'n_components', 'channel_type', 'crop_tmin', 'crop_tmax', 'filter_fmin', 'filter_fmax', 'random_state'];
const LABELS: Record<string, string> = {
  method: 'ICA method',
  n_components: 'Components',
  channel_type: 'Channel type',
  crop_tmin: 'Crop start (s)',
  crop_tmax: 'Crop end (s)',
  filter_fmin: 'High-pass (Hz)',
  filter_fmax: 'Low-pass (Hz)',
  random_state: 'Random seed'
};

class RunForm extends Widget {
  private _inputs = new Map<string, HTMLInputElement | HTMLSelectElement>();
  private _errors = new Map<string, HTMLElement>();
  private _timer: number | undefined;
  problems: IProblem[] = [];
  private _backend: HTMLSelectElement | null = null;

  constructor(
    readonly path: string,
    props: Record<string, any>,
    head: IHeader,
    backends: string[] = ['machine']
  ) {
    super();
    this.addClass('jp-labkit-form');
    const about = document.createElement('p');
    about.textContent = `${path}: ${head.duration.toFixed(1)} s at ${head.sfreq} Hz; ${Object.entries(head.channel_counts)
      .map(([t, n]) => `${n} ${t}`)
      .join(', ')}`;
    this.node.appendChild(about);
    const types = Object.keys(head.channel_counts).filter(t => (props.channel_type.enum as string[]).includes(t));
    const defaults: Record<string, unknown> = {
      crop_tmax: Math.min(Number(props.crop_tmax.default ?? head.last_time), head.last_time),
      channel_type: types.includes(props.channel_type.default) ? props.channel_type.default : types[0]
    };
    for (const name of SHOWN) {
      const prop = props[name];
      const id = `labkit-field-${name}`;
      const row = document.createElement('div');
      row.className = 'jp-labkit-field';
      const label = document.createElement('label');
      label.htmlFor = id;
      label.textContent = LABELS[name];
      let input: HTMLInputElement | HTMLSelectElement;
      const options = name === 'channel_type' ? types : prop.enum;
      if (options) {
        input = document.createElement('select');
        for (const value of options as string[]) {
          const option = document.createElement('option');
          option.value = option.textContent = value;
          input.appendChild(option);
        }
      } else {
        input = document.createElement('input');
        input.type = 'text';
        input.inputMode = 'decimal';
      }
      input.id = id;
      input.name = name;
      input.className = 'jp-mod-styled';
      input.value = String(defaults[name] ?? prop.default ?? '');
      input.title = prop.description ?? '';
      const hint = document.createElement('div');
      hint.className = 'jp-labkit-hint';
      hint.textContent = name === 'filter_fmax' ? `below ${head.nyquist} Hz (Nyquist)` : name === 'crop_tmax' ? `up to ${head.last_time.toFixed(2)} s (the recording's end)` : '';
      const error = document.createElement('div');
      error.className = 'jp-labkit-error';
      error.setAttribute('role', 'alert');
      input.addEventListener('input', () => this.check());
      row.append(label, input, hint, error);
      this.node.appendChild(row);
      this._inputs.set(name, input);
      this._errors.set(name, error);
    }
    if (backends.length > 1) {
      // where the run goes: this server, or the cluster (through the lab hub's labkit service or directly)
      const row = document.createElement('div');
      row.className = 'jp-labkit-field';
      const label = document.createElement('label');
      label.htmlFor = 'labkit-field-backend';
      label.textContent = 'Run on';
      const select = document.createElement('select');
      select.id = 'labkit-field-backend';
      select.className = 'jp-mod-styled';
      for (const b of backends) {
        const option = document.createElement('option');
        option.value = b;
        option.textContent = b === 'machine' ? 'this server' : b === 'hub' ? 'the cluster (lab hub service)' : 'the cluster';
        select.appendChild(option);
      }
      row.append(label, select);
      this.node.appendChild(row);
      this._backend = select;
    }
    this.check();
  }

  /** Where the run goes (the server's backend name). */
  get backend(): string {
    return this._backend?.value ?? 'machine';
  }

  values(): Record<string, unknown> {
    const out: Record<string, unknown> = { raw_file_path: this.path };
    for (const [name, input] of this._inputs) {
      out[name] = input.value.trim() === '' ? null : input.value.trim();
    }
    return out;
  }

  check(): void {
    window.clearTimeout(this._timer);
    this._timer = window.setTimeout(async () => {
      const answer = await validate(this.values());
      this.problems = answer.problems;
      for (const [name, el] of this._errors) {
        const found = answer.problems.find(p => p.field === name);
        el.textContent = found ? found.message : '';
        this._inputs.get(name)?.setAttribute('aria-invalid', found ? 'true' : 'false');
      }
    }, 250);
  }
}

/** Ask for the settings, start the run; the started run, or null when the user cancelled. */
export async function runDialog(path: string): Promise<IRun | null> {
  const [props, head, where] = await Promise.all([
    schema().then(s => s.properties),
    header(path),
    info().then(
      i => i.backends,
      () => ['machine']
    )
  ]);
  const form = new RunForm(path, props, head, where);
  const result = await showDialog({
    title: 'Run ICA on this recording',
    body: form,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Start run' })],
    focusNodeSelector: 'select, input'
  });
  if (!result.button.accept) {
    return null;
  }
  const values = form.values();
  try {
    return await post<IRun>('runs', { params: values, backend: form.backend });
  } catch (error) {
    await showDialog({ title: 'The run was not started', body: String((error as Error).message), buttons: [Dialog.okButton()] });
    return null;
  }
}
