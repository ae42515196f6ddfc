"""``vidinv batch`` (issue 13): a jobs file checked line by line before any model loads; a local run where one
job fails and the others finish, with models loaded once; resume (finished jobs skipped, a job whose output
went missing run again); the same batch on Ray (127.0.0.1, two CPU actors) writing the same bytes; a job
split into segments (the expansion into segment and join tasks, with a fake segments module; the real
segments module in the Ray run, whose segmented job writes the same bytes as the local single run).

Local runs go through the CLI in this process (click's runner, the tiny bundle, ``--gate off``: the tiny
generator's faces would be gated out); shared clips from ../shared/videos.
"""
from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import invoke_cli, require_shared
from tiny_bundle import write_tiny_bundle

import vidinv.batch.worker as worker_mod
from vidinv.batch import BatchJob, Task, expand_job
from vidinv.batch.runner import run_tasks
from vidinv.batch.worker import TaskOutcome

CLIP_END = 0.1  # seconds of talking_wink.mp4 each edit renders (3 frames)


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    h = tmp_path_factory.mktemp("tiny_batch")
    write_tiny_bundle(h)
    return h


def _edit(out: str, attr: str, **extra) -> dict:
    return {"command": "edit", "input": str(require_shared("videos") / "talking_wink.mp4"), "output": out,
            "options": {"attr": attr, "end": CLIP_END, "gate": "off", "mask": "landmarks", **extra}}


def _write_jobs(path: Path, jobs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs), encoding="utf-8")
    return path


def _rows(stdout: str) -> dict[str, list[str]]:
    """The summary table: job name -> [command, status, seconds, error]."""
    lines = stdout.strip().splitlines()
    assert lines[0].split()[:5] == ["job", "command", "status", "seconds", "error"], stdout
    out = {}
    for line in lines[2:]:
        parts = line.split(None, 4)
        out[parts[0]] = parts[1:] + ([""] if len(parts) == 4 else [])
    return out


@pytest.fixture
def count_loads(monkeypatch):
    """Counts the bundles the workers load (the real loader runs)."""
    calls = []
    real = worker_mod.load_bundle

    def counted(*args, **kwargs):
        calls.append(args[1] if len(args) > 1 else kwargs.get("encoder"))
        return real(*args, **kwargs)
    monkeypatch.setattr(worker_mod, "load_bundle", counted)
    return calls


def test_every_line_is_checked_before_any_model_loads(tiny_home, tmp_path, monkeypatch):
    def no_models(*a, **k):
        raise AssertionError("a model was loaded")
    monkeypatch.setattr(worker_mod, "load_bundle", no_models)
    video = str(require_shared("videos") / "talking_wink.mp4")
    jobs = _write_jobs(tmp_path / "jobs.jsonl", [
        _edit("ok.mp4", "smile"),
        {"command": "edit", "input": video, "output": "x.mp4", "options": {"atr": "smile"}},
        {"command": "frobnicate", "input": video, "output": "y.mp4"},
        {"command": "edit", "input": "missing.mp4", "output": "z.mp4", "options": {"attr": "smile"}},
        {"command": "invert", "input": video, "output": "inv", "segments": 2},
        {"command": "edit", "input": video, "output": "w.mp4", "options": {"attr": "smile", "strength": "lots"}},
    ])
    (tmp_path / "jobs.jsonl").write_text(jobs.read_text() + "not json\n")
    r = invoke_cli(["batch", str(jobs), "-q"], tiny_home)
    assert r.exit_code == 2, r.output
    errors = r.stderr.strip().splitlines()
    assert all(e.startswith("vidinv: error: jobs.jsonl line ") for e in errors), r.stderr
    assert [e.split()[4].rstrip(":") for e in errors] == ["2", "3", "4", "5", "6", "7"], r.stderr
    assert "no option 'atr' (did you mean 'attr'?)" in errors[0]
    assert "command 'frobnicate'" in errors[1]
    assert "missing.mp4" in errors[2]
    assert "invert does not take it" in errors[3]
    assert "'lots' is not a valid float" in errors[4]
    assert "not JSON" in errors[5]
    assert not (tmp_path / "jobs.records").exists() and not (tmp_path / "ok.mp4").exists()


@pytest.fixture(scope="module")
def local_run(tiny_home, tmp_path_factory):
    """The batch of three jobs (the second fails: its export folder already holds an export), run locally."""
    d = tmp_path_factory.mktemp("local")
    (d / "taken").mkdir()
    (d / "taken" / "manifest.json").write_text("{}")
    jobs = _write_jobs(d / "jobs.jsonl", [
        _edit("a.mp4", "smile", strength=2),
        {"command": "invert", "input": str(require_shared("videos") / "talking_wink.mp4"), "output": "taken",
         "options": {"end": CLIP_END}},
        _edit("sub/b.mp4", "age", strength=-1),
    ])
    (d / "sub").mkdir()
    return d, jobs


def test_local_run_one_job_fails_the_others_finish(tiny_home, local_run, count_loads, detection_cache):
    d, jobs = local_run
    r = invoke_cli(["batch", str(jobs), "-q"], tiny_home)
    assert r.exit_code == 1, r.output
    rows = _rows(r.stdout)
    assert rows["1:a.mp4"][:2] == ["edit", "done"] and rows["3:b.mp4"][:2] == ["edit", "done"], r.stdout
    assert rows["2:taken"][:2] == ["invert", "failed"]
    assert "already holds an inversion export" in rows["2:taken"][3]
    assert r.stderr.strip().splitlines()[-1] == "vidinv: error: 1 of 3 job(s) failed (listed above)"
    assert (d / "a.mp4").stat().st_size > 0 and (d / "sub" / "b.mp4").stat().st_size > 0
    records = sorted((d / "jobs.records").glob("*.json"))
    assert len(records) == 2
    docs = {json.loads(p.read_text())["line"]: json.loads(p.read_text()) for p in records}
    assert sorted(docs) == [1, 3] and docs[1]["status"] == "done" and docs[1]["result"]["1"]["frames"] == 3
    # the edits and the invert need the same networks: loaded once
    assert count_loads == ["fs"]


def test_resume_skips_finished_jobs_and_reruns_a_missing_output(tiny_home, local_run, count_loads, detection_cache):
    d, jobs = local_run
    a_bytes = (d / "a.mp4").read_bytes()
    a_mtime = (d / "a.mp4").stat().st_mtime_ns
    b_bytes = (d / "sub" / "b.mp4").read_bytes()
    (d / "sub" / "b.mp4").unlink()  # its record stays
    (d / "taken" / "manifest.json").unlink()  # the failing job can run now
    r = invoke_cli(["batch", str(jobs), "-q"], tiny_home)
    assert r.exit_code == 0, r.output
    rows = _rows(r.stdout)
    assert [rows[k][1] for k in ("1:a.mp4", "2:taken", "3:b.mp4")] == ["skipped", "done", "done"], r.stdout
    assert (d / "a.mp4").stat().st_mtime_ns == a_mtime and (d / "a.mp4").read_bytes() == a_bytes
    assert (d / "sub" / "b.mp4").read_bytes() == b_bytes  # the same job again: the same bytes
    assert json.loads((d / "taken" / "manifest.json").read_text())["complete"] is True
    assert len(list((d / "jobs.records").glob("*.json"))) == 3
    r = invoke_cli(["batch", str(jobs), "-q"], tiny_home)
    assert r.exit_code == 0 and {v[1] for v in _rows(r.stdout).values()} == {"skipped"}, r.output
    assert count_loads == ["fs"]


def test_ray_run_writes_the_same_bytes_as_the_local_run(tiny_home, local_run, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray = pytest.importorskip("ray")
    d, _ = local_run
    assert (d / "a.mp4").is_file() and (d / "sub" / "b.mp4").is_file(), "runs after the local tests"
    (tmp_path / "sub").mkdir()
    # the second job is split into 2 segments (vidinv.pipeline.segments, on the two actors) and joined
    jobs = _write_jobs(tmp_path / "jobs.jsonl", [_edit("a.mp4", "smile", strength=2),
                                                 {**_edit("sub/b.mp4", "age", strength=-1), "segments": 2}])
    ray.init(_node_ip_address="127.0.0.1", num_cpus=2, include_dashboard=False, logging_level="ERROR",
             runtime_env={"env_vars": {"VIDINV_HOME": str(tiny_home), "RAY_USAGE_STATS_ENABLED": "0"}})
    try:
        import torch

        threads = torch.get_num_threads()  # the local run's (conftest: 2)
        r = invoke_cli(["batch", str(jobs), "--ray", "auto", "--workers", "2", "--threads", str(threads), "-q"],
                       tiny_home)
    finally:
        ray.shutdown()
    assert r.exit_code == 0, r.output
    assert {v[1] for v in _rows(r.stdout).values()} == {"done"}, r.stdout
    # same code, same torch thread count, same encoder settings: byte for byte (the segmented job too)
    assert (tmp_path / "a.mp4").read_bytes() == (d / "a.mp4").read_bytes()
    assert (tmp_path / "sub" / "b.mp4").read_bytes() == (d / "sub" / "b.mp4").read_bytes()


def test_a_job_reading_an_earlier_output_depends_on_it(tiny_home, tmp_path, monkeypatch):
    """Relative paths (the input, a path option, the report's OUTPUT arguments) resolve against the jobs file's
    folder; a job reading an earlier job's output depends on it (its files are checked when it runs); reading a
    later job's output is an error of that line."""
    from vidinv.batch import load_jobs
    from vidinv.cli.batch import batch_commands

    monkeypatch.setenv("VIDINV_HOME", str(tiny_home))
    video = str(require_shared("videos") / "talking_wink.mp4")
    report = {"command": "report", "input": video, "output": "rep", "options": {"outputs": ["a.mp4"]}}
    path = _write_jobs(tmp_path / "jobs.jsonl", [_edit("a.mp4", "smile"), report,
                                                 {**_edit("c.mp4", "age"), "input": "a.mp4"}])
    jobs = load_jobs(path, batch_commands())
    assert [j.deps for j in jobs] == [[], [1], [1]]
    assert jobs[1].params["outputs"] == (str(tmp_path / "a.mp4"),) and jobs[2].input == tmp_path / "a.mp4"
    _write_jobs(path, [report, _edit("a.mp4", "smile")])
    with pytest.raises(ValueError, match=r"jobs.jsonl line 1: video .*a.mp4 does not exist"):
        load_jobs(path, batch_commands())


def test_ray_missing_is_one_line(tiny_home, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    jobs = _write_jobs(tmp_path / "jobs.jsonl", [_edit("a.mp4", "smile")])
    r = invoke_cli(["batch", str(jobs), "--ray", "auto", "-q"], tiny_home)
    assert r.exit_code == 1
    assert r.stderr.strip() == "vidinv: error: --ray needs Ray, which is not installed: pip install 'vidinv[ray]'"


# ------------------------------------------------------------------------------------------------ segments

@dataclass
class FakeSegment:
    index: int
    start: int
    stop: int


def _fake_segments(calls: list) -> types.ModuleType:
    """A stand-in for vidinv.pipeline.segments with its API: segments of 3 frames each; a part file holds its
    frame range; the join writes the parts' contents, in order, as the output."""
    from vidinv.io.outputs import atomic_write_text
    from vidinv.pipeline.edit import EditResult
    from vidinv.pipeline.job import Job

    import vidinv.pipeline.segments as real

    mod = types.ModuleType("vidinv.pipeline.segments")
    mod.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})  # run_segmented, ...

    def plan_segments(src, n_segments, overlap=None, *, start=None, end=None):
        calls.append(("plan", Path(src).name, n_segments))
        return [FakeSegment(i, 3 * i, 3 * i + 3) for i in range(n_segments)]

    def run_segment(opts, segment, part, job=None):
        assert isinstance(job, Job) and job.bundle.G is not None
        calls.append(("segment", segment.index))
        atomic_write_text(part, f"{segment.start}-{segment.stop}\n")
        return Path(part)

    def join_segments(opts, segments, parts):
        assert all(Path(p).is_file() for p in parts)
        calls.append(("join", [s.index for s in segments]))
        atomic_write_text(opts.dst, "".join(Path(p).read_text() for p in parts))
        return EditResult(Path(opts.dst), frames=3 * len(segments))

    def required_overlap(opts=None):
        return 0

    mod.plan_segments, mod.run_segment, mod.join_segments = plan_segments, run_segment, join_segments
    mod.required_overlap = required_overlap
    return mod


def test_segments_expand_into_segment_tasks_then_a_join(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "vidinv.pipeline.segments", _fake_segments(calls))
    job = BatchJob(4, "edit", tmp_path / "in.mp4", tmp_path / "out.mp4", {}, {}, segments=3, key="k", deps=[2])
    tasks = expand_job(job, tmp_path / "parts", after={2: "2.join"})
    assert [t.id for t in tasks] == ["4.s0", "4.s1", "4.s2", "4.join"]
    assert [t.deps for t in tasks[:3]] == [("2.join",)] * 3
    assert tasks[3].deps == ("4.s0", "4.s1", "4.s2", "2.join")
    assert [p.name for p in tasks[3].parts] == ["part_0000.mkv", "part_0001.mkv", "part_0002.mkv"]
    assert calls == [("plan", "in.mp4", 3)]


class _Pool:
    """A one-worker pool that runs a task by a table: task id -> error (or success)."""

    size = 1

    def __init__(self, errors):
        self.errors, self.ran = errors, []

    def submit(self, i, job, task):
        import concurrent.futures as cf

        self.ran.append(task.id)
        f: cf.Future = cf.Future()
        err = self.errors.get(task.id)
        f.set_result(TaskOutcome(task.id, err is None, 0.0, error=err))
        return f

    def alive(self, i):
        return True


def test_a_failed_segment_stops_its_join_and_the_jobs_reading_its_output(tmp_path):
    jobs = {1: BatchJob(1, "edit", tmp_path / "a", tmp_path / "b", {}, {}, segments=2),
            2: BatchJob(2, "report", tmp_path / "b", tmp_path / "r", {}, {}),
            3: BatchJob(3, "edit", tmp_path / "c", tmp_path / "d", {}, {})}
    tasks = [Task("1.s0", 1, "segment"), Task("1.s1", 1, "segment"), Task("1.join", 1, "join", ("1.s0", "1.s1")),
             Task("2", 2, "job", ("1.join",)), Task("3", 3)]
    pool = _Pool({"1.s1": "boom"})
    seen = {}
    run_tasks(jobs, tasks, pool, lambda t, o: seen.__setitem__(t.id, (o.ok, o.error)))
    assert pool.ran == ["1.s0", "1.s1", "3"]
    assert seen["1.s1"] == (False, "boom") and seen["3"] == (True, None)
    assert seen["1.join"] == (False, "not run: task 1.s1 it needs failed")
    assert seen["2"] == (False, "not run: task 1.join it needs failed")


def test_segmented_edit_runs_through_the_batch(tiny_home, tmp_path, monkeypatch, count_loads):
    calls: list = []
    monkeypatch.setitem(sys.modules, "vidinv.pipeline.segments", _fake_segments(calls))
    job = _edit("long.mp4", "smile")
    job["segments"] = 3
    jobs = _write_jobs(tmp_path / "jobs.jsonl", [job])
    r = invoke_cli(["batch", str(jobs), "-q"], tiny_home)
    assert r.exit_code == 0, r.output
    assert calls == [("plan", "talking_wink.mp4", 3), ("segment", 0), ("segment", 1), ("segment", 2),
                     ("join", [0, 1, 2])]
    assert (tmp_path / "long.mp4").read_text() == "0-3\n3-6\n6-9\n"
    assert count_loads == ["fs"]  # the three segments share the worker's networks
    rec = json.loads(next((tmp_path / "jobs.records").glob("*.json")).read_text())
    assert rec["segments"] == 3 and rec["result"]["1.join"]["frames"] == 9
    assert list((tmp_path / "jobs.records" / "parts").iterdir()) == []  # the job's part files are removed
