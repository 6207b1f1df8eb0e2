/**
 * Runs side by side in the main area: a row per component of the first run, each other run's
 * matching component (matched by the server, one-to-one by the correlation of their maps) beside
 * it with its r, then the runs' metrics aligned in one table.
 */
import { Widget } from '@lumino/widgets';

import { compareRuns, ICompare, LabkitError } from './api';
import { componentFigure } from './components';
import { recordingName } from './model';
import { formatMetric, METRIC_LABELS } from './runview';
import { compareRows, IMapCell } from './viewstate';

export class CompareView extends Widget {
  constructor(readonly runIds: string[]) {
    super();
    this.addClass('jp-labkit-runview');
    this.addClass('jp-labkit-compare');
    this.title.label = `Compare ${runIds.length} ICA runs`;
    this.title.closable = true;
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', `Comparison of ${runIds.length} ICA runs`);
    const status = document.createElement('div');
    status.className = 'jp-labkit-message';
    status.setAttribute('role', 'status');
    status.textContent = 'Matching the components by correlation…';
    this.node.appendChild(status);
    compareRuns(runIds).then(
      doc => this.node.replaceChildren(status, ...this._render(doc)),
      error => (status.textContent = error instanceof LabkitError ? error.message : String(error))
    );
  }

  protected onAfterAttach(): void {
    this.node.tabIndex = 0; // scrollable with the keyboard: its maps hold nothing focusable
  }

  private _render(doc: ICompare): HTMLElement[] {
    this.node.querySelector('.jp-labkit-message')!.textContent = '';
    const names = doc.runs.map(r => `${recordingName(r.recording) || r.run_id} · ${r.method}`);
    const maps = document.createElement('table');
    maps.className = 'jp-labkit-compare-maps';
    const caption = document.createElement('caption');
    caption.textContent = `Components of ${names[0]} and their best match in each other run (|r| of the maps)`;
    maps.appendChild(caption);
    const head = maps.createTHead().insertRow();
    for (const [i, name] of names.entries()) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = name;
      th.title = doc.runs[i].run_id;
      head.appendChild(th);
    }
    const body = maps.createTBody();
    for (const row of compareRows(doc)) {
      const tr = body.insertRow();
      tr.dataset.component = String(row.reference.component);
      tr.appendChild(this._map(row.reference, 'th'));
      for (const other of row.others) {
        tr.appendChild(other ? this._map(other, 'td') : Object.assign(document.createElement('td'), { textContent: 'no match (fewer components)' }));
      }
    }
    const metrics = document.createElement('table');
    metrics.className = 'jp-labkit-metrics jp-labkit-compare-metrics';
    const mcap = document.createElement('caption');
    mcap.textContent = 'Metrics';
    metrics.appendChild(mcap);
    const mhead = metrics.createTHead().insertRow();
    mhead.appendChild(document.createElement('td'));
    for (const name of names) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = name;
      mhead.appendChild(th);
    }
    const mbody = metrics.createTBody();
    for (const { key, values } of doc.metrics) {
      const tr = mbody.insertRow();
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = METRIC_LABELS.get(key) ?? key;
      tr.appendChild(th);
      for (const v of values) {
        tr.insertCell().textContent = v === null || v === undefined ? '–' : formatMetric(key, v);
      }
    }
    return [maps, metrics];
  }

  private _map(map: IMapCell, tag: 'th' | 'td'): HTMLElement {
    const cell = document.createElement(tag);
    if (tag === 'th') {
      (cell as HTMLTableCellElement).scope = 'row';
    }
    const img = document.createElement('img');
    img.className = 'jp-labkit-map';
    img.loading = 'lazy';
    img.alt = `Topomap of ${map.text.split(' ')[0]} of run ${map.runId}`;
    img.src = componentFigure(map.runId, map.component, 'topomap');
    const label = document.createElement('div');
    label.textContent = map.text;
    cell.append(img, label);
    return cell;
  }
}
