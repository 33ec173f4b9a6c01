"""Suite-wide settings: tiny tensors run far faster on one thread, above all on a shared machine."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
