/**
 * The left-side "ICA runs" panel: every run and Job with a live state chip, its step, the
 * recording's name and a relative time, with a search box and a state filter. It polls the
 * server while it lives and tells the plugin what changed (for
 * notifications). Rows are reused while unchanged and built a batch per frame (see listing.ts).
 */
import { Widget } from '@lumino/widgets';
import { Signal, ISignal } from '@lumino/signaling';

import { listRuns, LabkitError } from './api';
import { FIRST_ROWS, rowKey, ROWS_PER_FRAME, rowsThisPass } from './listing';
import { chip, IChange, IRun, recordingName, relativeTime, RunsModel } from './model';

/** how often a view asks the server again; a run view asks every POLL_GOING_MS while its run is going */
export const POLL_MS = 2000;
export const POLL_GOING_MS = 500;
const STATES = ['', 'queued', 'running', 'succeeded', 'succeeded with warnings', 'failed', 'cancelled'];

export class RunsPanel extends Widget {
  readonly model = new RunsModel();
  private _changed = new Signal<this, IChange[]>(this);
  private _timer: number | undefined;
  /** built rows by run id, with what they show */
  private _rows = new Map<string, { key: string; li: HTMLLIElement }>();
  /** the render pass in progress: a newer one stops an older one's remaining batches */
  private _pass = 0;
  private _search: HTMLInputElement;
  private _state: HTMLSelectElement;
  private _list: HTMLUListElement;
  private _message: HTMLDivElement;
  private _compare: HTMLButtonElement;
  /** runs ticked for the compare view */
  readonly selected = new Set<string>();

  constructor(
    private readonly _open: (run: IRun) => void,
    private readonly _views: { compare: (runIds: string[]) => void; sweep: (sweepId: string) => void } = {
      compare: () => undefined,
      sweep: () => undefined
    },
    /** when to ask first: once JupyterLab has laid itself out, so the answer is painted at once */
    start: Promise<unknown> = Promise.resolve()
  ) {
    super();
    this.id = 'labkit-runs';
    this.addClass('jp-labkit-panel');
    this.title.caption = 'ICA runs';
    const bar = document.createElement('div');
    bar.className = 'jp-labkit-toolbar';
    this._search = document.createElement('input');
    this._search.type = 'search';
    this._search.placeholder = 'Search runs';
    this._search.setAttribute('aria-label', 'Search runs');
    this._search.className = 'jp-mod-styled jp-labkit-search';
    this._state = document.createElement('select');
    this._state.setAttribute('aria-label', 'Show runs in state');
    this._state.className = 'jp-mod-styled';
    for (const s of STATES) {
      const option = document.createElement('option');
      option.value = s;
      option.textContent = s || 'all states';
      this._state.appendChild(option);
    }
    this._search.addEventListener('input', () => this.render());
    this._state.addEventListener('change', () => this.render());
    this._compare = document.createElement('button');
    this._compare.className = 'jp-mod-styled jp-labkit-compare-button';
    this._compare.textContent = 'Compare';
    this._compare.title = 'Tick two or more succeeded runs, then compare them side by side';
    this._compare.disabled = true;
    this._compare.addEventListener('click', () => this._views.compare([...this.selected]));
    bar.append(this._search, this._state, this._compare);
    this._message = document.createElement('div');
    this._message.className = 'jp-labkit-message';
    this._message.setAttribute('role', 'status');
    this._list = document.createElement('ul');
    this._list.className = 'jp-labkit-runs';
    this._list.setAttribute('aria-label', 'ICA runs');
    const heading = document.createElement('h2');
    heading.className = 'jp-labkit-heading';
    heading.textContent = 'ICA runs';
    this.node.append(heading, bar, this._message, this._list);
    void start.then(() => {
      if (!this.isDisposed) {
        void this.refresh();
        this._timer = window.setInterval(() => void this.refresh(), POLL_MS);
      }
    });
  }

  /** Runs that appeared or changed state since the last listing. */
  get changed(): ISignal<this, IChange[]> {
    return this._changed;
  }

  async refresh(): Promise<void> {
    try {
      const page = await listRuns();
      const changes = this.model.update(page.runs);
      this._message.textContent = '';
      this.render();
      if (changes.length) {
        this._changed.emit(changes);
      }
    } catch (error) {
      this._message.textContent = error instanceof LabkitError ? error.message : String(error);
    }
  }

  render(): void {
    const runs = this.model.filter(this._search.value, this._state.value);
    for (const id of [...this.selected]) {
      if (!this.model.get(id)) {
        this.selected.delete(id);
      }
    }
    for (const id of [...this._rows.keys()]) {
      if (!this.model.get(id)) {
        this._rows.delete(id);
      }
    }
    this._compare.disabled = this.selected.size < 2;
    const pass = ++this._pass;
    const now = new Date();
    const keys = runs.map(run => rowKey(run, run.state.startsWith('succeeded'), now));
    const take = (from: number, budget: number): HTMLLIElement[] => {
      const n = rowsThisPass(
        keys.slice(from).map((key, i) => this._rows.get(runs[from + i].run_id)?.key !== key),
        budget
      );
      return runs.slice(from, from + n).map((run, i) => {
        const key = keys[from + i];
        const built = this._rows.get(run.run_id);
        if (built?.key === key) {
          return built.li;
        }
        const li = this._row(run);
        this._rows.set(run.run_id, { key, li });
        return li;
      });
    };
    const first = take(0, FIRST_ROWS);
    this._list.replaceChildren(...first);
    const more = (from: number) => {
      if (pass !== this._pass || this.isDisposed || from >= runs.length) {
        return;
      }
      const rows = take(from, ROWS_PER_FRAME);
      this._list.append(...rows);
      window.requestAnimationFrame(() => more(from + rows.length));
    };
    if (first.length < runs.length) {
      window.requestAnimationFrame(() => more(first.length));
    }
    if (!runs.length && !this._message.textContent) {
      const empty = document.createElement('li');
      empty.className = 'jp-labkit-empty';
      empty.textContent = this.model.runs.length ? 'No run matches.' : 'No runs yet: right-click a recording, "Run ICA on this recording…".';
      this._list.appendChild(empty);
    }
  }

  private _row(run: IRun): HTMLLIElement {
    const li = document.createElement('li');
    li.dataset.runId = run.run_id;
    const row = document.createElement('button');
    row.className = 'jp-labkit-run';
    const c = chip(run);
    const state = document.createElement('span');
    state.className = `jp-labkit-chip ${c.css}`;
    state.textContent = c.text;
    const name = document.createElement('span');
    name.className = 'jp-labkit-run-name';
    name.textContent = recordingName(run.recording) || run.run_id;
    name.title = run.recording;
    const meta = document.createElement('span');
    meta.className = 'jp-labkit-run-meta';
    const parts = [run.method, run.done ? '' : run.step, relativeTime(run.created), run.backend !== 'machine' ? run.backend : ''];
    meta.textContent = parts.filter(Boolean).join(' · ');
    row.title = run.reason ? `${run.run_id}: ${run.reason}` : run.run_id;
    row.append(state, name, meta);
    row.addEventListener('click', () => this._open(run));
    const tick = document.createElement('input');
    tick.type = 'checkbox';
    tick.className = 'jp-labkit-select';
    tick.setAttribute('aria-label', `Select ${recordingName(run.recording) || run.run_id} (${run.method}) to compare`);
    tick.checked = this.selected.has(run.run_id);
    tick.disabled = !run.state.startsWith('succeeded');
    tick.addEventListener('change', () => {
      if (tick.checked) {
        this.selected.add(run.run_id);
      } else {
        this.selected.delete(run.run_id);
      }
      this._compare.disabled = this.selected.size < 2;
    });
    li.append(tick, row);
    if (run.sweep_id) {
      const sweep = document.createElement('button');
      sweep.className = 'jp-labkit-sweep-link';
      sweep.textContent = 'sweep';
      sweep.title = `Open sweep ${run.sweep_id}`;
      sweep.addEventListener('click', () => this._views.sweep(run.sweep_id));
      li.appendChild(sweep);
    }
    return li;
  }

  dispose(): void {
    window.clearInterval(this._timer);
    super.dispose();
  }
}
