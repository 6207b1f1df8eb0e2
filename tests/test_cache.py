"""The preprocessing cache: reuse, invalidation on new content, concurrent writers, size bound, CLI."""

from __future__ import annotations

import multiprocessing
import os

import mne
import numpy as np
import pytest
from click.testing import CliRunner

from labkit import IcaParams
from labkit.analysis import ica, recording
from labkit.analysis.cache import Cache, key, slot
from labkit.analysis.datasets import DEMO_FILENAME
from labkit.cli.main import main
from labkit.results.layout import cache_dir


def _params(demo_dir, **kw) -> IcaParams:
    return IcaParams(base_dir=str(demo_dir), raw_file_path=DEMO_FILENAME, n_components=5, crop_tmax=10.0, **kw)


def preprocessed(params: IcaParams, compute) -> mne.io.BaseRaw:
    """What ``ica.run`` does with its slot, without the rest of the run."""
    with slot(params) as s:
        if s.hit:
            return s.raw
        raw = compute(ica.load(params), params)
        s.store(raw, {"warnings": [], "header": {}})
        return raw


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, raw, params, verbose=None):
        self.calls += 1
        return ica.preprocess(raw, params, verbose=verbose)


def test_cached_preprocessing_is_reused_equal_and_invalidated_by_new_content(demo_dir):
    params, count = _params(demo_dir), Counting()
    first = preprocessed(params, count)
    second = preprocessed(params, count)
    assert count.calls == 1
    fresh = ica.preprocess(ica.load(params), params)
    np.testing.assert_array_equal(second.get_data(), fresh.get_data())  # double precision: the same numbers
    np.testing.assert_array_equal(first.get_data(), second.get_data())
    assert second.info["highpass"] == 1.0 and second.first_samp == fresh.first_samp
    # other preprocessing parameters: another entry; other ICA parameters: the same one
    assert key(params.replace(method="picard", random_state=3)) == key(params)
    preprocessed(params.replace(filter_fmax=20.0), count)
    assert count.calls == 2
    # the recording re-exported under the same name: the cached data is not used
    raw = mne.io.read_raw_fif(params.raw_path(), preload=True, verbose="error")
    raw.apply_function(lambda x: x * 2)
    raw.save(params.raw_path(), overwrite=True, verbose="error")
    changed = preprocessed(params, count)
    assert count.calls == 3
    np.testing.assert_allclose(changed.get_data(picks="eeg"), 2 * fresh.get_data(picks="eeg"), rtol=1e-6, atol=1e-12)
    store = Cache(cache_dir(demo_dir))
    assert len(store.entries()) == 3 and not list(store.dir.glob(".tmp-*"))


def test_cache_keeps_its_size_bound_dropping_the_least_recently_used(demo_dir, monkeypatch):
    params = _params(demo_dir)
    store = Cache(cache_dir(demo_dir))
    for fmax in (20.0, 25.0, 30.0):
        p = params.replace(filter_fmax=fmax)
        preprocessed(p, ica.preprocess)
    one = store.path(key(params.replace(filter_fmax=20.0))).stat().st_size
    os.utime(store.path(key(params.replace(filter_fmax=20.0))))  # used most recently
    os.utime(store.path(key(params.replace(filter_fmax=25.0))), (1, 1))
    store.limit = 2 * one + 1
    removed = store.evict()
    assert [p.name for p in removed] == [store.path(key(params.replace(filter_fmax=25.0))).name]
    assert store.size() <= store.limit


def _writer(params: IcaParams, start, out) -> None:
    count = Counting()
    start.wait()
    raw = preprocessed(params, count)
    out.put((count.calls, float(raw.get_data().sum())))


def test_two_writers_at_once_filter_once_and_leave_one_whole_entry(demo_dir):
    params = _params(demo_dir)
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(params, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(calls for calls, _ in got) == [0, 1]  # one filtered, the other waited and read it
    assert got[0][1] == got[1][1]
    store = Cache(cache_dir(demo_dir))
    assert len(store.entries()) == 1 and not list(store.dir.glob(".tmp-*")) and not list(store.dir.glob("*.lock"))
    # and two raw writers of the same entry at once (no lock): each rename is atomic, the entry stays whole
    raw = ica.preprocess(ica.load(params), params)
    ctx2 = [ctx.Process(target=store.put, args=("both", raw)) for _ in range(2)]
    for p in ctx2:
        p.start()
    for p in ctx2:
        p.join(timeout=60)
    np.testing.assert_array_equal(store.get("both")[0].get_data(), raw.get_data())


def test_cache_cli_info_and_clear_and_the_off_switch(demo_dir, monkeypatch):
    params = _params(demo_dir)
    preprocessed(params, ica.preprocess)
    info = CliRunner().invoke(main, ["cache", "info", "--base-dir", str(demo_dir)])
    assert info.exit_code == 0 and "entries: 1" in info.output
    cleared = CliRunner().invoke(main, ["cache", "clear", "--base-dir", str(demo_dir)])
    assert cleared.exit_code == 0 and "removed 1 cache entries" in cleared.output
    assert not cache_dir(demo_dir).exists()
    monkeypatch.setenv("LABKIT_CACHE", "off")
    count = Counting()
    preprocessed(params, count)
    preprocessed(params, count)
    assert count.calls == 2 and not cache_dir(demo_dir).exists()


def test_read_only_directory_runs_uncached(demo_dir):
    params = _params(demo_dir)
    cache_dir(demo_dir).write_text("not a directory")
    count = Counting()
    raw = preprocessed(params, count)
    assert count.calls == 1 and raw.info["lowpass"] == 30.0


@pytest.mark.parametrize("value", ["lots", "1e3x"])
def test_bad_size_setting_names_the_variable(value, monkeypatch):
    from labkit.analysis.cache import max_bytes

    monkeypatch.setenv("LABKIT_CACHE_MAX_BYTES", value)
    with pytest.raises(ValueError, match="LABKIT_CACHE_MAX_BYTES"):
        max_bytes()


def test_a_run_served_from_the_cache_reads_nothing_and_tells_what_the_first_run_told(demo_dir, tmp_path, monkeypatch):
    """A hit skips reading the recording, yet checks the set against the header and repeats its warnings."""
    from labkit.errors import ParameterError

    end = recording.describe(demo_dir / DEMO_FILENAME).end
    params = _params(demo_dir).replace(crop_tmin=end - 30.0, crop_tmax=end + 5.0, method="picard")
    first = ica.run(params, tmp_path / "first")
    reads: list[str] = []
    real_read = recording.read_raw
    monkeypatch.setattr(recording, "read_raw", lambda *a, **k: reads.append(str(a[0])) or real_read(*a, **k))
    second = ica.run(params.replace(random_state=1), tmp_path / "second")
    assert first.metrics["preprocessing"] == "stored" and second.metrics["preprocessing"] == "hit"
    assert reads == []  # neither the recording nor its header was read again
    clamped = [w for w in first.warnings if "clamped" in w]
    assert clamped and [w for w in second.warnings if "clamped" in w] == clamped
    assert second.metrics["outcome"] == "succeeded with warnings"
    np.testing.assert_array_equal(first.raw.get_data(), second.raw.get_data())
    with pytest.raises(ParameterError, match="n_components"):  # the header check holds on a hit too
        ica.run(params.replace(n_components=500), tmp_path / "third")


def test_the_last_entry_stays_in_memory_while_it_is_on_disk(demo_dir, caplog):
    """A warm kernel's next run reads its data from memory, a copy it may change; a cleared cache is read again."""
    params, count = _params(demo_dir), Counting()
    first = preprocessed(params, count)
    with caplog.at_level("INFO", logger="labkit.analysis.cache"):
        second = preprocessed(params.replace(random_state=5), count)
    assert count.calls == 1 and "kept in memory" in caplog.text
    second._data[:] = 0  # the run's own copy: the next run still gets the filtered data
    np.testing.assert_array_equal(preprocessed(params, count).get_data(), first.get_data())
    Cache(cache_dir(demo_dir)).clear()
    preprocessed(params, count)
    assert count.calls == 2  # the disk is the source of truth: nothing served from memory once it is gone


def test_the_store_is_written_beside_the_next_step_and_whole_when_the_slot_ends(demo_dir, monkeypatch):
    """The run's fit need not wait for the write; the lock is held, and the entry complete, once the slot ends."""
    import logging
    import threading
    import time

    params, started, release = _params(demo_dir), threading.Event(), threading.Event()
    put = Cache.put

    def slow_put(self, entry, raw, notes=None):
        started.set()
        assert release.wait(10), "the test never let the write finish"
        put(self, entry, raw, notes)

    monkeypatch.setattr(Cache, "put", slow_put)
    store = Cache(cache_dir(demo_dir))
    with slot(params) as s:
        raw = ica.preprocess(ica.load(params), params)
        s.store(raw, {"warnings": [], "header": {}})
        assert started.wait(10) and s.source == "computed", "store returns while the write goes on"
        assert store._lock(key(params)).exists() and not store.entries()
        threading.Timer(0.3, release.set).start()
        level = logging.getLogger("mne").level
        logging.getLogger("mne").setLevel(logging.CRITICAL)  # what an interleaved MNE call could leave behind
        t0 = time.monotonic()
    assert time.monotonic() - t0 >= 0.25, "the slot's end waited for the write"
    assert logging.getLogger("mne").level == level, "MNE's log level is the run's again"
    assert s.source == "stored" and len(store.entries()) == 1 and not store._lock(key(params)).exists()
