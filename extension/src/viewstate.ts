/**
 * What the compare and sweep views show, computed from the server's answers apart from the DOM so
 * it can be tested alone: the compare view's rows of matched maps, and the sweep view's "Rerun
 * failed" cells and statistics command.
 */
import type { ICompare, ISweep } from './api';
import type { ISweepCellLike } from './model';

/** One map in the compare view: whose, which component, and the words under it. */
export interface IMapCell {
  runId: string;
  component: number;
  text: string;
}

const pad = (n: number): string => String(n).padStart(3, '0');

/**
 * The compare view's rows: a row per component of the reference run, then in each other run the
 * component matched to it with its r, or null where that run has fewer components.
 */
export function compareRows(doc: Pick<ICompare, 'reference' | 'matches'>): { reference: IMapCell; others: (IMapCell | null)[] }[] {
  return doc.matches.map(match => ({
    reference: { runId: doc.reference, component: match.component, text: `ICA${pad(match.component)}` },
    others: match.matched.map(other =>
      other ? { runId: other.run_id, component: other.component, text: `ICA${pad(other.component)} r = ${other.r.toFixed(2)}` } : null
    )
  }));
}

/** The cells "Rerun failed" starts again: exactly those whose run ended failed or cancelled. */
export const failedCells = <T extends ISweepCellLike>(cells: T[]): T[] =>
  cells.filter(c => c.run.state === 'failed' || c.run.state === 'cancelled');

/** The `labkit compare` command of a sweep's statistics, offered only once every cell has ended. */
export const statsCommand = (doc: Pick<ISweep, 'complete' | 'compare_command'>): string | null =>
  doc.complete && doc.compare_command ? doc.compare_command : null;
