"""Tiny experiment configs for the tests: embedded data, a small MLP, a few steps."""

from __future__ import annotations

from pathlib import Path

TINY = """
label = "tiny {method}"
seed = 3
[data]
name = "embedded-mnist"
ood = "embedded-notmnist"
[net]
name = "mlp"
options = {{ in_features = 784, hidden = [8], out_features = 10 }}
[method]
name = "{method}"
options = {options}
[train]
steps = {steps}
batch_size = 40
log_every = 5
checkpoint_every = {checkpoint_every}
[train.kl_schedule]
kind = "annealing"
start_epochs = 0.1
length_epochs = 0.3
[eval]
num_samples = 4
batch_size = 500
studies = false
weight_samples = 20
[eval.attacks]
num_images = 10
epsilons = [0.0, 0.1]
num_grad_samples = 2
attack_samples = 2
pgd_steps = 2
"""

BBH_OPTIONS = '{ generator = "chunked", hidden = [8, 16], kl = "entropy", num_samples = 3 }'


def write_tiny(
    folder: Path,
    name: str = "tiny.toml",
    *,
    method: str = "bbh",
    options: str = BBH_OPTIONS,
    steps: int = 30,
    checkpoint_every: int = 7,
) -> Path:
    path = folder / name
    path.write_text(
        TINY.format(method=method, options=options, steps=steps, checkpoint_every=checkpoint_every)
    )
    return path
