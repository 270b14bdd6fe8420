"""Exports a run's trained variables as a flat .npz, with its config beside it.

  python -m experiments.export --workdir=W [--step=N] --out=FILE.npz

FILE.npz holds the parameters and the model-state collections (batch-norm statistics),
keyed by '/'-joined paths: `params/Dense_0/kernel`, `batch_stats/...`. FILE.config.json
holds the run's config and an `export` entry: the step, the model's name and constructor
arguments, and its input shapes, so that `train.export.load_model('FILE.npz')` rebuilds
the model and its variables without the run's data:

  model, variables = train.export.load_model('FILE.npz')
  logits = model.apply(variables, inputs)

NumPy alone reads the file too: `np.load('FILE.npz')['params/Dense_0/kernel']`.
"""

import json
import pathlib

import jax
import nets
from absl import app, flags

from experiments import evaluate
from train import export as export_lib
from train import state as state_lib
from train.errors import UserError

FLAGS = flags.FLAGS


def export(workdir, out, step: int | None = None, devices=None,
           data_dir: str | None = None) -> dict:
  """Writes `out` (.npz) and its .config.json from checkpoint `step` of `workdir`."""
  out = pathlib.Path(out)
  if out.suffix != '.npz':
    raise UserError(f'--out={out} must name a .npz file, e.g. --out={out.with_suffix(".npz")}.')
  if out.parent.exists() and not out.parent.is_dir():
    raise UserError(f'--out={out}: {out.parent} is a file, not a folder; choose another path.')
  run = evaluate.load_run(workdir, step, devices, data_dir)
  exp = run.exp
  state = jax.device_get(exp.par.unreplicate(run.state))
  variables = {'params': state.params, **state.model_state}
  example = next(exp.splits.eval.eval_batches(exp.config.eval_batch_size))
  fields = nets.MODELS[exp.config.model.name].__dataclass_fields__
  meta = json.loads(exp.config.to_json_best_effort())
  meta['export'] = {
      'workdir': str(run.workdir), 'step': run.step,  # absolute, or gs://...
      'model': exp.config.model.name,
      'model_kwargs': exp.task.model_kwargs(exp.config, exp.splits.info, fields),
      'input_shapes': [[[1, *x.shape[1:]], str(x.dtype)]
                       for x in exp.task.model_inputs(example)]}
  if jax.process_index() == 0:
    export_lib.save_npz(out, variables)
    export_lib.config_path(out).write_text(
        json.dumps(meta, indent=2, default=lambda x: x.item()) + '\n')  # NumPy scalars
  return {'npz': str(out), 'config': str(export_lib.config_path(out)), 'step': run.step,
          'parameters': state_lib.parameter_count(state.params)}


def main(argv):
  del argv
  done = evaluate.cli(lambda: export(FLAGS.workdir, FLAGS.out, FLAGS.step,
                                     data_dir=FLAGS.data_dir))
  print(f'Wrote {done["npz"]} ({done["parameters"]:,} parameters, step {done["step"]}) '
        f'and {done["config"]}.', flush=True)


if __name__ == '__main__':
  evaluate.define_run_flags()
  flags.adopt_module_key_flags(evaluate)  # --help lists --workdir, --step, --data_dir
  flags.DEFINE_string('out', None, 'The .npz file to write.', required=True)
  app.run(main)
