/**
 * A finished run's components under review: each component's own map (drawn by the server) with its
 * name, automatic label, suspect badge and exclude toggle; a click on a map shows MNE's properties
 * figure of it; the EOG/ECG scores as a table with the channels' names.
 */
import { IRunDetail, labkitUrl } from './api';

/** The URL of one component's figure, as the server extension draws it. */
export const componentFigure = (runId: string, component: number, figure: 'topomap' | 'properties'): string =>
  labkitUrl('runs', runId, 'components', String(component), `${figure}.png`);

/** The component cards; `excluded()` reads the toggles as they are now. */
export function componentGrid(detail: IRunDetail, reviewable: boolean): { node: HTMLElement; excluded: () => number[] } {
  const runId = detail.run.run_id;
  const grid = document.createElement('div');
  grid.className = 'jp-labkit-component-grid';
  const properties = document.createElement('figure');
  properties.className = 'jp-labkit-properties';
  properties.hidden = true;
  const show = (component: number, name: string) => {
    const img = document.createElement('img');
    const caption = document.createElement('figcaption');
    caption.textContent = `Properties of ${name}: drawing…`;
    img.alt = `Properties of ${name}: its map, spectrum, epochs image and variance`;
    img.addEventListener('load', () => (caption.textContent = `Properties of ${name}`));
    img.addEventListener('error', () => (caption.textContent = `The properties of ${name} could not be drawn.`));
    img.src = componentFigure(runId, component, 'properties');
    properties.replaceChildren(caption, img);
    properties.hidden = false;
  };
  for (const comp of detail.components) {
    const card = document.createElement('div');
    card.className = 'jp-labkit-component' + (comp.suspect ? ' jp-labkit-suspect' : '');
    card.dataset.component = String(comp.component);
    if (reviewable) {
      const map = document.createElement('button');
      map.className = 'jp-labkit-map-button';
      map.title = `Show the properties of ${comp.name}`;
      const img = document.createElement('img');
      img.className = 'jp-labkit-map';
      // not lazy: the server draws all of a run's maps in one pass on the first request, so every map is ready
      // then and each shows the moment it is scrolled to
      img.alt = `Topomap of ${comp.name}`;
      img.src = componentFigure(runId, comp.component, 'topomap');
      map.appendChild(img);
      map.addEventListener('click', () => show(comp.component, comp.name));
      card.appendChild(map);
    }
    const toggle = document.createElement('label');
    toggle.className = 'jp-labkit-exclude';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = comp.excluded;
    box.disabled = !reviewable;
    box.dataset.component = String(comp.component);
    const name = document.createElement('b');
    name.textContent = comp.name;
    toggle.append(box, name, document.createTextNode(' exclude'));
    const label = document.createElement('span');
    label.className = 'jp-labkit-label';
    label.textContent = comp.label ? `${comp.label} ${(comp.probability ?? 0).toFixed(2)}` : '';
    card.append(toggle, label);
    if (comp.suspect) {
      const badge = document.createElement('span');
      badge.className = 'jp-labkit-badge';
      badge.textContent = `${comp.suspect} suspect`;
      card.appendChild(badge);
    }
    grid.appendChild(card);
  }
  const node = document.createElement('div');
  node.append(grid, properties);
  const excluded = () =>
    [...grid.querySelectorAll<HTMLInputElement>('input[type=checkbox]')].filter(b => b.checked).map(b => Number(b.dataset.component));
  return { node, excluded };
}

/** The scores table: a row per component, a column per EOG/ECG channel (suspects marked). */
export function scoresTable(detail: IRunDetail): HTMLElement | null {
  const { columns, rows } = detail.scores ?? { columns: [], rows: [] };
  if (!columns.length) {
    return null;
  }
  const suspects = new Map(detail.components.map(c => [c.component, c.suspect]));
  const table = document.createElement('table');
  table.className = 'jp-labkit-scores';
  const caption = document.createElement('caption');
  caption.textContent = 'EOG/ECG correlation of each component';
  const head = table.createTHead().insertRow();
  for (const text of ['Component', ...columns, 'Suspect']) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = text;
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    const suspect = suspects.get(row.component) ?? '';
    if (suspect) {
      tr.className = 'jp-labkit-suspect';
    }
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = row.name;
    tr.appendChild(th);
    for (const v of row.values) {
      tr.insertCell().textContent = v === null ? '–' : (v >= 0 ? '+' : '') + v.toFixed(3);
    }
    tr.insertCell().textContent = suspect;
  }
  table.prepend(caption);
  return table;
}
