"""Every test runs on CPU with 8 simulated devices, and rank promotion raises."""

import os
import pathlib

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402  (must follow the environment above)
import pytest  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'data'


@pytest.fixture
def shared_data():
  """Path to ../shared/data; skips the test on machines that do not have it."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f'{SHARED_DATA} is absent (it only exists on the project machines).')
  return SHARED_DATA
