"""Step time of BbH with ``sigma_noise="local"``/``"flipout"`` against ``"sample"`` and MAP.

    python benchmarks/sigma_noise_step_time.py --threads 1 --repeats 30 --allow-busy

LeNet-5 on one MNIST-sized batch of 100 (``cases.nets``): MAP, BbH recommended (``sample``,
the default), BbH with the local reparameterisation trick (Kingma, Salimans and Welling 2015)
and with Flipout (Wen et al. 2018), all four interleaved round by round
(``harness.interleaved``); each ratio is the median over rounds of its time over MAP's in the
same round. Writes JSON with the machine and its load.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from cases import BBH_CONFIGS, MAP_CASE, make_training, nets

LABELS = (
    "bbh recommended",
    "bbh recommended, sigma_noise=local",
    "bbh recommended, sigma_noise=flipout",
)


def main(argv: list[str] | None = None) -> int:
    ap = harness.common_parser(__doc__ or "", "benchmarks/results/sigma_noise_step_time.json")
    ap.add_argument("--net", default="lenet")
    args = ap.parse_args(argv)
    device, load = harness.setup(args)
    net_case = nets(args.scale)[args.net]
    cases = {c.label: c for c in BBH_CONFIGS}
    steps = {"map": make_training(MAP_CASE, net_case, device, args.scale).step}
    for label in LABELS:
        steps[label] = make_training(cases[label], net_case, device, args.scale).step
    timed = harness.interleaved(
        steps, repeats=args.repeats, warmup=args.warmup, device=device, baseline="map"
    )
    for name, row in timed.items():
        ratio = f"  ratio to MAP {row['ratio']:.2f}" if "ratio" in row else ""
        print(f"{name:40s} median {row['median_s'] * 1e3:7.1f} ms{ratio}")
    record = {"net": args.net, "scale": args.scale, "threads": args.threads, "steps": timed}
    harness.write_record(args.out, record, device=device, load=load)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
