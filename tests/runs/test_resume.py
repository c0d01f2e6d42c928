"""Resume after a crash: the resume checkpoint's parts, the ledger's reopen, and a SIGKILLed run that,
resumed, ends exactly where an uninterrupted run ends (burn-in and the SSL phase of train)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from medref_cli.config import load_config
from medref_cli.errors import MedrefError
from medref_cli.ledger import open_ledger, record_run, reopen_run, run_detail
from medref_cli.runs.resume import NEXT_FILE, PREVIOUS_FILE, ResumeWriter, find_resume_file
from medref_cli.runtime.batches import cycled_batches
from medref_cli.runtime.checkpoint import file_sha256
from medref_cli.training.loop_state import CycledBatches, LoopPosition, restore_rng, rng_state

# ---------------------------------------------------------------- the parts of a resume state


@pytest.mark.parametrize("n, batch, draws", [(5, 4, 9), (3, 4, 7), (10, 3, 12), (4, 4, 5), (1, 2, 3)])
def test_cycled_batches_match_the_plain_stream_and_continue_after_a_restore(n, batch, draws):
    plain = cycled_batches(n, batch, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    stream = CycledBatches(n, batch, gen)
    expected = [next(plain) for _ in range(2 * draws)]
    served = [next(stream) for _ in range(draws)]
    saved_stream, saved_gen = stream.state_dict(), gen.get_state()
    rest = [next(stream) for _ in range(draws)]
    assert [b.tolist() for b in served + rest] == [b.tolist() for b in expected]
    gen2 = torch.Generator().manual_seed(999)  # a fresh process: other seed, restored below
    gen2.set_state(saved_gen)
    again = CycledBatches(n, batch, gen2)
    again.load_state_dict(saved_stream)
    assert [next(again).tolist() for _ in range(draws)] == [b.tolist() for b in rest]
    assert all(len(b) == batch for b in served + rest)


def _draws(gens: dict) -> list:
    return [random.random(), float(np.random.rand()), float(torch.rand(())),
            torch.randperm(6, generator=gens["order"]).tolist(), gens["text"].random()]


def test_random_states_round_trip_through_a_weights_only_file(tmp_path):
    gens = {"order": torch.Generator().manual_seed(3), "text": random.Random(5)}
    _draws(gens)  # somewhere mid-stream
    state = rng_state(gens)
    expected = _draws(gens)
    torch.save({"rng": state}, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)["rng"]
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    fresh = {"order": torch.Generator().manual_seed(0), "text": random.Random(0)}
    restore_rng(loaded, fresh)
    assert _draws(fresh) == expected


def test_a_state_without_a_generator_is_refused():
    state = rng_state({"order": torch.Generator()})
    with pytest.raises(MedrefError, match="random state of view"):
        restore_rng(state, {"order": torch.Generator(), "view": torch.Generator()})


def test_a_generator_state_of_another_kind_is_refused_in_one_line():
    state = rng_state({"view": torch.Generator()})
    state["sources"]["view"] = torch.zeros(16, dtype=torch.uint8)  # the size of a CUDA generator's state
    with pytest.raises(MedrefError, match="from another kind of device than cpu"):
        restore_rng(state, {"view": torch.Generator()})


def test_loop_position_round_trip():
    pos = LoopPosition(epoch=3, step=17, batches=[torch.tensor([2, 0]), torch.tensor([1])], batch_pos=1)
    again = LoopPosition.from_state(pos.state_dict())
    assert (again.epoch, again.step, again.batch_pos, again.done) == (3, 17, 1, False)
    assert [b.tolist() for b in again.batches] == [[2, 0], [1]]
    again.end_epoch(last=True)
    assert (again.epoch, again.batches, again.batch_pos, again.done, again.epochs_run) == (4, None, 0, True, 3)


@pytest.mark.parametrize(
    "every, step, epoch_ends, due",
    [(1, 1, False, True), (1, 3, True, False), (2, 3, False, False), (2, 4, False, True), (0, 4, False, False)],
)
def test_mid_epoch_checkpoints_are_due_every_n_steps_except_at_an_epoch_end(every, step, epoch_ends, due):
    assert ResumeWriter(Path("."), every, lambda p, s: None, 1, "burnin").due(step, epoch_ends) is due


def test_the_writer_keeps_one_file_and_records_each_sha(tmp_path):
    recorded: list[tuple[Path, str]] = []
    writer = ResumeWriter(tmp_path / "run", 1, lambda p, s: recorded.append((p, s)), 5, "train")
    first = writer.save({"value": torch.tensor([1.0])})
    second = writer.save({"value": torch.tensor([2.0])})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["last.pt"]
    assert [s for _, s in recorded] == [first, second] and first != second
    assert file_sha256(writer.path) == second
    state = torch.load(writer.path, weights_only=True)
    assert (state["run_id"], state["phase"], float(state["value"])) == (5, "train", 2.0)


@pytest.mark.parametrize(
    "files, recorded_name, found",
    [
        ({"last.pt": "new"}, "new", "last.pt"),
        # died after writing last.next.pt: the ledger still names the current last.pt
        ({"last.pt": "old", NEXT_FILE: "new"}, "old", "last.pt"),
        # died between moving last.pt aside and moving the new file in
        ({PREVIOUS_FILE: "old", NEXT_FILE: "new"}, "old", PREVIOUS_FILE),
        # died after the new file became last.pt, before the ledger recorded it
        ({PREVIOUS_FILE: "old", "last.pt": "new"}, "old", PREVIOUS_FILE),
    ],
)
def test_a_crash_at_any_moment_of_a_save_leaves_the_recorded_file(tmp_path, files, recorded_name, found):
    digests = {}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content.encode())
        digests[content] = file_sha256(tmp_path / name)
    assert find_resume_file(tmp_path / "last.pt", digests[recorded_name]) == tmp_path / found


def test_a_resume_file_that_matches_nothing_recorded_is_refused(tmp_path):
    from medref_cli.runs.resume import load_resume_state

    torch.save({"x": torch.zeros(1)}, tmp_path / "last.pt")
    with pytest.raises(MedrefError, match="does not match its recorded sha256"):
        load_resume_state(tmp_path / "last.pt", "0" * 64, 1, "burnin")
    with pytest.raises(MedrefError, match="is missing"):
        load_resume_state(tmp_path / "gone" / "last.pt", "0" * 64, 1, "burnin")


# ---------------------------------------------------------------- the ledger's reopen


@pytest.fixture
def ledger(tmp_path):
    led = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield led
    led.dispose()


def _killed_run(ledger, tmp_path, kind="burnin") -> int:
    (tmp_path / "best.pt").write_bytes(b"weights")
    with pytest.raises(KeyboardInterrupt), record_run(ledger, kind, load_config()) as run:
        run.log_metrics({"train_loss": 1.0}, 1)
        run.log_metrics({"train_loss": 0.5, "val_dice_global": 0.2}, 2)
        run.log_metrics({"train_loss": 0.25}, 3)
        run.set_artifact(tmp_path / "best.pt", "resume")
        run.set_artifact(tmp_path / "best.pt", "resume")
        run.add_artifact(tmp_path / "best.pt", "checkpoint")
        run.add_image_scores("test", ["a"], [0.5], [0.3])
        run.set_final({"test_dice_global": 0.5})
        raise KeyboardInterrupt
    return run.id


def test_reopen_rewinds_a_killed_run_and_closes_it_honestly(ledger, tmp_path):
    run_id = _killed_run(ledger, tmp_path)
    assert [a["role"] for a in run_detail(ledger, run_id)["artifacts"]] == ["resume", "checkpoint"]
    with reopen_run(ledger, run_id, "burnin", heartbeat_s=30, keep_step=2, note={"from_step": 2}) as run:
        d = run_detail(ledger, run_id, history_points=10)
        assert d["status"] == "running" and d["pid"] == os.getpid() and d["ended"] is None and d["error"] is None
        assert d["history"]["train_loss"] == [[1, 1.0, pytest.approx(d["history"]["train_loss"][0][2])],
                                              [2, 0.5, pytest.approx(d["history"]["train_loss"][1][2])]]
        assert d["finals"] == {} and d["image_scores"] == 0
        assert [a["role"] for a in d["artifacts"]] == ["resume"]
        run.log_metrics({"train_loss": 0.3}, 3)
    d = run_detail(ledger, run_id, history_points=10)
    assert d["status"] == "finished"
    assert [p[:2] for p in d["history"]["train_loss"]] == [[1, 1.0], [2, 0.5], [3, 0.3]]
    # the metric clock continues: the new point is not earlier than the kept ones
    assert d["history"]["train_loss"][2][2] >= d["history"]["train_loss"][1][2]
    (note,) = d["tags"]["resumed"]
    assert note["from_step"] == 2 and note["status"] == "killed" and note["error"] == "killed by SIGINT"


@pytest.mark.parametrize(
    "command, message",
    [("train", "is a burnin run; resume it with `medref burnin --resume"), ("burnin", "is finished")],
)
def test_reopen_refuses_a_finished_run_or_another_kind(ledger, tmp_path, command, message):
    with record_run(ledger, "burnin", load_config()) as run:
        run.log_metrics({"train_loss": 1.0}, 1)
    if command == "train":
        run_id = _killed_run(ledger, tmp_path)
    else:
        run_id = run.id
    before = run_detail(ledger, run_id, history_points=10)
    with pytest.raises(MedrefError, match=message), reopen_run(ledger, run_id, command, heartbeat_s=30, keep_step=0):
        pass
    assert run_detail(ledger, run_id, history_points=10) == before


def test_reopen_refuses_a_run_whose_process_is_alive(ledger):
    with record_run(ledger, "train", load_config()) as run, pytest.raises(MedrefError, match="is still running"), \
            reopen_run(ledger, run.id, "train", heartbeat_s=30, keep_step=0):
        pass


# ---------------------------------------------------------------- kill -9 and resume, end to end

TINY = [
    "--dataset", "synthetic", "--backbone", "mmi-unet-tiny", "--cpu", "--ratio", "0.5",
    "--set", "data.image_size=64", "--set", "model.visual_pretrained=false",
    "--set", "model.text_encoder=tiny-random-bert", "--set", "train.batch_size=4",
    "--set", "train.max_steps_per_epoch=3", "--set", "runtime.progress=false", "--set", "runtime.log_every=1",
    "--set", "runtime.checkpoint_every=1", "--set", "runtime.heartbeat_s=0.3",
]
PHASES = {
    "burnin": ["burnin", "--epochs", "3"],
    "train": ["train", "--burnin-epochs", "1", "--epochs", "3"],
}
STATE_KEYS = ("model", "teacher")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    from medref_cli.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("resume") / "data", n=32, seed=3, image_size=64)


def _medref(cwd: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("MEDREF_LEDGER", None)
    code = "import sys; from medref_cli.cli.main import run; sys.argv[0] = 'medref'; run()"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return json.loads(out)


def _query(cwd: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(cwd / "results" / "ledger.db", timeout=30) as conn:
        return conn.execute(sql).fetchall()


def _kill_after_first_checkpoint(cwd: Path, proc: subprocess.Popen, kind: str, after_id: int) -> int:
    deadline = time.monotonic() + 300
    sql = ("SELECT r.id FROM artifacts a JOIN runs r ON r.id = a.run_id "
           f"WHERE a.role = 'resume' AND r.kind = '{kind}' AND r.id > {after_id}")
    while time.monotonic() < deadline:
        rows = _query(cwd, sql) if (cwd / "results" / "ledger.db").exists() else []
        if rows:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            return rows[0][0]
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("no resume checkpoint appeared")


def _history(cwd: Path, run_id: int) -> list[tuple]:
    return _query(cwd, f"SELECT name, step, value FROM metric_history WHERE run_id = {run_id} ORDER BY name, step")


def _finals(cwd: Path, run_id: int) -> dict[str, float]:
    return dict(_query(cwd, f"SELECT name, value FROM final_metrics WHERE run_id = {run_id}"))


def _assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.allclose(value.float(), b[key].float(), rtol=1e-6, atol=1e-7), key


@pytest.mark.slow
@pytest.mark.parametrize("phase", list(PHASES))
def test_a_killed_run_resumed_ends_like_an_uninterrupted_one(cli, tmp_path, small_data, phase):
    args = [*PHASES[phase], *TINY, "--data", str(small_data), "--json"]
    reference = _finish(_medref(tmp_path, *args))
    ref_id = reference["run_id"]

    proc = _medref(tmp_path, *args)  # the same experiment again (a train run reuses the burn-in)
    run_id = _kill_after_first_checkpoint(tmp_path, proc, phase, ref_id)
    (status,), = _query(tmp_path, f"SELECT status FROM runs WHERE id = {run_id}")
    assert status == "running", "the run ended before it could be killed mid-way"
    (path, sha), = _query(tmp_path, f"SELECT path, sha256 FROM artifacts WHERE run_id = {run_id} AND role = 'resume'")
    killed_at = torch.load(find_resume_file(Path(path), sha), weights_only=True)["position"]["step"]
    total_steps = int(_finals(tmp_path, ref_id)["steps"])
    assert 1 <= killed_at < total_steps

    time.sleep(1.0)  # > 3 heartbeats: the ledger now shows the run lost, with how to resume it
    code, out, err = cli("runs", "show", str(run_id), "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["status"] == "lost" and shown["resume_with"] == f"medref {phase} --resume {run_id}"
    code, out, err = cli("runs", "--lost")
    assert code == 0 and f"resume run {run_id}: medref {phase} --resume {run_id}" in out, err

    # a tampered resume checkpoint is refused, and the refusal changes nothing
    original = Path(path).read_bytes()
    Path(path).write_bytes(original + b"x")
    code, _, err = cli(phase, "--resume", str(run_id))
    assert code == 2 and "does not match its recorded sha256" in err and err.count("\n") == 1
    Path(path).write_bytes(original)
    # options that conflict with the recorded config are refused
    code, _, err = cli(phase, "--resume", str(run_id), "--ratio", "0.25")
    assert code == 2 and "split.ratio=0.25 conflicts with the recorded run (0.5)" in err
    assert _query(tmp_path, f"SELECT status FROM runs WHERE id = {run_id}") == [("running",)]

    resumed = _finish(_medref(tmp_path, phase, "--resume", str(run_id), "--cpu", "--json"))
    assert resumed["run_id"] == run_id
    assert {k: v for k, v in resumed.items() if k != "run_id" and k != "checkpoint" and k != "burnin_reused"} == {
        k: v for k, v in reference.items() if k != "run_id" and k != "checkpoint" and k != "burnin_reused"}
    assert _finals(tmp_path, run_id) == _finals(tmp_path, ref_id)
    history = _history(tmp_path, run_id)
    assert len({(n, s) for n, s, _ in history}) == len(history), "duplicate metric steps"
    assert history == _history(tmp_path, ref_id)
    (status, tags), = _query(tmp_path, f"SELECT status, tags FROM runs WHERE id = {run_id}")
    assert status == "finished" and json.loads(tags)["resumed"][0]["from_step"] == killed_at
    assert _query(tmp_path, f"SELECT COUNT(*) FROM artifacts WHERE run_id = {run_id} AND role = 'resume'") == [(1,)]

    run_folder, ref_folder = tmp_path / "results" / "runs" / str(run_id), tmp_path / "results" / "runs" / str(ref_id)
    assert sorted(p.name for p in run_folder.iterdir()) == ["best.pt", "last.pt"]
    best, ref_best = (torch.load(f / "best.pt", weights_only=True) for f in (run_folder, ref_folder))
    _assert_same_tensors(best["model"], ref_best["model"])
    last, ref_last = (torch.load(f / "last.pt", weights_only=True) for f in (run_folder, ref_folder))
    for key in STATE_KEYS:
        if ref_last.get(key) is not None:
            _assert_same_tensors(last[key], ref_last[key])
    moments = [s["exp_avg"] for s in last["optimizer"]["state"].values()]
    ref_moments = [s["exp_avg"] for s in ref_last["optimizer"]["state"].values()]
    assert all(torch.allclose(m, r, rtol=1e-6, atol=1e-9) for m, r in zip(moments, ref_moments, strict=True))
    # the LR schedule ticks once an epoch (train.lr_step epoch) and, for train, spans burn-in + SSL
    scheduler_ticks = {"burnin": 3, "train": 1 + 3}[phase]
    assert last["scheduler"]["last_epoch"] == ref_last["scheduler"]["last_epoch"] == scheduler_ticks

    # once finished, the run cannot be resumed again
    code, _, err = cli(phase, "--resume", str(run_id))
    assert code == 2 and f"run {run_id} is finished; a finished run cannot be resumed" in err


@pytest.fixture
def one_thread():
    """Torch on one thread while the test trains in this process (two threads crawl on a shared box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_a_disk_that_fills_up_mid_run_fails_it_in_one_line_and_it_resumes(cli, tmp_path, small_data, monkeypatch,
                                                                           one_thread):
    from medref_cli.runtime import checkpoint

    real_save, calls = checkpoint.torch.save, {"n": 0}

    def save_until_the_disk_is_full(obj, f, *args, **kwargs):
        if not hasattr(f, "write"):  # the tensor cache; checkpoints are written through a file handle
            return real_save(obj, f, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # the third resume checkpoint
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save_until_the_disk_is_full)
    args = [*PHASES["burnin"], *TINY, "--data", str(small_data), "--json"]
    code, _, err = cli(*args)
    assert code == 2 and "No space left on device" in err and err.count("\n") == 1, err
    (run_id, status, error), = _query(tmp_path, "SELECT id, status, error FROM runs WHERE kind = 'burnin'")
    assert status == "failed" and "No space left on device" in error
    folder = tmp_path / "results" / "runs" / str(run_id)
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt"]  # no temporary file left behind
    (sha,), = _query(tmp_path, f"SELECT sha256 FROM artifacts WHERE run_id = {run_id} AND role = 'resume'")
    assert file_sha256(folder / "last.pt") == sha
    assert torch.load(folder / "last.pt", weights_only=True)["position"]["step"] == 2

    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    code, out, err = cli("burnin", "--resume", str(run_id), "--json")
    assert code == 0, err
    assert json.loads(out)["run_id"] == run_id
    (status, tags), = _query(tmp_path, f"SELECT status, tags FROM runs WHERE id = {run_id}")
    (note,) = json.loads(tags)["resumed"]
    assert status == "finished" and note["status"] == "failed" and note["from_step"] == 2
    history = _history(tmp_path, run_id)
    steps = sorted(s for n, s, _ in history if n == "train_loss")
    assert steps == list(range(1, int(_finals(tmp_path, run_id)["steps"]) + 1))
