"""The sequence-net benchmark at tiny sizes: it runs, and its record says what auto picks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import sequence_nets  # noqa: E402


def test_sequence_nets_records_loop_vmap_and_the_lstm_step(tmp_path):
    out = tmp_path / "sequence_nets.json"
    argv = ["--scale", "tiny", "--repeats", "1", "--warmup", "0", "--threads", "1"]
    assert sequence_nets.main([*argv, "--allow-busy", "--samples", "2", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["machine"]["threads"] == 1 and record["scale"] == "tiny"
    (row,) = record["transformer"]["rows"]
    assert row["S"] == 2 and row["shared"]["auto"] == "loop"  # attention loops on a CPU
    assert row["shared"]["loop_s"] > 0 and row["split"]["vmap_s"] > 0
    lstm = record["lstm"]
    assert lstm["bbh"]["generated_D"] > lstm["bbh_embedding_point"]["generated_D"]
    assert lstm["map_step_s"] > 0 and lstm["bbh"]["over_map"] > 0
