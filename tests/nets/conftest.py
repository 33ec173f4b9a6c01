"""Fixtures of the net tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


