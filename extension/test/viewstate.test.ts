import { sweepTables } from '../src/model';
import { compareRows, failedCells, statsCommand } from '../src/viewstate';
import { run } from './fixtures';

const cell = (recording: string, method: string, seed: number | null, state: Parameters<typeof run>[0]['state']) => ({
  recording,
  method,
  seed,
  run: run({ run_id: `${recording}-${method}-${seed}`, state, done: state !== 'running' && state !== 'queued' })
});

describe('the compare view', () => {
  it('has a row per reference component with each other run\'s match and its r, gaps said', () => {
    const rows = compareRows({
      reference: 'a',
      matches: [
        { component: 0, matched: [{ run_id: 'b', component: 3, r: -0.987 }, null] },
        { component: 12, matched: [{ run_id: 'b', component: 0, r: 0.5 }, { run_id: 'c', component: 1, r: 0.25 }] }
      ]
    });
    expect(rows.map(r => r.reference)).toEqual([
      { runId: 'a', component: 0, text: 'ICA000' },
      { runId: 'a', component: 12, text: 'ICA012' }
    ]);
    expect(rows[0].others).toEqual([{ runId: 'b', component: 3, text: 'ICA003 r = -0.99' }, null]);
    expect(rows[1].others.map(o => o?.runId)).toEqual(['b', 'c']);
  });
});

describe('the sweep view', () => {
  const cells = [
    cell('a.fif', 'picard', 1, 'succeeded'),
    cell('a.fif', 'picard', 2, 'failed'),
    cell('a.fif', 'fastica', 1, 'cancelled'),
    cell('b.fif', 'fastica', 2, 'running'),
    cell('b.fif', 'picard', null, 'succeeded with warnings')
  ];

  it('fills the matrix from the runs, each cell its own run', () => {
    const tables = sweepTables(cells, ['a.fif', 'b.fif'], ['picard', 'fastica'], [1, 2, null]);
    expect(tables[0].rows.map(r => r.runs.map(x => x?.state ?? null))).toEqual([
      ['succeeded', 'failed', null],
      ['cancelled', null, null]
    ]);
    expect(tables[1].rows.map(r => r.runs.map(x => x?.run_id ?? null))).toEqual([
      [null, null, 'b.fif-picard-null'],
      [null, 'b.fif-fastica-2', null]
    ]);
  });

  it('reruns exactly the failed and cancelled cells', () => {
    expect(failedCells(cells).map(c => c.run.run_id)).toEqual(['a.fif-picard-2', 'a.fif-fastica-1']);
    expect(failedCells(cells.filter(c => !['failed', 'cancelled'].includes(c.run.state)))).toEqual([]);
  });

  it('shows the compare command only once the sweep is complete', () => {
    const command = 'labkit compare --base-dir /b --sweep s';
    expect(statsCommand({ complete: true, compare_command: command })).toBe(command);
    expect(statsCommand({ complete: false, compare_command: command })).toBeNull();
    expect(statsCommand({ complete: true, compare_command: null })).toBeNull();
  });
});
