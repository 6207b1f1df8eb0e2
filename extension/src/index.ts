/**
 * labkit in JupyterLab: the ICA runs panel, the run view, "Run ICA on this recording…" in the
 * file browser, a launcher card and palette entry, and one notification per run updated in place.
 */
import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, IFrame, MainAreaWidget, Notification, WidgetTracker } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { formCell, info, labkitUrl, runDetail } from './api';
import { runDialog } from './dialog';
import { linkCommand } from './links';
import { IChange, IRun, notice } from './model';
import { RunsPanel } from './panel';
import { RunView } from './runview';
import { CompareView } from './compare';
import { SweepView } from './sweep';

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" d="M2 13h3l2-6 3 12 3-9 2 5h7v2h-8.4L13 14.5 10 23 7 12.5 6.4 15H2z"/></svg>';
const icon = new LabIcon({ name: 'labkit:ica', svgstr: ICON_SVG });

const CMD = {
  open: 'labkit:open-run',
  runFile: 'labkit:run-on-file',
  newRun: 'labkit:new-run',
  report: 'labkit:open-report',
  notebook: 'labkit:open-executed-notebook',
  form: 'labkit:open-in-form',
  compare: 'labkit:compare-runs',
  sweep: 'labkit:open-sweep',
  terminal: 'labkit:run-in-terminal'
};

/** What of a document widget opening the executed notebook read-only needs. */
interface IOpenedDocument {
  context: { ready: Promise<void>; model: { readOnly: boolean }; sessionContext: { kernelPreference: object } };
  title: { label: string; className: string; caption: string };
  addClass(name: string): void;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'labkit-extension:plugin',
  description: 'ICA runs in JupyterLab: panel, run view, notifications and file-browser actions',
  autoStart: true,
  requires: [ILabShell],
  optional: [IDefaultFileBrowser, ILauncher, ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    browser: IDefaultFileBrowser | null,
    launcher: ILauncher | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const tracker = new WidgetTracker<MainAreaWidget<RunView>>({ namespace: 'labkit-runs' });
    let extensions: string[] = [];
    info().then(i => (extensions = i.extensions), () => undefined);

    const openRun = (runId: string) => {
      const open = tracker.find(w => w.content.runId === runId);
      if (open) {
        shell.activateById(open.id);
        return;
      }
      const view = new RunView(runId, {
        openReport: detail => void app.commands.execute(CMD.report, { runId: detail.run.run_id }),
        reveal: detail => void app.commands.execute('filebrowser:go-to-path', { path: detail.folder ?? '' }),
        openNotebook: detail => void app.commands.execute(CMD.notebook, { path: detail.notebook ?? '' }),
        openForm: detail => void app.commands.execute(CMD.form, { runId: detail.run.run_id })
      });
      const widget = new MainAreaWidget({ content: view });
      widget.title.icon = icon;
      void tracker.add(widget);
      shell.add(widget, 'main');
      shell.activateById(widget.id);
    };

    const openMain = (id: string, make: () => Widget) => {
      const open = [...shell.widgets('main')].find(w => w.id === id);
      if (open) {
        shell.activateById(id);
        return;
      }
      const widget = new MainAreaWidget({ content: make() });
      widget.id = id;
      widget.title.icon = icon;
      shell.add(widget, 'main');
      shell.activateById(id);
    };
    const openCompare = (runIds: string[]) => openMain(`labkit-compare-${runIds.join('-')}`, () => new CompareView(runIds));
    const openSweep = (sweepId: string) =>
      openMain(
        `labkit-sweep-${sweepId}`,
        () =>
          new SweepView(sweepId, {
            openRun,
            runInTerminal: command => void app.commands.execute(CMD.terminal, { command })
          })
      );
    const panel = new RunsPanel((run: IRun) => openRun(run.run_id), { compare: openCompare, sweep: openSweep }, app.restored);
    panel.title.icon = icon;
    shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, 'labkit-runs');

    // one notification per run seen going, updated in place when it ends
    const notified = new Map<string, string>();
    panel.changed.connect((_, changes: IChange[]) => {
      for (const change of changes) {
        const said = notice(change);
        if (!said) {
          continue;
        }
        const runId = change.run.run_id;
        const actions = [{ label: 'Open run', callback: () => openRun(runId) }];
        const id = notified.get(runId);
        if (id === undefined) {
          notified.set(runId, Notification.emit(said.message, said.type, { autoClose: said.type === 'in-progress' ? false : 8000, actions }));
        } else {
          Notification.update({ id, message: said.message, type: said.type, autoClose: said.type === 'in-progress' ? false : 8000, actions });
        }
      }
    });

    app.commands.addCommand(CMD.compare, {
      label: 'Compare ICA runs',
      execute: args => openCompare((args.runIds as string[]) ?? [...panel.selected])
    });
    app.commands.addCommand(CMD.sweep, {
      label: 'Open ICA sweep',
      execute: args => openSweep(String(args.sweepId))
    });
    app.commands.addCommand(CMD.terminal, {
      label: 'Run a labkit command in a terminal',
      execute: async args => {
        const terminal = (await app.commands.execute('terminal:create-new')) as {
          content: { session: { send(message: { type: string; content: string[] }): void } };
        };
        terminal.content.session.send({ type: 'stdin', content: [`${String(args.command)}\n`] });
      }
    });
    app.commands.addCommand(CMD.open, {
      label: 'Open ICA run',
      execute: args => openRun(String(args.runId))
    });
    app.commands.addCommand(CMD.report, {
      label: 'Open ICA report',
      execute: args => {
        const id = `labkit-report-${args.runId}`;
        if ([...shell.widgets('main')].some(w => w.id === id)) {
          shell.activateById(id); // one tab per report
          return;
        }
        const frame = new IFrame({ sandbox: ['allow-scripts'] });
        frame.url = labkitUrl('runs', String(args.runId), 'files', 'report.html');
        const widget = new MainAreaWidget({ content: frame });
        widget.id = id;
        widget.title.label = `Report ${args.runId}`;
        widget.title.closable = true;
        widget.title.icon = icon;
        shell.add(widget, 'main');
        shell.activateById(widget.id);
      }
    });
    app.commands.addCommand(CMD.notebook, {
      label: 'Open the executed notebook (read-only)',
      execute: async args => {
        // by its path, or by the run's id (the server knows where its notebook is)
        const path = args.path ? String(args.path) : (await runDetail(String(args.runId))).notebook;
        if (!path) {
          Notification.warning(`Run ${args.runId} has no executed notebook yet.`, { autoClose: 8000 });
          return;
        }
        const open = [...shell.widgets('main')].find(
          w => w.hasClass('jp-labkit-readonly') && (w as unknown as { context?: { path: string } }).context?.path === path
        );
        if (open) {
          shell.activateById(open.id); // already open read-only: brought to the front
          return;
        }
        const widget = (await app.commands.execute('docmanager:open', { path, factory: 'Notebook' })) as IOpenedDocument;
        // a record of what ran: no kernel is started for it, and it cannot be edited
        widget.context.sessionContext.kernelPreference = { shouldStart: false, canStart: false, autoStartDefault: false };
        await widget.context.ready;
        widget.context.model.readOnly = true;
        // said on its tab by a class: a document's tab label is its file name, and changing it renames the file
        widget.title.className = `${widget.title.className} jp-labkit-readonly-tab`;
        widget.title.caption = `${path} (read-only: the record of what this run executed)`;
        widget.addClass('jp-labkit-readonly');
      }
    });
    app.commands.addCommand(CMD.form, {
      label: 'Open the ICA run in the notebook form',
      execute: async args => {
        const { path, source } = await formCell(String(args.runId));
        const contents = app.serviceManager.contents;
        const exists = await contents.get(path, { content: false }).then(
          () => true,
          () => false
        );
        if (!exists) {
          const cell = { cell_type: 'code', source, metadata: {}, outputs: [], execution_count: null };
          const content = { cells: [cell], metadata: {}, nbformat: 4, nbformat_minor: 5 };
          await contents.save(path, { type: 'notebook', format: 'json', content });
        }
        const kernel = app.serviceManager.kernelspecs.specs?.default; // the form runs in the server's default kernel
        return app.commands.execute('docmanager:open', { path, factory: 'Notebook', kernel: kernel ? { name: kernel } : undefined });
      }
    });

    const selectedRecording = (): string | null => {
      const item = browser?.selectedItems().next();
      const model = item && !item.done ? item.value : null;
      if (!model) {
        return null;
      }
      const lower = model.name.toLowerCase();
      return extensions.some(ext => lower.endsWith(ext)) && !lower.startsWith('components-') ? model.path : null;
    };
    const startOn = async (path: string) => {
      const run = await runDialog(path);
      if (run) {
        await panel.refresh();
        openRun(run.run_id);
      }
    };
    app.commands.addCommand(CMD.runFile, {
      label: 'Run ICA on this recording…',
      icon,
      isVisible: () => selectedRecording() !== null,
      execute: () => {
        const path = selectedRecording();
        if (path) {
          return startOn(path);
        }
      }
    });
    app.commands.addCommand(CMD.newRun, {
      label: 'New ICA run',
      caption: 'Choose a recording in the file browser, then start an ICA run on it',
      icon,
      execute: () => {
        const path = selectedRecording();
        if (path) {
          return startOn(path);
        }
        Notification.info('Select a recording in the file browser first (any format MNE reads), then choose "New ICA run" again.', { autoClose: 8000 });
      }
    });
    // links from the notebook form (report, executed notebook) open here, not in a new browser tab
    document.addEventListener(
      'click',
      event => {
        const asked = linkCommand(event.target instanceof Element ? event.target : null);
        if (asked && !event.defaultPrevented) {
          event.preventDefault();
          event.stopPropagation();
          app.commands
            .execute(asked.command, asked.args)
            .catch(error => Notification.error(`Could not open it: ${error instanceof Error ? error.message : error}`, { autoClose: 8000 }));
        }
      },
      true
    );
    app.contextMenu.addItem({ command: CMD.runFile, selector: '.jp-DirListing-item[data-isdir]', rank: 3 });
    launcher?.add({ command: CMD.newRun, category: 'Other', rank: 1 });
    palette?.addItem({ command: CMD.newRun, category: 'labkit' });
  }
};

export default plugin;
