/**
 * The panel's state, kept apart from the DOM so it can be tested alone: the runs as last
 * listed, what changed since, and how each state and time is shown.
 */

export type RunState =
  | 'queued'
  | 'running'
  | 'succeeded'
  | 'succeeded with warnings'
  | 'failed'
  | 'cancelled';

export interface IRun {
  run_id: string;
  state: RunState;
  reason: string;
  backend: string;
  name: string;
  step: string;
  recording: string;
  method: string;
  sweep_id: string;
  created: string;
  warnings: string[];
  where: string;
  done: boolean;
}

export interface IChange {
  run: IRun;
  /** the state it had at the previous listing (undefined: not listed before) */
  before?: RunState;
}

export const FINAL: ReadonlySet<string> = new Set([
  'succeeded',
  'succeeded with warnings',
  'failed',
  'cancelled'
]);

/** The chip a state shows as: its CSS modifier and its words (warnings are said, never hidden). */
export function chip(run: IRun): { css: string; text: string } {
  const css = 'jp-labkit-chip-' + run.state.replace(/ /g, '-');
  if (run.state === 'succeeded' && run.warnings.length) {
    return { css: 'jp-labkit-chip-succeeded-with-warnings', text: 'succeeded with warnings' };
  }
  return { css, text: run.state };
}

/** "12 s ago", "5 min ago", "3 h ago", "2 d ago" from an ISO time (empty when unknown). */
export function relativeTime(iso: string, now: Date = new Date()): string {
  const then = Date.parse(iso);
  if (!iso || Number.isNaN(then)) {
    return '';
  }
  const s = Math.max(0, Math.round((now.getTime() - then) / 1000));
  if (s < 60) {
    return `${s} s ago`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)} min ago`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)} h ago`;
  }
  return `${Math.floor(s / 86400)} d ago`;
}

/** The file name of a recording path (what a researcher recognises). */
export function recordingName(path: string): string {
  const parts = path.split('/').filter(p => p && p !== '.');
  return parts.length ? parts[parts.length - 1] : path;
}

/** Runs as last listed; `update` says which ones are new or changed state. */
export class RunsModel {
  private _runs = new Map<string, IRun>();

  get runs(): IRun[] {
    return [...this._runs.values()];
  }

  get(runId: string): IRun | undefined {
    return this._runs.get(runId);
  }

  /** Take a fresh listing; return the runs that appeared or changed state or step, in listing order. */
  update(listed: IRun[]): IChange[] {
    const changes: IChange[] = [];
    const next = new Map<string, IRun>();
    for (const run of listed) {
      const old = this._runs.get(run.run_id);
      if (!old || old.state !== run.state || old.step !== run.step) {
        changes.push({ run, before: old?.state });
      }
      next.set(run.run_id, run);
    }
    this._runs = next;
    return changes;
  }

  /** The runs a search text and a state filter let through ('' lets all through). */
  filter(text: string, state: string): IRun[] {
    const words = text.toLowerCase().trim();
    return this.runs.filter(
      r =>
        (!state || chip(r).text === state || r.state === state) &&
        (!words ||
          [r.run_id, r.recording, r.method, r.sweep_id, r.state, r.step]
            .join(' ')
            .toLowerCase()
            .includes(words))
    );
  }
}

/**
 * What a run's notification says, or null when there is nothing to tell: a run seen going
 * gets one (in progress); the same one is updated when it ends.
 */
export function notice(change: IChange): { type: 'in-progress' | 'success' | 'warning' | 'error' | 'info'; message: string } | null {
  const { run, before } = change;
  const name = `${recordingName(run.recording) || run.run_id} (${run.method || 'ICA'})`;
  if (!FINAL.has(run.state)) {
    return { type: 'in-progress', message: `ICA run ${name}: ${run.state}${run.step ? `, ${run.step}` : ''}` };
  }
  if (before === undefined || FINAL.has(before)) {
    return null; // found finished: nothing happened while we watched
  }
  const shown = chip(run).text;
  if (shown === 'succeeded') {
    return { type: 'success', message: `ICA run ${name} succeeded` };
  }
  if (shown === 'succeeded with warnings') {
    return { type: 'warning', message: `ICA run ${name} succeeded with warnings: ${run.warnings[0] ?? ''}` };
  }
  if (run.state === 'cancelled') {
    return { type: 'info', message: `ICA run ${name} was cancelled${run.reason ? `: ${run.reason}` : ''}` };
  }
  return { type: 'error', message: `ICA run ${name} failed: ${run.reason || 'see its log'}` };
}

/** A sweep's cell as the server lays it out: one parameter set's newest run. */
export interface ISweepCellLike {
  recording: string;
  method: string;
  seed: number | null;
  run: IRun;
}

/**
 * A sweep's matrix: one table per recording, a row per method, a column per seed; a cell the
 * set's run, or null where the sweep has no such set.
 */
export function sweepTables(
  cells: ISweepCellLike[],
  recordings: string[],
  methods: string[],
  seeds: (number | null)[]
): { recording: string; rows: { method: string; runs: (IRun | null)[] }[] }[] {
  const key = (r: string, m: string, s: number | null) => JSON.stringify([r, m, s]);
  const found = new Map(cells.map(c => [key(c.recording, c.method, c.seed), c.run]));
  return recordings.map(recording => ({
    recording,
    rows: methods.map(method => ({ method, runs: seeds.map(seed => found.get(key(recording, method, seed)) ?? null) }))
  }));
}
