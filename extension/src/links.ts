/**
 * Links in notebook outputs that open labkit's views inside this JupyterLab: the notebook form
 * renders its report and executed-notebook links as anchors naming a labkit command and a run id,
 * e.g. `<a href="…" data-labkit-command="labkit:open-report" data-labkit-run-id="…">`; a click
 * on one runs that command here instead of following the link. Only the commands listed here
 * may be run this way, never another command id found in page content.
 */

export const LINK_COMMANDS: ReadonlySet<string> = new Set(['labkit:open-report', 'labkit:open-executed-notebook']);

/** The part of an element a link is read from (a DOM element, or a stand-in in tests). */
export interface ILinkLike {
  closest(selector: string): { getAttribute(name: string): string | null } | null;
}

/** The command and arguments a click on `target` asks for, or null when it is not such a link (or names another command). */
export function linkCommand(target: ILinkLike | null): { command: string; args: { runId: string } } | null {
  const anchor = target?.closest('a[data-labkit-command]');
  if (!anchor) {
    return null;
  }
  const command = anchor.getAttribute('data-labkit-command') ?? '';
  const runId = (anchor.getAttribute('data-labkit-run-id') ?? '').trim();
  if (!LINK_COMMANDS.has(command) || !runId) {
    return null;
  }
  return { command, args: { runId } };
}
