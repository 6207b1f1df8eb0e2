/**
 * A sweep in the main area: its recordings x methods x seeds as a matrix of state cells that
 * update live, "Rerun failed" for the cells that failed or were cancelled, and, once every cell
 * has ended, the `labkit compare` command of its statistics with a button running it in a terminal.
 */
import { Widget } from '@lumino/widgets';

import { ISweep, LabkitError, rerunFailed, sweep } from './api';
import { chip, IRun, recordingName, sweepTables } from './model';
import { POLL_MS } from './panel';
import { failedCells, statsCommand } from './viewstate';

export class SweepView extends Widget {
  private _timer: number | undefined;
  private _status: HTMLDivElement;
  private _body: HTMLDivElement;
  private _last = '';

  constructor(
    readonly sweepId: string,
    private readonly _actions: { openRun: (runId: string) => void; runInTerminal: (command: string) => void }
  ) {
    super();
    this.addClass('jp-labkit-runview');
    this.addClass('jp-labkit-sweepview');
    this.title.label = `Sweep ${sweepId}`;
    this.title.closable = true;
    this._status = document.createElement('div');
    this._status.className = 'jp-labkit-message';
    this._status.setAttribute('role', 'status');
    this._body = document.createElement('div');
    this.node.append(this._status, this._body);
    void this.refresh();
    this._timer = window.setInterval(() => void this.refresh(), POLL_MS);
  }

  async refresh(): Promise<void> {
    try {
      const doc = await sweep(this.sweepId);
      const seen = JSON.stringify(doc);
      if (seen !== this._last) {
        this._last = seen;
        this._render(doc);
      }
    } catch (error) {
      this._status.textContent = error instanceof LabkitError ? error.message : String(error);
    }
  }

  private _render(doc: ISweep): void {
    const head = document.createElement('div');
    head.className = 'jp-labkit-runhead';
    const h = document.createElement('h2');
    h.textContent = `Sweep ${doc.sweep_id}`;
    const counts = document.createElement('span');
    counts.className = 'jp-labkit-sweep-counts';
    counts.textContent = Object.entries(doc.counts)
      .map(([state, n]) => `${n} ${state}`)
      .join(' · ');
    head.append(h, counts);
    const bar = document.createElement('div');
    bar.className = 'jp-labkit-actions';
    const rerun = document.createElement('button');
    rerun.className = 'jp-mod-styled jp-mod-reject';
    const failed = failedCells(doc.cells).length;
    rerun.textContent = failed ? `Rerun failed (${failed})` : 'Rerun failed';
    rerun.title = 'Start the failed and cancelled cells again in this sweep';
    rerun.disabled = !failed;
    rerun.addEventListener('click', async () => {
      rerun.disabled = true;
      try {
        const started = await rerunFailed(this.sweepId);
        this._status.textContent = `Started ${started.runs.length} run(s) again in this sweep.`;
        void this.refresh();
      } catch (error) {
        this._status.textContent = String((error as Error).message);
      }
    });
    bar.appendChild(rerun);
    const parts: HTMLElement[] = [head, bar];
    for (const table of sweepTables(doc.cells, doc.recordings, doc.methods, doc.seeds)) {
      parts.push(this._table(table.recording, doc.seeds, table.rows));
    }
    const command = statsCommand(doc);
    if (command) {
      const stats = document.createElement('section');
      stats.className = 'jp-labkit-sweep-stats';
      const p = document.createElement('p');
      p.textContent = 'Every run has ended. The statistics of this sweep (rank tests, effect sizes, Holm):';
      const code = document.createElement('code');
      code.textContent = command;
      const run = document.createElement('button');
      run.className = 'jp-mod-styled jp-mod-accept';
      run.textContent = 'Run labkit compare in a terminal';
      run.addEventListener('click', () => this._actions.runInTerminal(command));
      stats.append(p, code, run);
      parts.push(stats);
    }
    this._body.replaceChildren(...parts);
    if (doc.complete) {
      window.clearInterval(this._timer);
    }
  }

  private _table(recording: string, seeds: (number | null)[], rows: { method: string; runs: (IRun | null)[] }[]): HTMLElement {
    const table = document.createElement('table');
    table.className = 'jp-labkit-sweep-matrix';
    const caption = document.createElement('caption');
    caption.textContent = recordingName(recording);
    caption.title = recording;
    table.appendChild(caption);
    const head = table.createTHead().insertRow();
    const corner = document.createElement('th');
    corner.textContent = 'method \\ seed';
    head.appendChild(corner);
    for (const seed of seeds) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = seed === null ? 'random' : String(seed);
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const row of rows) {
      const tr = body.insertRow();
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = row.method;
      tr.appendChild(th);
      for (const run of row.runs) {
        const td = tr.insertCell();
        if (!run) {
          td.textContent = '–';
          continue;
        }
        const c = chip(run);
        const cell = document.createElement('button');
        cell.className = `jp-labkit-chip ${c.css} jp-labkit-sweep-cell`;
        cell.dataset.runId = run.run_id;
        cell.textContent = run.done ? c.text : `${c.text}${run.step ? `: ${run.step}` : ''}`;
        cell.title = run.reason ? `${run.run_id}: ${run.reason}` : run.run_id;
        cell.addEventListener('click', () => this._actions.openRun(run.run_id));
        td.appendChild(cell);
      }
    }
    return table;
  }

  dispose(): void {
    window.clearInterval(this._timer);
    super.dispose();
  }
}
