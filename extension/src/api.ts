/**
 * Requests to the labkit server extension, through JupyterLab's own connection settings (the
 * base URL under JupyterHub, the token and the XSRF header), never a hand-built URL.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IRun } from './model';

/** A refusal from the server: its message, and the field it names when a value was wrong. */
export class LabkitError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly field?: string
  ) {
    super(message);
  }
}

const settings = (): ServerConnection.ISettings => ServerConnection.makeSettings();

/** The URL of a labkit route (for images and the report: the browser sends the session's cookie). */
export function labkitUrl(...parts: string[]): string {
  return URLExt.join(settings().baseUrl, 'labkit', ...parts.map(encodeURIComponent));
}

export async function requestAPI<T>(path: string, init: RequestInit = {}, query: Record<string, string> = {}): Promise<T> {
  const s = settings();
  const search = new URLSearchParams(query).toString();
  const url = URLExt.join(s.baseUrl, 'labkit', path) + (search ? `?${search}` : '');
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, s);
  } catch (error) {
    throw new LabkitError(`The Jupyter server cannot be reached: ${error}`, 0);
  }
  const text = await response.text();
  const isJson = (response.headers.get('Content-Type') ?? '').startsWith('application/json');
  const body = isJson && text ? JSON.parse(text) : text;
  if (response.status === 404 && !isJson) {
    throw new LabkitError(
      'The labkit server extension is not enabled on this Jupyter server (pip install labkit, then restart the server)',
      404
    );
  }
  if (!response.ok) {
    throw new LabkitError(body?.message ?? `${response.status} ${text}`, response.status, body?.field);
  }
  return body as T;
}

export interface IPage {
  runs: IRun[];
  total: number;
  page: number;
  per_page: number;
  pages: number;
}

export interface IComponent {
  component: number;
  name: string;
  label: string;
  probability: number | null;
  suspect: string;
  excluded: boolean;
}

export interface IRunDetail {
  run: IRun;
  params: Record<string, unknown> | null;
  metrics: Record<string, unknown>;
  components: IComponent[];
  scores?: { columns: string[]; rows: { component: number; name: string; values: (number | null)[] }[] };
  figures: string[];
  files: string[];
  folder?: string;
  report: string | null;
  notebook: string | null;
}

export interface IProblem {
  field: string;
  value: unknown;
  allowed: string;
  message: string;
}

export interface IHeader {
  path: string;
  sfreq: number;
  nyquist: number;
  duration: number;
  last_time: number;
  channel_counts: Record<string, number>;
}

export const listRuns = (query: Record<string, string> = {}): Promise<IPage> =>
  requestAPI<IPage>('runs', {}, { per_page: '500', ...query });
export const runDetail = (runId: string): Promise<IRunDetail> => requestAPI<IRunDetail>(`runs/${encodeURIComponent(runId)}`);
export const runLog = (runId: string, tail = 200): Promise<string> =>
  requestAPI<string>(`runs/${encodeURIComponent(runId)}/log`, {}, { tail: String(tail) });
/**
 * Follow a going run's log: its last ``tail`` lines, then each line as the run writes it, each piece to
 * ``onText``. Resolves when the server ends the stream, which it does when the run has ended.
 */
export async function followLog(
  runId: string,
  onText: (text: string) => void,
  signal: AbortSignal,
  tail = 200
): Promise<void> {
  const s = settings();
  const query = new URLSearchParams({ tail: String(tail), follow: '1' }).toString();
  const url = `${URLExt.join(s.baseUrl, 'labkit', 'runs', encodeURIComponent(runId), 'log')}?${query}`;
  const response = await ServerConnection.makeRequest(url, { signal }, s);
  if (!response.ok || !response.body) {
    throw new LabkitError(`${response.status} ${await response.text()}`, response.status);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      break;
    }
    onText(decoder.decode(value, { stream: true }));
  }
  onText(decoder.decode());
}
export const post = <T>(path: string, body: unknown = {}): Promise<T> =>
  requestAPI<T>(path, { method: 'POST', body: JSON.stringify(body) });
export const saveComponents = (runId: string, exclude: number[]): Promise<{ components: IComponent[] }> =>
  requestAPI(`runs/${encodeURIComponent(runId)}/components`, { method: 'PUT', body: JSON.stringify({ exclude }) });
export const header = (path: string): Promise<IHeader> => requestAPI<IHeader>('recording', {}, { path });
export const schema = (): Promise<{ properties: Record<string, any> }> => requestAPI('schema');
export const validate = (params: Record<string, unknown>): Promise<{ ok: boolean; problems: IProblem[] }> =>
  post('validate', { params });
export const info = (): Promise<{ base_dir: string; backends: string[]; extensions: string[] }> => requestAPI('info');

/** A notebook whose one cell opens the notebook form on a run's parameters (where to write it, and its code). */
export const formCell = (runId: string): Promise<{ path: string; source: string }> =>
  requestAPI(`runs/${encodeURIComponent(runId)}/form`);

export interface IMatch {
  component: number;
  matched: ({ run_id: string; component: number; r: number } | null)[];
}

export interface ICompare {
  runs: IRun[];
  reference: string;
  matches: IMatch[];
  metrics: { key: string; values: unknown[] }[];
}

/** Two or more runs side by side: the first run's components matched in each other run by correlation. */
export const compareRuns = (runIds: string[]): Promise<ICompare> => requestAPI('compare', {}, { runs: runIds.join(',') });

export interface ISweepCell {
  recording: string;
  method: string;
  seed: number | null;
  run: IRun;
}

export interface ISweep {
  sweep_id: string;
  recordings: string[];
  methods: string[];
  seeds: (number | null)[];
  cells: ISweepCell[];
  counts: Record<string, number>;
  complete: boolean;
  compare_command: string | null;
}

export const sweep = (sweepId: string): Promise<ISweep> => requestAPI(`sweeps/${encodeURIComponent(sweepId)}`);
export const rerunFailed = (sweepId: string): Promise<{ runs: IRun[] }> =>
  post(`sweeps/${encodeURIComponent(sweepId)}/rerun-failed`);
