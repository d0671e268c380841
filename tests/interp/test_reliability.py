"""Crash safety and refusal of bad states: random SIGKILLs, a full disk, two writers, stale locks."""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import xxhash

from helpers import extract_config, shard_digests
from interp.cache import open_cache
from interp.cache.lock import CacheLock
from interp.errors import CacheLockedError
from interp.extract import extract

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ["blocks.*.hook_resid_post", "blocks.0.mlp.hook_post"]


def _cfg(out, model_dir, data, **kw):
    return extract_config(out, model_dir, data, **{"tokens": 8192, "hooks": HOOKS, "max_pending": 1, **kw})


def _listed_shards_complete(folder: Path) -> int:
    """Number of listed shards; asserts that every file of every listed shard matches its xxh3_128."""
    try:
        doc = json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError:
        return 0
    for shard in doc["shards"]:
        for name, rec in shard["files"].items():
            data = (folder / name).read_bytes()
            assert len(data) == rec["bytes"] and xxhash.xxh3_128(data).hexdigest() == rec["xxh3_128"], name
    return doc["n_shards"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_neox_dir, text_file):
    out = tmp_path_factory.mktemp("ref") / "ref"
    extract(_cfg(out, tiny_neox_dir, text_file, tokens=8192), progress=False)
    return out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_twenty_random_sigkills_then_resume_bit_identical(tmp_path, tiny_neox_dir, text_file, tiny_model, reference):
    """20 SIGKILLs at random moments (forked children share the imported libraries, so each start is cheap).

    A fast machine may finish the extraction before 20 kills have landed; the finished cache is then checked
    against the reference and a new round starts on an empty folder, so every run sees exactly 20 kills.
    """
    out = tmp_path / "c"
    rng = random.Random(0)
    torch.set_num_threads(1)
    cfg = _cfg(out, tiny_neox_dir, text_file, resume=True, writer_threads=3)  # kills leave gaps in the listing
    # time one uninterrupted run's duration to spread the kills over it
    t0 = time.perf_counter()
    extract(_cfg(tmp_path / "timing", tiny_neox_dir, text_file), model=tiny_model, progress=False)
    duration = time.perf_counter() - t0
    kills, rounds, progress, window, stalled = 0, [], [], duration * 0.1, 0
    while kills < 20:
        pid = os.fork()
        if pid == 0:  # child: resume (or start) the extraction until killed
            try:
                extract(cfg, model=tiny_model, progress=False)
                os._exit(0)
            except BaseException:  # noqa: BLE001
                import traceback

                (tmp_path / "child_error.txt").write_text(traceback.format_exc())
                os._exit(3)
        time.sleep(rng.uniform(0.0, window))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status):  # finished before the kill landed: check this round, then start afresh
            assert os.WEXITSTATUS(status) == 0, (tmp_path / "child_error.txt").read_text()
            _check_matches_reference(out, reference)
            rounds.append(progress)
            progress, window, stalled = [], duration * 0.1, 0
            shutil.rmtree(out)
            continue
        kills += 1
        progress.append(_listed_shards_complete(out))  # a reader never sees an incomplete listed shard
        stalled = stalled + 1 if len(progress) > 1 and progress[-1] == progress[-2] else 0
        if stalled >= 3:  # a busy machine: widen the window so that kills also land after shards complete
            window, stalled = window * 1.5, 0
    summary = extract(cfg, model=tiny_model, progress=False)
    assert summary.n_rows == 8192
    rounds.append(progress)
    assert kills == 20 and all(r == sorted(r) for r in rounds) and max(max(r, default=0) for r in rounds) > 0
    _check_matches_reference(out, reference)


def _check_matches_reference(out: Path, reference: Path) -> None:
    """The resumed cache is byte-identical to an uninterrupted run, verifies, and leaves no temporary files."""
    assert shard_digests(out) == shard_digests(reference)
    assert open_cache(out).verify_all() == []
    assert not list(out.glob(".*.tmp"))


def test_disk_full_stops_cleanly_and_resumes(tmp_path, tiny_neox_dir, text_file):
    """RLIMIT_FSIZE: the growing manifest hits the limit after some shards; those stay valid and resumable."""
    out = tmp_path / "full"
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (24000, 24000)); from apps.cli import main; sys.exit(main())"
    )
    args = ["extract", "--model", str(tiny_neox_dir), "--data", str(text_file), "--out", str(out), "--tokens", "8192",
            "--ctx", "32", "--batch-size", "4", "--shard-mb", "0.01", "--quiet", "--hooks", "blocks.*.hook_resid_post"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stderr
    assert "file size limit exceeded" in res.stderr and "--resume" in res.stderr and "Traceback" not in res.stderr
    listed = _listed_shards_complete(out)
    assert 0 < listed < 64
    resid = ["blocks.*.hook_resid_post"]
    extract(_cfg(out, tiny_neox_dir, text_file, hooks=resid, resume=True, max_pending=2), progress=False)
    extract(_cfg(tmp_path / "ref", tiny_neox_dir, text_file, hooks=resid), progress=False)
    assert shard_digests(out) == shard_digests(tmp_path / "ref")


def test_writer_threads_write_the_same_cache(tmp_path, tiny_neox_dir, text_file, tiny_model, reference):
    """Several writer threads list shards in any order; the files and the final manifest's shard list are those of
    one thread."""
    out = tmp_path / "threads"
    extract(_cfg(out, tiny_neox_dir, text_file, writer_threads=4, max_pending=4), model=tiny_model, progress=False)
    assert shard_digests(out) == shard_digests(reference)
    listing = lambda folder: json.loads((folder / "manifest.json").read_text())["shards"]  # noqa: E731
    assert listing(out) == listing(reference)
    assert open_cache(out).verify_all() == []


def test_a_cache_with_gaps_is_read_up_to_the_gap_and_verified(tmp_path, reference, capsys):
    """Several writer threads can leave an unfinished cache listing shards 0, 2, 3: readers that accept unfinished
    caches see shard 0's rows, verify checks every listed shard, and only a complete cache with gaps is refused."""
    from apps.cache_cmds import cache_verify
    from interp.cache.manifest import Manifest
    from interp.errors import CacheError

    out = tmp_path / "gaps"
    shutil.copytree(reference, out)
    m = Manifest.load(out)
    assert len(m.shards) >= 4
    m.shards = [sh for sh in m.shards if sh.index != 1]
    m.status = "in_progress"
    m.save(out)
    r = open_cache(out, allow_incomplete=True)
    first = open_cache(reference).shards[0]
    assert [sh.index for sh in r.shards] == [0] and len(r) == first.rows[1] - first.rows[0]
    assert len(r.listed) == len(m.shards) and r.verify_all() == []
    assert cache_verify(str(out)) == 0 and f"ok   {len(m.shards)} shards" in capsys.readouterr().out
    (out / next(name for name in m.shards[-1].files)).write_bytes(b"damaged")
    assert cache_verify(str(out), repair=True) == 0  # a listed shard after the gap is checked (and unlisted)
    assert len(Manifest.load(out).shards) == len(m.shards) - 1
    m.status = "complete"
    m.save(out)
    with pytest.raises(CacheError, match="gaps"):
        open_cache(out)


def test_ctrl_c_is_not_replaced_by_a_writer_error(tmp_path, tiny_neox_dir, text_file, tiny_model, monkeypatch):
    """A writer error that arrives while Ctrl-C stops the loop must not replace the KeyboardInterrupt (the CLI's
    exit 130); the shards written before it stay listed."""
    import interp.extract as extract_mod
    from interp.cache import writer as writer_mod
    from interp.cache.shards import write_npy_atomic

    def slow_then_full(path, array):
        time.sleep(0.1)
        if ".00002." in path.name:
            raise OSError(28, "No space left on device")
        return write_npy_atomic(path, array)

    launch = extract_mod.launch_shard

    def interrupted(capturer, tokens, batch_size, index, *args, **kw):
        if index == 4:
            raise KeyboardInterrupt
        return launch(capturer, tokens, batch_size, index, *args, **kw)

    monkeypatch.setattr(writer_mod, "write_npy_atomic", slow_then_full)
    monkeypatch.setattr(extract_mod, "launch_shard", interrupted)
    out = tmp_path / "c"
    with pytest.raises(KeyboardInterrupt):
        extract(_cfg(out, tiny_neox_dir, text_file, writer_threads=1, max_pending=8), model=tiny_model,
                progress=False)
    assert _listed_shards_complete(out) == 2


@pytest.mark.parametrize("threads", [1, 3])
def test_writer_error_is_raised_once_and_later_shards_are_not_written(tmp_path, monkeypatch, threads):
    """A failed shard stops the writer: it is reported once, shards taken after it are not written, and every
    listed shard is complete (the disk-full test covers the CLI's message)."""
    import numpy as np

    from interp.cache import writer as writer_mod
    from interp.cache.manifest import Manifest
    from interp.cache.shards import shard_file, write_npy_atomic

    def failing(path, array):
        if path.name == "h.00002.npy":
            raise OSError(28, "No space left on device")
        if path.name == "h.00001.npy":  # with 3 threads shard 1 lands after shard 2 failed: still listed
            time.sleep(0.3)
        return write_npy_atomic(path, array)

    monkeypatch.setattr(writer_mod, "write_npy_atomic", failing)
    w = writer_mod.ShardWriter(tmp_path, Manifest(identity={}, hooks={}, layout={}), max_pending=1, threads=threads)
    raised = 0
    for i in range(8):
        try:
            w.submit(i, (i, i + 1), (i, i + 1), {shard_file("h", i): np.full((4, 2), i, dtype=np.float32)})
        except Exception as e:  # noqa: BLE001
            raised += 1
            assert "no space left" in str(e)
            break
    try:
        w.close()
    except Exception as e:  # noqa: BLE001
        raised += 1
        assert "no space left" in str(e)
    w._raise()  # reported once: nothing left to raise
    assert raised == 1
    listed = sorted(s.index for s in w.manifest.shards)
    assert 2 not in listed and listed[:2] == [0, 1]  # shards taken before the failure are finished and listed
    if threads == 1:  # one thread takes shards in order: nothing after the failed one was written
        assert listed == [0, 1] and sorted(p.name for p in tmp_path.glob("*.npy")) == ["h.00000.npy", "h.00001.npy"]
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(s["index"] for s in doc["shards"]) == listed
    _listed_shards_complete(tmp_path)


def test_second_writer_refused_with_pid(tmp_path, tiny_neox_dir, text_file):
    out = tmp_path / "locked"
    out.mkdir()
    with CacheLock(out):
        with pytest.raises(CacheLockedError, match=f"pid {os.getpid()}"):
            extract(_cfg(out, tiny_neox_dir, text_file, tokens=256), progress=False)
    assert not (out / "manifest.json").exists()


def test_lock_held_on_another_host_is_refused_with_how_to_clear_it(tmp_path, tiny_neox_dir, text_file):
    """A process on another host cannot be checked from here: refuse, naming the host and the lock file to delete."""
    from interp.errors import InterpError

    out = tmp_path / "other-host"
    out.mkdir()
    (out / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": "node-that-died"}))
    with pytest.raises(CacheLockedError, match="pid .* on node-that-died") as err:
        extract(_cfg(out, tiny_neox_dir, text_file, tokens=256), progress=False)
    assert isinstance(err.value, InterpError) and str(out / ".lock") in err.value.hint
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


def test_stale_lock_from_dead_process_is_taken_over(tmp_path, tiny_neox_dir, text_file):
    out = tmp_path / "stale"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    summary = extract(_cfg(out, tiny_neox_dir, text_file, tokens=256), progress=False)
    assert summary.n_rows == 256 and not (out / ".lock").exists()


def test_single_writer_and_torchrun_ranks_exclude_each_other(tmp_path, tiny_neox_dir, text_file):
    """`interp extract --overwrite` during a torchrun job (a live .lock.rankN) is refused and deletes nothing; a
    rank is refused while a single-process writer holds .lock; locks of dead processes do not count."""
    out = tmp_path / "mixed"
    extract(_cfg(out, tiny_neox_dir, text_file, tokens=256), progress=False)
    before = sorted(p.name for p in out.iterdir())
    with CacheLock(out, owner="rank1"):
        with pytest.raises(CacheLockedError, match=r"\(\.lock\.rank1\)"):
            extract(_cfg(out, tiny_neox_dir, text_file, tokens=256, overwrite=True), progress=False)
    assert sorted(p.name for p in out.iterdir()) == before  # nothing wiped, no lock left behind
    with CacheLock(out):
        with pytest.raises(CacheLockedError, match=r"\(\.lock\)"):
            CacheLock(out, owner="rank0").acquire()
    assert not (out / ".lock.rank0").exists()  # the refused rank released its own lock
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".lock.rank3").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with CacheLock(out):
        pass


def test_breaking_a_stale_lock_never_steals_a_live_one(tmp_path, monkeypatch):
    """Without flock: B judges the lock stale; before B moves it aside, A breaks it and takes the lock. B must put
    A's live lock back and be refused, not hold the lock too (the interleaving of two processes, replayed in one)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    monkeypatch.setattr("interp.cache.lock._flock", lambda fd: None)  # a file system without flock
    a, b = CacheLock(tmp_path), CacheLock(tmp_path)
    original = CacheLock._break_stale

    def a_gets_in_first(self, holder):
        if self is b and not a.held:
            a.acquire()
        return original(self, holder)

    monkeypatch.setattr(CacheLock, "_break_stale", a_gets_in_first)
    with pytest.raises(CacheLockedError):
        b.acquire()
    assert a.held and not b.held and json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_processes_racing_for_a_stale_lock_never_both_take_it(tmp_path):
    """Four processes find the same dead holder's lock at once (each pauses 20 ms after judging it stale, which
    widens the window): in every round exactly one takes the lock; the others are refused naming it."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = json.dumps({"pid": dead.pid, "host": socket.gethostname()})
    for rnd in range(8):
        (tmp_path / ".lock").write_text(stale)
        go, pids = tmp_path / f"go{rnd}", []
        for i in range(4):
            pid = os.fork()
            if pid == 0:  # child: wait for the start, race for the lock, hold it a while
                code = 1
                try:
                    CacheLock._stale = _slow_judge(CacheLock._stale)
                    while not go.exists():
                        time.sleep(0.001)
                    lock = CacheLock(tmp_path)
                    try:
                        lock.acquire()
                        (tmp_path / f"won.{rnd}.{i}").write_text(str(os.getpid()))
                        # hold it until the three others have tried (not for a fixed time: on a loaded machine a
                        # late starter would find it released and take it fairly); 120 s only against a hang
                        deadline = time.monotonic() + 120
                        while len(list(tmp_path.glob(f"lost.{rnd}.*"))) < 3 and time.monotonic() < deadline:
                            time.sleep(0.005)
                        lock.release()
                        code = 0
                    except CacheLockedError:
                        (tmp_path / f"lost.{rnd}.{i}").write_text("")
                        code = 7
                finally:
                    os._exit(code)
            pids.append(pid)
        go.write_text("")
        codes = sorted(os.WEXITSTATUS(os.waitpid(p, 0)[1]) for p in pids)
        assert codes == [0, 7, 7, 7], (rnd, codes)
        assert len(list(tmp_path.glob(f"won.{rnd}.*"))) == 1 and not (tmp_path / ".lock").exists()
    assert not list(tmp_path.glob(".lock*"))


def test_a_lock_whose_pid_was_reused_is_taken_over(tmp_path):
    """A restarted container reuses pids: a dead writer's lock may name a live, unrelated process. Nobody holds the
    file's flock, so it is stale (before, it was refused for good); a lock with a live flock holder is not."""
    for name in (".lock", ".lock.rank2"):
        (tmp_path / name).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    with CacheLock(tmp_path) as lock:  # .lock taken over in place; the rank lock's pid is alive but unflocked
        assert lock.held and json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
        with pytest.raises(CacheLockedError, match=f"pid {os.getpid()}"):
            CacheLock(tmp_path).acquire()  # a live holder: the flock is held


def _slow_judge(judge):
    """A stale-lock judgement that pauses 20 ms after deciding (the window in which racing processes interleave)."""
    def slow(self, *args, **kwargs):
        verdict = judge(self, *args, **kwargs)
        time.sleep(0.02)
        return verdict
    return slow


def test_a_released_lock_file_is_not_reused_by_a_late_opener(tmp_path, monkeypatch):
    """A process that opened the lock file just before its holder released it (unlink, then close) gets a flock
    on a file no longer at the path; it must notice and take a fresh lock, not hold the deleted file."""
    a = CacheLock(tmp_path)
    a.acquire()
    b = CacheLock(tmp_path)
    real_open = os.open

    def open_then_release(path, flags, *args):
        fd = real_open(path, flags, *args)
        if not flags & os.O_EXCL and a.held:
            a.release()  # the holder lets go between b's open and b's flock
        return fd

    monkeypatch.setattr(os, "open", open_then_release)
    b.acquire()
    monkeypatch.undo()
    assert b.held and json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    st = (tmp_path / ".lock").stat()
    assert (st.st_dev, st.st_ino) == (os.fstat(b._fd).st_dev, os.fstat(b._fd).st_ino)
    b.release()


def test_empty_lock_file_is_a_write_in_progress_only_while_its_flock_is_held(tmp_path, monkeypatch):
    """A lock file created but not yet written: while its creator holds the flock it is a writer starting; with
    nobody holding it the creator died between create and write (a SIGKILL there made the next --resume fail for
    10 s). Without flock support, only age tells, as before."""
    import fcntl

    from interp.cache import lock as lock_mod

    path = tmp_path / ".lock"
    path.write_text("")
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live creator between open and write
    with pytest.raises(CacheLockedError, match="a writer that is starting"):
        CacheLock(tmp_path).acquire()
    os.close(fd)  # the creator died: the kernel drops its flock
    with CacheLock(tmp_path) as lock:
        assert lock.held
    path.write_text("")
    monkeypatch.setattr(lock_mod, "_flock", lambda fd: None)  # a file system without flock
    with pytest.raises(CacheLockedError):
        CacheLock(tmp_path).acquire()
    old = time.time() - 60
    os.utime(path, (old, old))
    with CacheLock(tmp_path) as lock:
        assert lock.held


def test_the_files_of_one_shard_are_written_by_several_threads(tmp_path, monkeypatch):
    """An all-hooks shard is many files: each is its own writer task, so three threads write one shard at once (a
    barrier of three breaks unless three writes of the same shard overlap), and the listing keeps the given order."""
    import threading

    import numpy as np

    from interp.cache import writer as writer_mod
    from interp.cache.manifest import Manifest
    from interp.cache.shards import write_npy_atomic

    barrier, names = threading.Barrier(3, timeout=60), set()

    def meeting(path, array):
        if path.name.startswith("h") and int(path.name[1]) < 3:
            barrier.wait()  # the first three files of the shard must be in flight together
        names.add(threading.current_thread().name)
        return write_npy_atomic(path, array)

    monkeypatch.setattr(writer_mod, "write_npy_atomic", meeting)
    w = writer_mod.ShardWriter(tmp_path, Manifest(identity={}, hooks={}, layout={}), max_pending=1, threads=3)
    files = {f"h{i}.00000.npy": np.full((4, 2), i, dtype=np.float32) for i in (5, 0, 3, 1, 4, 2)}
    w.submit(0, (0, 4), (0, 1), files)
    w.close()
    assert len(names) == 3
    (shard,) = w.manifest.shards
    assert list(shard.files) == list(files)
    for name, arr in files.items():
        assert np.array_equal(np.load(tmp_path / name), arr)
    _listed_shards_complete(tmp_path)


def test_submit_waits_while_max_pending_plus_one_shards_are_unwritten(tmp_path, monkeypatch):
    """Host memory is bounded in shards: with max_pending=1 and the disk stalled, a third shard is not taken."""
    import threading

    import numpy as np

    from interp.cache import writer as writer_mod
    from interp.cache.manifest import Manifest
    from interp.cache.shards import write_npy_atomic

    go, submitted = threading.Event(), []

    def stalled(path, array):
        go.wait(60)
        return write_npy_atomic(path, array)

    monkeypatch.setattr(writer_mod, "write_npy_atomic", stalled)
    w = writer_mod.ShardWriter(tmp_path, Manifest(identity={}, hooks={}, layout={}), max_pending=1, threads=4)

    def feed():
        for i in range(4):
            w.submit(i, (i, i + 1), (i, i + 1), {f"h.{i:05d}.npy": np.zeros(2), f"t.{i:05d}.npy": np.zeros(2)})
            submitted.append(i)

    feeder = threading.Thread(target=feed)
    feeder.start()
    feeder.join(timeout=1.0)  # it blocks on the third shard however long it is given
    assert feeder.is_alive() and submitted == [0, 1]
    go.set()
    feeder.join(timeout=60)
    w.close()
    assert submitted == [0, 1, 2, 3] and sorted(s.index for s in w.manifest.shards) == [0, 1, 2, 3]
