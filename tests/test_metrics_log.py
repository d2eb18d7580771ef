"""The training log's progress figures, on a clock the test sets."""

import json
import types

from reidjax.training import metrics_log
from reidjax.training.metrics_log import MetricsLog

METRICS = {"loss/total": 1.0, "accuracy": 0.5, "lr": 1e-3}


def test_clips_per_s_and_eta_leave_out_what_came_before_restart_clock(
    monkeypatch, tmp_path, capsys
):
    """The train loop restarts the clock once the step is compiled: the first progress
    line's clips/s and ETA count the steps' time only, not the 50 s of compilation."""
    now = [0.0]
    monkeypatch.setattr(metrics_log, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    log = MetricsLog(str(tmp_path), total=10, global_batch=8, start=0)
    now[0] = 50.0  # compiling
    log.restart_clock()
    now[0] = 52.0  # two steps of 1 s: 8 steps left, 8 s
    log.write(2, METRICS)
    assert "step 2/10" in capsys.readouterr().out.splitlines()[-1]
    now[0] = 56.0  # two steps of 2 s: 6 steps left, 12 s
    log.write(4, METRICS)
    assert capsys.readouterr().out.strip().endswith("4.0 clips/s  ETA 0.2 min")
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["steps_per_s"], r["clips_per_s"]) for r in rows] == [
        (2, 1.0, 8.0),
        (4, 0.5, 4.0),
    ]
