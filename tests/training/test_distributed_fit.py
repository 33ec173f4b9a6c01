"""``bbh.training.fit`` under DDP: two CPU processes (gloo on 127.0.0.1) against one process.

One launch of ``ddp_worker.py checks`` (module fixture) serves most tests; the failure test
starts its own two processes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from ddp_launch import launch
from ddp_worker import BBH_OPTIONS, METHODS, build, data, fingerprint

from bbh.training import ShuffleSampler, fit
from bbh.training.checkpoint import TrainState


@pytest.fixture(scope="module")
def ranks_out(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ddp")
    finished = launch(["checks", str(out)], timeout=300)
    for rank, f in enumerate(finished):
        assert f.returncode == 0, f"rank {rank} failed:\n{f.stderr[-3000:]}"
    return [torch.load(out / f"checks-rank{r}.pt", weights_only=False) for r in range(2)]


def test_sampler_ranks_split_the_single_process_batch():
    single = ShuffleSampler(50, 8, torch.Generator().manual_seed(4))
    ranks = [
        ShuffleSampler(50, 8, torch.Generator().manual_seed(4), rank=r, world_size=2)
        for r in range(2)
    ]
    assert ranks[0].steps_per_epoch == single.steps_per_epoch == 6
    for _ in range(20):  # across epoch boundaries
        parts = [s.next_indices() for s in ranks]
        assert all(len(p) == 4 for p in parts)
        assert torch.equal(torch.cat(parts), single.next_indices())
    with pytest.raises(ValueError, match="does not split evenly over 3 ranks"):
        ShuffleSampler(50, 8, torch.Generator(), rank=0, world_size=3)


def test_map_distributed_step_equals_one_step_on_the_union_of_the_batches(ranks_out):
    x, y = data()
    union = torch.cat(
        [
            ShuffleSampler(
                len(x), 16, torch.Generator().manual_seed(0), rank=r, world_size=2
            ).next_indices()
            for r in range(2)
        ]
    )
    single = build("map")
    fit(single, x[union], y[union], steps=1, batch_size=16, lr=0.1, num_data=len(x))
    expected = single.state_dict()
    for out in ranks_out:
        for key, value in out["map_state"].items():
            assert torch.allclose(value, expected[key], atol=1e-6, rtol=0), key
            assert not torch.equal(value, build("map").state_dict()[key]), "no step was taken"


def test_bbh_ranks_hold_identical_parameters_after_every_step(ranks_out):
    first, second = (out["bbh_prints"] for out in ranks_out)
    assert len(first) == 5 and first == second
    assert len(set(first)) == 5, "the parameters did not change every step"


def test_bbh_loss_matches_single_process_runs_within_the_weight_noise(ranks_out):
    """The logged DDP loss (mean over the ranks) against 12 single-process runs of the same
    global batches that differ only in their weight noise. A KL counted per rank (or scaled by
    a rank's share of the data) would shift the loss by KL / N, far outside that spread."""
    x, y = data()
    runs = []
    for k in range(12):
        method = build("bbh", **BBH_OPTIONS)
        torch.manual_seed(100 + k)  # the noise only
        result = fit(method, x, y, steps=5, batch_size=32, num_data=64, log_every=1)
        runs.append(result.logs)
    ddp = ranks_out[0]["bbh_logs"]
    for row, other in zip(ddp, ranks_out[1]["bbh_logs"], strict=True):  # reduced on every rank
        assert {k: v for k, v in row.items() if k != "examples_per_s"} == {
            k: v for k, v in other.items() if k != "examples_per_s"
        }
    for step in range(5):
        single = torch.tensor([run[step]["loss"] for run in runs])
        kl_term = torch.tensor([run[step]["kl"] for run in runs]).mean() / 64
        mean, spread = single.mean().item(), single.std().item()
        assert kl_term > 4 * spread, "the check could not see a KL counted twice"
        assert abs(ddp[step]["loss"] - mean) < 4 * spread + 1e-3, (step, ddp[step], mean, spread)


@pytest.mark.parametrize("label", list(METHODS))
def test_every_method_keeps_the_ranks_identical(ranks_out, label):
    first, second = (out["method_prints"][label] for out in ranks_out)
    assert len(first) == 3 and first == second
    assert len(set(first)) == 3, "the parameters did not change every step"


def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_that_step(ranks_out):
    for out in ranks_out:
        assert out["diverged_at"] == 3
        # steps 3 and 4 were skipped on every rank: the weights are those after step 2
        assert out["diverged_prints"][1] == out["diverged_prints"][3] == out["diverged_print"]
    assert ranks_out[0]["diverged_print"] == ranks_out[1]["diverged_print"]


def test_a_stop_request_on_one_rank_stops_every_rank_at_the_same_step(ranks_out):
    steps = [out["stopped_at"] for out in ranks_out]
    assert steps[0] is not None and steps[0] == steps[1] and steps[0] <= 5
    # rank 0 alone checkpoints (at the stop)
    assert ranks_out[0]["stop_checkpoints"] == [steps[0]]
    assert ranks_out[1]["stop_checkpoints"] == []


def test_a_parameter_without_gradient_needs_find_unused_parameters(ranks_out):
    for out in ranks_out:
        assert out["unused_error"] is not None, "DDP accepted a parameter without a gradient"
        assert "distributed.find_unused_parameters = true" in out["unused_error"]
    first, second = (out["unused_prints"] for out in ranks_out)
    assert len(first) == 3 and first == second and len(set(first)) == 3


def test_resume_from_rank_0s_checkpoint_ends_bit_identical(ranks_out):
    for out in ranks_out:
        assert out["resumed_print"] == out["straight_print"]
    state: TrainState = ranks_out[0]["checkpoint_3"]
    assert state.world_size == 2 and len(state.rank_rngs) == 2
    assert not torch.equal(state.rank_rngs[0]["torch"], state.rank_rngs[1]["torch"])
    assert ranks_out[1]["checkpoint_3"] is None  # only rank 0 gets checkpoints


def test_a_two_rank_checkpoint_does_not_resume_in_one_process(ranks_out):
    x, y = data()
    method = build("bbh", **BBH_OPTIONS)
    with pytest.raises(ValueError, match=r"2 process\(es\) and this one has 1"):
        fit(method, x, y, steps=6, batch_size=16, resume=ranks_out[0]["checkpoint_3"])
    assert fingerprint(method) == fingerprint(build("bbh", **BBH_OPTIONS))  # nothing loaded


def test_a_rank_that_raises_stops_the_run_instead_of_hanging(tmp_path: Path):
    start = time.monotonic()
    finished = launch(["raise", str(tmp_path)], timeout=90)
    elapsed = time.monotonic() - start
    assert [f.returncode != 0 for f in finished] == [True, True]
    assert "rank 1 fails on purpose at step 2" in finished[1].stderr
    assert "another rank stopped or cannot be reached" in finished[0].stderr, finished[0].stderr
    assert elapsed < 90
