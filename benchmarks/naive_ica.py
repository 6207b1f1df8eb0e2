"""The naive baseline: a hand-written MNE script with library defaults (no thread pinning).

Produces what a labkit run produces: the fitted ICA, topomaps, sources and suspect
properties as PNG, ICLabel labels (on an average-referenced 1-100 Hz copy, as mne-icalabel's
tutorial does) and an HTML mne.Report of them. Run as a fresh process by ``bench_run.py`` and
``bench_long.py``; the last stdout line is JSON with per-step timings and ICA iterations.

    python benchmarks/naive_ica.py RAW.fif METHOD OUT_DIR [N_COMPONENTS [CROP_TMAX|none]]
"""

import json
import sys
import time

T0 = time.perf_counter()
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mne  # noqa: E402

steps = {"import_s": time.perf_counter() - T0}
raw_path, method, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
n_components = int(sys.argv[4]) if len(sys.argv) > 4 else 20
crop_tmax = None if len(sys.argv) > 5 and sys.argv[5] == "none" else float(sys.argv[5]) if len(sys.argv) > 5 else 60.0


def lap(name, t):
    steps[name] = time.perf_counter() - t
    return time.perf_counter()


t = time.perf_counter()
raw = mne.io.read_raw_fif(raw_path, verbose="warning")
raw.crop(tmin=0.0, tmax=crop_tmax)
raw.load_data(verbose="warning")
unfiltered = raw.copy()  # ICLabel wants its own band and reference
t = lap("load_s", t)
raw.filter(1.0, 30.0, picks=["eeg", "eog", "ecg"], verbose="warning")
t = lap("filter_s", t)
ica = mne.preprocessing.ICA(n_components=n_components, method=method, random_state=97, verbose="warning")
ica.fit(raw, picks="eeg", verbose="warning")
t = lap("fit_s", t)
eog_idx, _ = ica.find_bads_eog(raw, verbose="warning")
ecg_idx, _ = ica.find_bads_ecg(raw, method="correlation", threshold="auto", verbose="warning")
ica.exclude = sorted(set(eog_idx) | set(ecg_idx))
t = lap("score_s", t)
from mne_icalabel import label_components  # noqa: E402

unfiltered.pick("eeg").filter(1.0, 100.0, verbose="warning").set_eeg_reference("average", verbose="warning")
labels = label_components(unfiltered, ica, method="iclabel")
del unfiltered
t = lap("label_s", t)
ica.save(f"{out_dir}/naive-ica.fif", overwrite=True, verbose="warning")
t = lap("save_s", t)
images = []
for fig_or_figs, name in ((ica.plot_components(show=False), "topomaps"),
                          (ica.plot_sources(raw, show=False, start=0, stop=10), "sources")):
    figs = fig_or_figs if isinstance(fig_or_figs, list) else [fig_or_figs]
    for i, fig in enumerate(figs):
        path = f"{out_dir}/{name}{'' if len(figs) == 1 else f'_{i + 1:02d}'}.png"
        fig.savefig(path)
        plt.close(fig)
        images.append(path)
if ica.exclude:  # one call for all flagged components: the idiom in MNE's tutorials
    for idx, fig in zip(ica.exclude, ica.plot_properties(raw, picks=ica.exclude, show=False), strict=True):
        path = f"{out_dir}/properties_{idx:03d}.png"
        fig.savefig(path)
        plt.close(fig)
        images.append(path)
t = lap("plot_s", t)
report = mne.Report(title=f"ICA {method}")
for path in images:
    report.add_image(path, title=path.rsplit("/", 1)[-1])
report.save(f"{out_dir}/report.html", open_browser=False, overwrite=True, verbose="warning")
t = lap("report_s", t)
print(json.dumps({"steps_s": steps, "labels": list(labels["labels"]), "n_iter": int(ica.n_iter_), "max_iter": ica.max_iter,
                  "exclude": [int(i) for i in ica.exclude], "total_in_script_s": time.perf_counter() - T0}))
