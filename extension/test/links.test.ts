import { LINK_COMMANDS, linkCommand } from '../src/links';

/** A stand-in for a clicked element inside an anchor with these attributes (null: not inside a labkit link). */
const inside = (attributes: Record<string, string> | null) => ({
  closest: (selector: string) => {
    expect(selector).toBe('a[data-labkit-command]');
    return attributes && 'data-labkit-command' in attributes ? { getAttribute: (name: string) => attributes[name] ?? null } : null;
  }
});

describe('links from the notebook form', () => {
  it('run the report and executed-notebook commands with the run id', () => {
    expect(linkCommand(inside({ 'data-labkit-command': 'labkit:open-report', 'data-labkit-run-id': 'abc-1' }))).toEqual({
      command: 'labkit:open-report',
      args: { runId: 'abc-1' }
    });
    expect(
      linkCommand(inside({ 'data-labkit-command': 'labkit:open-executed-notebook', 'data-labkit-run-id': ' abc-2 ' }))
    ).toEqual({ command: 'labkit:open-executed-notebook', args: { runId: 'abc-2' } });
  });

  it('never run another command named in page content', () => {
    for (const command of ['labkit:run-in-terminal', 'terminal:create-new', 'docmanager:delete', 'labkit:open-report ', '']) {
      expect(linkCommand(inside({ 'data-labkit-command': command, 'data-labkit-run-id': 'abc-1' }))).toBeNull();
    }
    expect([...LINK_COMMANDS].sort()).toEqual(['labkit:open-executed-notebook', 'labkit:open-report']);
  });

  it('leave other links, and labkit links without a run id, to the browser', () => {
    expect(linkCommand(inside(null))).toBeNull();
    expect(linkCommand(null)).toBeNull();
    expect(linkCommand(inside({ 'data-labkit-command': 'labkit:open-report' }))).toBeNull();
    expect(linkCommand(inside({ 'data-labkit-command': 'labkit:open-report', 'data-labkit-run-id': '  ' }))).toBeNull();
  });
});
