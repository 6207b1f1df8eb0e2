import { FIRST_ROWS, rowKey, ROWS_PER_FRAME, rowsThisPass } from '../src/listing';
import { RunsModel } from '../src/model';
import { run } from './fixtures';

/** Lay out `wanted` rows the way the panel does: a first pass of FIRST_ROWS builds, then ROWS_PER_FRAME per frame. */
function layOut(wanted: string[], built: Map<string, string>, keyOf: (id: string) => string): { passes: number[]; builds: number } {
  const passes: number[] = [];
  let builds = 0;
  for (let from = 0; from < wanted.length; ) {
    const needs = wanted.slice(from).map(id => built.get(id) !== keyOf(id));
    const n = rowsThisPass(needs, passes.length ? ROWS_PER_FRAME : FIRST_ROWS);
    for (const id of wanted.slice(from, from + n)) {
      if (built.get(id) !== keyOf(id)) {
        built.set(id, keyOf(id));
        builds++;
      }
    }
    passes.push(n);
    from += n;
  }
  return { passes, builds };
}

describe('the panel builds its rows a batch at a time', () => {
  const ids = Array.from({ length: 500 }, (_, i) => `run-${i}`);

  it('paints the first screenful at once and the rest in batches, every row exactly once, in order', () => {
    const built = new Map<string, string>();
    const { passes, builds } = layOut(ids, built, id => id);
    expect(passes[0]).toBe(FIRST_ROWS);
    expect(passes.slice(1, -1).every(n => n === ROWS_PER_FRAME)).toBe(true);
    expect(passes.reduce((a, b) => a + b, 0)).toBe(500);
    expect(builds).toBe(500);
  });

  it('lays out an unchanged listing in one pass, rebuilding only the rows that changed', () => {
    const built = new Map(ids.map(id => [id, id]));
    const changed = new Set(['run-3', 'run-450']);
    const { passes, builds } = layOut(ids, built, id => (changed.has(id) ? `${id}!` : id));
    expect(passes).toEqual([500]);
    expect(builds).toBe(2);
  });

  it('stops before the first row over budget and always makes progress', () => {
    expect(rowsThisPass([false, true, false, true, true], 2)).toBe(4);
    expect(rowsThisPass([true, true], 0)).toBe(1);
    expect(rowsThisPass([], 10)).toBe(0);
  });

  it('rebuilds a row exactly when what it shows changes: state, step, time, or whether it can be ticked', () => {
    const now = new Date('2026-12-03T10:30:00+00:00');
    const base = run({});
    expect(rowKey(run({}), false, now)).toBe(rowKey(base, false, now));
    expect(rowKey(run({ step: 'topomaps' }), false, now)).not.toBe(rowKey(base, false, now));
    expect(rowKey(run({ state: 'succeeded', done: true }), true, now)).not.toBe(rowKey(base, false, now));
    expect(rowKey(base, true, now)).not.toBe(rowKey(base, false, now));
    expect(rowKey(base, false, new Date('2026-12-03T11:30:00+00:00'))).not.toBe(rowKey(base, false, now));
  });

  it('keeps search and filters on the model: a filtered listing is laid out the same way', () => {
    const model = new RunsModel();
    model.update(ids.map((id, i) => run({ run_id: id, state: i % 2 ? 'failed' : 'succeeded', done: true })));
    const failed = model.filter('', 'failed').map(r => r.run_id);
    const { passes } = layOut(failed, new Map(), id => id);
    expect(failed).toHaveLength(250);
    expect(passes[0]).toBe(FIRST_ROWS);
    expect(passes.reduce((a, b) => a + b, 0)).toBe(250);
  });
});
