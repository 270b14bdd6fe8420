"""A character-level GPT on Tiny Shakespeare: nanoGPT's CPU configuration.

4 layers, 4 heads, width 128, context 64, batch 12, 2,000 AdamW steps at learning rate
1e-3 (cosine decay to 1e-4 after 100 warmup steps), no dropout.

Command:
  python -m experiments.main --config=experiments/configs/shakespeare_gpt.py \
      --config.data_dir=../shared/data/tinyshakespeare --workdir=workdirs/shakespeare_gpt
Expected: validation loss <= 1.88 nats per character (nanoGPT reports about 1.88 for
this configuration). Measured: validation 1.772 and test 1.813 nats (2.62 bits) per
character at step 2,000; 810,752 parameters; 84 s on 2 CPU cores.
"""

from ml_collections import ConfigDict, config_dict

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'tiny_shakespeare'
  c.data = ConfigDict({'tokenizer': 'char', 'seq_len': 64,
                       'tokenizer_dir': config_dict.placeholder(str)})
  c.task = 'language_model'
  c.model = ConfigDict({'name': 'gpt', 'num_layers': 4, 'num_heads': 4, 'model_dim': 128,
                        'dropout_rate': 0.0, 'positional': 'learned',
                        # nets/scale.py: bfloat16 computation, remat, scanned blocks
                        'dtype': 'float32', 'remat': 'none', 'scan_layers': False})
  c.optimizer.update(name='adamw', learning_rate=1e-3, b2=0.99, weight_decay=0.1,
                     schedule='cosine', warmup_steps=100, end_factor=0.1,
                     clip_global_norm=1.0)
  c.batch_size = 12
  c.eval_batch_size = 96
  c.num_steps = 2000
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  return c
