/**
 * How the runs panel lays out its rows without building hundreds at once: rows already built are
 * reused while what they show is unchanged, and rows still to build are made a batch at a time
 * (the first screenful at once, the rest a batch per animation frame), so the panel paints its
 * first rows right after the server's answer however many runs there are.
 */
import { chip, IRun, recordingName, relativeTime } from './model';

/** rows built before the first paint: more than a tall screen shows */
export const FIRST_ROWS = 40;
/** rows built per animation frame after the first paint */
export const ROWS_PER_FRAME = 100;

/** What a run's row shows, as one string: a row is rebuilt exactly when this changes. */
export function rowKey(run: IRun, selectable: boolean, now: Date = new Date()): string {
  const c = chip(run);
  return JSON.stringify([
    c.css,
    c.text,
    recordingName(run.recording) || run.run_id,
    run.recording,
    run.method,
    run.done ? '' : run.step,
    relativeTime(run.created, now),
    run.backend,
    run.reason,
    run.sweep_id,
    selectable
  ]);
}

/**
 * How many of the wanted rows (in order) to lay out in this pass: every row whose built node is
 * current costs nothing, a row to build costs one of `budget`; the pass stops before the first row
 * over budget so the rows stay in order. Always at least one row when there is any (progress).
 */
export function rowsThisPass(needsBuild: boolean[], budget: number): number {
  let built = 0;
  for (let i = 0; i < needsBuild.length; i++) {
    if (needsBuild[i]) {
      if (built >= budget && i > 0) {
        return i;
      }
      built++;
    }
  }
  return needsBuild.length;
}
