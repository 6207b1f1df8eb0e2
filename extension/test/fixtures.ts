import { IRun } from '../src/model';

/** A run as the server lists it, with the fields a test sets. */
export const run = (over: Partial<IRun>): IRun => ({
  run_id: 'r1',
  state: 'running',
  reason: '',
  backend: 'machine',
  name: 'r1',
  step: 'fit',
  recording: 'sub-01/demo_raw.fif',
  method: 'picard',
  sweep_id: '',
  created: '2026-12-03T10:00:00+00:00',
  warnings: [],
  where: '',
  done: false,
  ...over
});
