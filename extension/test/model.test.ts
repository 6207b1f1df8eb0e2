import { chip, IRun, notice, recordingName, relativeTime, RunsModel, sweepTables } from '../src/model';
import { run } from './fixtures';

describe('RunsModel', () => {
  it('reports new runs and state or step changes, nothing for an unchanged listing', () => {
    const model = new RunsModel();
    expect(model.update([run({})]).map(c => c.before)).toEqual([undefined]);
    expect(model.update([run({})])).toEqual([]);
    const [change] = model.update([run({ step: 'topomaps' })]);
    expect(change.before).toBe('running');
    const [done] = model.update([run({ state: 'succeeded', done: true, step: '' })]);
    expect(done.before).toBe('running');
    expect(model.runs).toHaveLength(1);
  });

  it('forgets runs that are no longer listed', () => {
    const model = new RunsModel();
    model.update([run({}), run({ run_id: 'r2' })]);
    model.update([run({ run_id: 'r2' })]);
    expect(model.get('r1')).toBeUndefined();
  });

  it('filters by search text and by the state shown, warnings included', () => {
    const model = new RunsModel();
    model.update([
      run({}),
      run({ run_id: 'r2', state: 'succeeded', warnings: ['did not converge'], recording: 'other.edf' }),
      run({ run_id: 'r3', state: 'failed', method: 'fastica' })
    ]);
    expect(model.filter('OTHER', '').map(r => r.run_id)).toEqual(['r2']);
    expect(model.filter('', 'succeeded with warnings').map(r => r.run_id)).toEqual(['r2']);
    expect(model.filter('fastica', 'failed').map(r => r.run_id)).toEqual(['r3']);
  });
});

describe('how runs are shown', () => {
  it('says succeeded with warnings, never a plain succeeded, when the run warned', () => {
    expect(chip(run({ state: 'succeeded', warnings: ['clamped crop'] })).text).toBe('succeeded with warnings');
    expect(chip(run({ state: 'cancelled' })).css).toBe('jp-labkit-chip-cancelled');
  });

  it('gives relative times and recording names', () => {
    const now = new Date('2026-12-03T10:05:00+00:00');
    expect(relativeTime('2026-12-03T10:04:30+00:00', now)).toBe('30 s ago');
    expect(relativeTime('2026-12-03T10:00:00+00:00', now)).toBe('5 min ago');
    expect(relativeTime('', now)).toBe('');
    expect(recordingName('./sub-01/eeg/x.vhdr')).toBe('x.vhdr');
  });
});

describe('notifications', () => {
  it('tell a run seen going, then update it to its outcome with the reason', () => {
    expect(notice({ run: run({}) })?.type).toBe('in-progress');
    const failed = notice({ run: run({ state: 'failed', done: true, reason: 'no EEG channels' }), before: 'running' });
    expect(failed).toEqual({ type: 'error', message: 'ICA run demo_raw.fif (picard) failed: no EEG channels' });
    expect(notice({ run: run({ state: 'succeeded', done: true, warnings: ['not converged'] }), before: 'running' })?.type).toBe(
      'warning'
    );
  });

  it('say nothing of a run found already finished', () => {
    expect(notice({ run: run({ state: 'succeeded', done: true }) })).toBeNull();
    expect(notice({ run: run({ state: 'failed', done: true }), before: 'failed' })).toBeNull();
  });
});

describe('the sweep matrix', () => {
  const cell = (recording: string, method: string, seed: number | null, state: IRun['state']) => ({
    recording,
    method,
    seed,
    run: run({ run_id: `${recording}-${method}-${seed}`, state, done: state !== 'running' })
  });

  it('lays the cells out per recording, a row per method and a column per seed, gaps as null', () => {
    const cells = [cell('a.fif', 'picard', 1, 'succeeded'), cell('a.fif', 'fastica', 2, 'running'), cell('b.fif', 'picard', 2, 'failed')];
    const tables = sweepTables(cells, ['a.fif', 'b.fif'], ['fastica', 'picard'], [1, 2]);
    expect(tables.map(t => t.recording)).toEqual(['a.fif', 'b.fif']);
    expect(tables[0].rows.map(r => r.runs.map(x => x?.state ?? null))).toEqual([
      [null, 'running'],
      ['succeeded', null]
    ]);
    expect(tables[1].rows[1].runs[1]?.run_id).toBe('b.fif-picard-2');
  });

  it('tells a random seed (null) apart from seed 0', () => {
    const tables = sweepTables([cell('a.fif', 'picard', null, 'succeeded')], ['a.fif'], ['picard'], [0, null]);
    expect(tables[0].rows[0].runs.map(x => x?.state ?? null)).toEqual([null, 'succeeded']);
  });
});
