/**
 * One run in the main area: its state and warnings, the topomaps, each component with its
 * automatic label, suspect badge and exclude toggle, formatted metrics and the log following its
 * newest line. Save writes components.tsv, Apply the cleaned recording (on the server, off the
 * UI thread, with the button saying so meanwhile).
 */
import { Widget } from '@lumino/widgets';

import { followLog, IRunDetail, labkitUrl, LabkitError, post, runDetail, runLog, saveComponents } from './api';
import { componentGrid, scoresTable } from './components';
import { chip, recordingName } from './model';
import { POLL_GOING_MS } from './panel';

const SHOWN_METRICS: [string, string, (v: any) => string][] = [
  ['method', 'Method', v => String(v)],
  ['n_components', 'Components', v => String(v)],
  ['converged', 'Converged', v => (v ? 'yes' : 'no')],
  ['n_iter', 'Iterations', v => String(v)],
  ['fit_time_s', 'Fit time', v => `${Number(v).toFixed(1)} s`],
  ['explained_variance', 'Explained variance', v => `${(100 * Number(v)).toFixed(1)} %`],
  ['n_channels', 'Channels', v => String(v)],
  ['duration_s', 'Analysed span', v => `${Number(v).toFixed(1)} s`],
  ['sfreq', 'Sampling rate', v => `${Number(v).toFixed(0)} Hz`]
];

/** A metric's label as the run view and the compare view show it. */
export const METRIC_LABELS = new Map(SHOWN_METRICS.map(([key, label]) => [key, label]));

/** A metric's value formatted as the run view shows it (its plain text when the run view does not know it). */
export function formatMetric(key: string, value: unknown): string {
  const known = SHOWN_METRICS.find(([k]) => k === key);
  return known ? known[2](value) : String(value);
}

export class RunView extends Widget {
  private _detail: IRunDetail | null = null;
  private _timer: number | undefined;
  private _log: HTMLPreElement;
  private _body: HTMLDivElement;
  private _status: HTMLDivElement;
  /** whether the status line tells a failed refresh (cleared by the next answer), not an action's outcome */
  private _statusIsProblem = false;
  /** the going run's log is streamed once per view (then, if the run goes on, its tail is polled) */
  private _followed = false;
  private _streaming = false;
  private _stop = new AbortController();

  constructor(
    readonly runId: string,
    private readonly _actions: {
      openReport: (detail: IRunDetail) => void;
      reveal: (detail: IRunDetail) => void;
      openNotebook: (detail: IRunDetail) => void;
      openForm: (detail: IRunDetail) => void;
    }
  ) {
    super();
    this.id = `labkit-run-${runId}`;
    this.addClass('jp-labkit-runview');
    this.title.label = `ICA ${runId}`;
    this.title.closable = true;
    this._status = document.createElement('div');
    this._status.className = 'jp-labkit-message';
    this._status.setAttribute('role', 'status');
    this._body = document.createElement('div');
    this._log = document.createElement('pre');
    this._log.className = 'jp-labkit-log';
    this._log.tabIndex = 0;
    this._log.setAttribute('aria-label', 'Run log');
    const logHeading = document.createElement('h3');
    logHeading.textContent = 'Log';
    this.node.append(this._status, this._body, logHeading, this._log);
    void this._poll();
  }

  /** Follow the run while it is going (its maps show as soon as it ends); a problem is asked again slower. */
  private async _poll(): Promise<void> {
    await this.refresh();
    if (this.isDisposed || this._detail?.run.done) {
      return;
    }
    if (!this._followed && !this._statusIsProblem) {
      void this._follow();
    }
    window.clearTimeout(this._timer);
    this._timer = window.setTimeout(() => void this._poll(), this._statusIsProblem ? 4 * POLL_GOING_MS : POLL_GOING_MS);
  }

  /** Stream the log line by line as the run writes it; the stream ends with the run, so the view asks at once. */
  private async _follow(): Promise<void> {
    this._followed = this._streaming = true;
    let text = '';
    try {
      await followLog(this.runId, piece => this._showLog((text += piece)), this._stop.signal);
    } catch {
      // refused (the server follows its most logs already) or cut: the polls fetch the log's tail instead
    }
    this._streaming = false;
    if (!this.isDisposed) {
      void this._poll();
    }
  }

  /** The log's text, still following its newest line unless the reader scrolled up. */
  private _showLog(text: string): void {
    const atEnd = this._log.scrollTop + this._log.clientHeight >= this._log.scrollHeight - 4;
    this._log.textContent = text;
    if (atEnd) {
      this._log.scrollTop = this._log.scrollHeight;
    }
  }

  async refresh(): Promise<void> {
    try {
      const detail = await runDetail(this.runId);
      const changed = JSON.stringify(detail.run) !== JSON.stringify(this._detail?.run);
      this._detail = detail;
      if (changed) {
        this._render(detail);
      }
      if (!this._streaming) {
        this._showLog(await runLog(this.runId));
      }
      if (this._statusIsProblem) {
        this._status.textContent = ''; // the server answered again: the last problem is over
        this._statusIsProblem = false;
      }
    } catch (error) {
      this._status.textContent = error instanceof LabkitError ? error.message : String(error);
      this._statusIsProblem = true;
    }
  }

  private _render(detail: IRunDetail): void {
    const { run } = detail;
    const c = chip(run);
    this.title.label = `ICA ${recordingName(run.recording) || run.run_id}`;
    const head = document.createElement('div');
    head.className = 'jp-labkit-runhead';
    head.innerHTML = '';
    const h = document.createElement('h2');
    h.textContent = `${recordingName(run.recording) || run.run_id} · ${run.method}`;
    const state = document.createElement('span');
    state.className = `jp-labkit-chip ${c.css}`;
    state.textContent = run.done ? c.text : `${c.text}${run.step ? `: ${run.step}` : ''}`;
    head.append(h, state);
    if (run.reason) {
      const reason = document.createElement('p');
      reason.className = 'jp-labkit-reason';
      reason.textContent = run.reason;
      head.appendChild(reason);
    }
    const parts: HTMLElement[] = [head];
    if (run.warnings.length) {
      const list = document.createElement('ul');
      list.className = 'jp-labkit-warnings';
      list.setAttribute('aria-label', 'Warnings');
      for (const w of [...new Set(run.warnings)]) {
        const li = document.createElement('li');
        li.textContent = w;
        list.appendChild(li);
      }
      parts.push(list);
    }
    parts.push(this._buttons(detail));
    for (const fig of detail.figures.filter(f => !(detail.components.length && f.startsWith('topomaps')))) {
      const img = document.createElement('img');
      img.className = 'jp-labkit-figure';
      img.src = labkitUrl('runs', run.run_id, 'files', fig);
      img.alt = fig.startsWith('topomaps') ? `Topomaps of the components of run ${run.run_id}` : fig;
      parts.push(img);
    }
    if (detail.components.length) {
      parts.push(this._components(detail));
    }
    const scores = scoresTable(detail);
    if (scores) {
      parts.push(scores);
    }
    parts.push(this._metrics(detail));
    this._body.replaceChildren(...parts);
  }

  private _buttons(detail: IRunDetail): HTMLElement {
    const bar = document.createElement('div');
    bar.className = 'jp-labkit-actions';
    const add = (label: string, act: () => void, enabled = true) => {
      const b = document.createElement('button');
      b.className = 'jp-mod-styled jp-mod-reject';
      b.textContent = label;
      b.disabled = !enabled;
      b.addEventListener('click', act);
      bar.appendChild(b);
      return b;
    };
    add('Open report', () => this._actions.openReport(detail), !!detail.report);
    add('Open notebook', () => this._actions.openNotebook(detail), !!detail.notebook);
    add('Open in the form', () => this._actions.openForm(detail), !!detail.params);
    add('Reveal folder', () => this._actions.reveal(detail), !!detail.folder);
    add('Cancel', () => void this._act('cancel'), !detail.run.done);
    add('Rerun', () => void this._act('rerun'), detail.run.done);
    return bar;
  }

  private async _act(action: 'cancel' | 'rerun'): Promise<void> {
    try {
      await post(`runs/${encodeURIComponent(this.runId)}/${action}`);
      this._status.textContent = action === 'cancel' ? 'Cancelled.' : 'Started again as a new run (see the ICA runs panel).';
      void this.refresh();
    } catch (error) {
      this._status.textContent = String((error as Error).message);
    }
  }

  private _components(detail: IRunDetail): HTMLElement {
    const box = document.createElement('section');
    box.className = 'jp-labkit-components';
    const h = document.createElement('h3');
    h.textContent = 'Components (click a map for its properties)';
    const reviewable = detail.run.state === 'succeeded' || detail.run.state === 'succeeded with warnings';
    const { node: grid, excluded } = componentGrid(detail, reviewable);
    const bar = document.createElement('div');
    bar.className = 'jp-labkit-actions';
    const save = document.createElement('button');
    save.className = 'jp-mod-styled jp-mod-accept';
    save.textContent = 'Save';
    save.disabled = !reviewable;
    save.addEventListener('click', async () => {
      try {
        await saveComponents(this.runId, excluded());
        this._status.textContent = `Saved ${excluded().length} excluded component(s) to components.tsv.`;
      } catch (error) {
        this._status.textContent = String((error as Error).message);
      }
    });
    const apply = document.createElement('button');
    apply.className = 'jp-mod-styled';
    apply.textContent = 'Apply';
    apply.disabled = !reviewable;
    apply.addEventListener('click', async () => {
      apply.disabled = true;
      this._status.textContent = 'Writing the cleaned recording…';
      try {
        const done = await post<{ cleaned: string }>(`runs/${encodeURIComponent(this.runId)}/apply`, { exclude: excluded() });
        this._status.textContent = `Wrote ${done.cleaned}.`;
      } catch (error) {
        this._status.textContent = String((error as Error).message);
      } finally {
        apply.disabled = false;
      }
    });
    bar.append(save, apply);
    box.append(h, grid, bar);
    return box;
  }

  private _metrics(detail: IRunDetail): HTMLElement {
    const table = document.createElement('table');
    table.className = 'jp-labkit-metrics';
    const caption = document.createElement('caption');
    caption.textContent = 'Metrics';
    table.appendChild(caption);
    for (const [key, label, format] of SHOWN_METRICS) {
      if (detail.metrics[key] === undefined || detail.metrics[key] === null) {
        continue;
      }
      const row = table.insertRow();
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = label;
      row.appendChild(th);
      row.insertCell().textContent = format(detail.metrics[key]);
    }
    return table;
  }

  dispose(): void {
    window.clearTimeout(this._timer);
    this._stop.abort();
    super.dispose();
  }
}
