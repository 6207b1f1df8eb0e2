/**
 * labkit in JupyterLab: the ICA runs panel, the run view, "Run ICA on this recording…" in the
 * file browser, a launcher card and palette entry, and one notification per run updated in place.
 */
import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, IFrame, MainAreaWidget, Notification, WidgetTracker } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { LabIcon } from '@jupyterlab/ui-components';

import { info, labkitUrl } from './api';
import { runDialog } from './dialog';
import { IChange, IRun, notice } from './model';
import { RunsPanel } from './panel';
import { RunView } from './runview';

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" d="M2 13h3l2-6 3 12 3-9 2 5h7v2h-8.4L13 14.5 10 23 7 12.5 6.4 15H2z"/></svg>';
const icon = new LabIcon({ name: 'labkit:ica', svgstr: ICON_SVG });

const CMD = { open: 'labkit:open-run', runFile: 'labkit:run-on-file', newRun: 'labkit:new-run', report: 'labkit:open-report' };

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
        reveal: detail => void app.commands.execute('filebrowser:go-to-path', { path: detail.folder ?? '' })
      });
      const widget = new MainAreaWidget({ content: view });
      widget.title.icon = icon;
      void tracker.add(widget);
      shell.add(widget, 'main');
      shell.activateById(widget.id);
    };

    const panel = new RunsPanel((run: IRun) => openRun(run.run_id));
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

    app.commands.addCommand(CMD.open, {
      label: 'Open ICA run',
      execute: args => openRun(String(args.runId))
    });
    app.commands.addCommand(CMD.report, {
      label: 'Open ICA report',
      execute: args => {
        const frame = new IFrame({ sandbox: ['allow-scripts'] });
        frame.url = labkitUrl('runs', String(args.runId), 'files', 'report.html');
        const widget = new MainAreaWidget({ content: frame });
        widget.id = `labkit-report-${args.runId}`;
        widget.title.label = `Report ${args.runId}`;
        widget.title.closable = true;
        widget.title.icon = icon;
        shell.add(widget, 'main');
        shell.activateById(widget.id);
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
    app.contextMenu.addItem({ command: CMD.runFile, selector: '.jp-DirListing-item[data-isdir]', rank: 3 });
    launcher?.add({ command: CMD.newRun, category: 'Other', rank: 1 });
    palette?.addItem({ command: CMD.newRun, category: 'labkit' });
  }
};

export default plugin;
