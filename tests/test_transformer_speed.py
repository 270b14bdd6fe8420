"""The FLOP count behind the MFU of experiments/benchmarks/transformer_speed.py, against
XLA's own count of the compiled train step (an independent computation)."""

import jax
import pytest

from experiments.benchmarks import transformer_speed as speed
from experiments.configs import bert_pretrain, shakespeare_gpt

# Widths at which matrix products dominate, as in the benchmark (1 layer, for speed).
SMALL = {'gpt': dict(model=dict(num_layers=1, num_heads=4, model_dim=128), seq_len=64,
                     vocab_size=65, batch_size=8),
         'bert': dict(model=dict(num_layers=1, num_heads=4, model_dim=128, max_len=64),
                      seq_len=64, vocab_size=2000, batch_size=8, predictions=10)}


@pytest.mark.parametrize('name', ['gpt', 'bert'])
def test_analytic_training_flops_match_xla_count(name):
  preset = SMALL[name]
  config = (shakespeare_gpt if name == 'gpt' else bert_pretrain).get_config()
  config.model.update(preset['model'], dropout_rate=0.0)
  config.batch_size = preset['batch_size']
  batch, info = speed.random_batch(name, preset, config.batch_size)
  _, compiled, _, _ = speed.engine_step(config, info, batch, jax.devices()[:1])
  # The optimizer, layer norms, softmax and loss add a few elementwise FLOPs per
  # parameter and activation that the analytic count leaves out.
  assert speed.xla_flops(compiled, 1) == pytest.approx(speed.training_flops(name, config, preset),
                                                    rel=0.1)
