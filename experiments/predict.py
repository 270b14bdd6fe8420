"""Predictions of a trained run on new inputs: one JSON object per input.

  python -m experiments.predict --workdir=W --inputs=FILE[,FILE...] [--step=N]
  python -m experiments.predict --workdir=W --text="a sentence" [--text="another"]

Inputs are read like the run's training data:
  .npy    an array of examples: [N, 2] for spirals; [N, 28, 28, 1], [N, 28, 28] or
          [N, 784] for MNIST (integer pixels 0-255 are scaled to [0, 1] as in training);
          token ids [N, L] for a text dataset
  .png .jpg .jpeg .bmp .gif   one image each, made grayscale and resized to the input
  .txt    one example per line (text datasets), tokenized with the run's W/tokenizer
          and padded or cut to the dataset's max_len; --text gives lines directly
The run is restored like experiments.evaluate does (--step, --data_dir) and its task's
`predict` runs under jit. Each object names its `input` and holds the task's outputs:
for a classifier `prediction` (the class index), `class_name` where the dataset names
its classes, and `probabilities`.
"""

import collections
import json
import pathlib

import numpy as np
from absl import app, flags

from experiments import evaluate
from train import checkpoint
from train.data.pipeline import pad_rows
from train.errors import UserError

FLAGS = flags.FLAGS
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.gif')
SUFFIXES = ('.npy', '.txt') + IMAGE_SUFFIXES


def check_files(paths) -> list[pathlib.Path]:
  """The input files, each existing and of a kind this tool reads (before any restore)."""
  files = [pathlib.Path(p) for p in paths]
  for path in files:
    if path.suffix.lower() not in SUFFIXES:
      raise UserError(f'--inputs={path} is not one of the kinds predict reads '
                      f'({", ".join(SUFFIXES)}); convert it to one of them.')
    if not path.is_file():
      raise UserError(f'--inputs={path} does not exist; pass a file that does.')
  return files


def _as_examples(array: np.ndarray, shape: tuple, what: str) -> np.ndarray:
  """[N, *shape] from examples of that shape, flattened ones, or a single example."""
  size = int(np.prod(shape))
  if array.ndim >= 1 and int(np.prod(array.shape[1:])) == size:
    return array.reshape((len(array),) + shape)
  if array.size == size:
    return array.reshape((1,) + shape)
  raise UserError(f'{what} has shape {list(array.shape)}, not examples of shape '
                  f'{list(shape)} as the run was trained on; save an array of shape '
                  f'[N, {", ".join(map(str, shape))}] (or [N, {size}]).')


def read_image(path: pathlib.Path, shape: tuple) -> np.ndarray:
  """An image file as the training data holds images: float32 in [0, 1], `shape`."""
  from PIL import Image, UnidentifiedImageError
  height, width, channels = shape
  try:
    with Image.open(path) as image:
      image = image.convert('L' if channels == 1 else 'RGB')
      if image.size != (width, height):
        image = image.resize((width, height))
      pixels = np.asarray(image, np.float32) / 255.0
  except (UnidentifiedImageError, OSError) as error:
    raise UserError(f'--inputs={path} is not a readable image ({error}); save it as PNG '
                    'or JPEG.') from None
  return pixels.reshape(shape)


def fit_tokens(ids: np.ndarray, info: dict) -> np.ndarray:
  """Token ids as the dataset batches them: padded or cut to max_len (LM: the last
  seq_len tokens)."""
  if 'max_len' in info:
    return pad_rows(ids[:info['max_len']], info['max_len'])
  return ids[-info['seq_len']:] if 'seq_len' in info else ids


def read_inputs(files, texts, run) -> tuple[list[str], list[np.ndarray]]:
  """(names, examples): every input as one model input without its batch axis."""
  config, info = run.exp.config, run.exp.splits.info
  tokenizer = info.get('tokenizer')
  example = next(run.exp.splits.eval.eval_batches(config.eval_batch_size))['inputs']
  shape, dtype = tuple(example.shape[1:]), example.dtype
  names, examples = [], []

  def add_lines(lines, what):
    if tokenizer is None:
      raise UserError(f'{what} is text, but the run in {run.workdir} was trained on '
                      f'{config.dataset}, whose inputs are arrays of shape {list(shape)}; '
                      'pass them as a .npy file.')
    lines = [line.strip() for line in lines if line.strip()]
    names.extend(lines)
    examples.extend(fit_tokens(ids, info) for ids in tokenizer.encode_batch(lines))

  for path in files:
    suffix = path.suffix.lower()
    if suffix == '.txt':
      add_lines(path.read_text().splitlines(), f'--inputs={path}')
    elif suffix in IMAGE_SUFFIXES:
      if len(shape) != 3:
        raise UserError(f'--inputs={path} is an image, but the run in {run.workdir} was '
                        f'trained on {config.dataset}, whose inputs have shape '
                        f'{list(shape)}; pass them as a .npy file.')
      names.append(str(path))
      examples.append(read_image(path, shape).astype(dtype))
    else:
      try:
        array = np.load(path, allow_pickle=False)
      except (ValueError, OSError) as error:
        raise UserError(f'--inputs={path} is not a .npy array of numbers '
                        f'({checkpoint.one_line(error, 80)}); write one with numpy.save.'
                        ) from None
      if tokenizer is not None:
        if not np.issubdtype(array.dtype, np.integer):
          raise UserError(f'--inputs={path} holds {array.dtype} values, but a text run takes '
                          'token ids (integers); pass a .txt file to tokenize text.')
        if array.size and (array.min() < 0 or array.max() >= tokenizer.vocab_size):
          raise UserError(f'--inputs={path} holds token ids outside 0..'
                          f'{tokenizer.vocab_size - 1}, the run\'s vocabulary; encode the text '
                          f'with the tokenizer in {run.workdir}/tokenizer, or pass a .txt.')
        rows = [fit_tokens(np.asarray(r, np.int32), info) for r in np.atleast_2d(array)]
      else:
        scale = 255.0 if len(shape) == 3 and np.issubdtype(array.dtype, np.integer) else 1.0
        rows = list((_as_examples(array, shape, f'--inputs={path}') / scale).astype(dtype))
      names.extend(f'{path}[{i}]' for i in range(len(rows)))
      examples.extend(rows)
  if texts:
    add_lines(texts, '--text')
  if not examples:
    raise UserError('The inputs hold no examples; pass --inputs=FILE with at least one.')
  return names, examples


def predict_examples(run, examples: list[np.ndarray]) -> list[dict]:
  """The task's `predict` outputs for each example, batched by shape, in input order."""
  exp = run.exp
  predict_step = exp.par.compile(lambda state, batch: exp.task.predict(state, batch),
                                 run.state, False)
  cap, shards = exp.config.eval_batch_size, exp.par.num_batch_shards
  by_shape = collections.defaultdict(list)
  for i, x in enumerate(examples):
    by_shape[x.shape].append(i)
  results = [None] * len(examples)
  for rows in by_shape.values():
    for start in range(0, len(rows), cap):
      chunk = rows[start:start + cap]
      size = min(cap, -(-len(chunk) // shards) * shards)
      batch = {'inputs': pad_rows(np.stack([examples[i] for i in chunk]), size),
               'mask': pad_rows(np.ones(len(chunk), np.float32), size)}
      try:
        out = predict_step(run.state, exp.par.place_batch(batch, size))
      except NotImplementedError as error:
        raise UserError(f'config.task={exp.config.task!r} of the run in {run.workdir} '
                        f'cannot predict ({error}); give its Task a `predict` method.'
                        ) from None
      except KeyError as error:
        raise UserError(f'config.task={exp.config.task!r} predicts from the batch field '
                        f'{error} too, which predict cannot read from files yet.') from None
      out = exp.par.host_examples(out)
      for j, i in enumerate(chunk):
        results[i] = {k: np.asarray(v[j]) for k, v in out.items()}
  return results


def describe(outputs: dict, info: dict) -> dict:
  """JSON-ready outputs, with class names and decoded tokens where the dataset has them."""
  described = {}
  for key, value in outputs.items():
    described[key] = value.tolist()
    if key == 'prediction' and 'class_names' in info and value.ndim == 0:
      described['class_name'] = info['class_names'][int(value)]
    if 'token' in key and 'tokenizer' in info and np.issubdtype(value.dtype, np.integer):
      described[f'{key}_text'] = info['tokenizer'].decode(np.atleast_1d(value).tolist())
  return described


def predict(workdir, inputs=(), texts=(), step: int | None = None, devices=None,
            data_dir: str | None = None) -> list[dict]:
  """{input, <task outputs>} for every example of `inputs` (files) and `texts`."""
  files = check_files(inputs)
  if not files and not texts:
    raise UserError('Nothing to predict: pass --inputs=FILE (.npy, an image or .txt) or '
                    '--text="...".')
  run = evaluate.load_run(workdir, step, devices, data_dir)
  names, examples = read_inputs(files, list(texts), run)
  info = run.exp.splits.info
  return [{'input': name, **describe(out, info)}
          for name, out in zip(names, predict_examples(run, examples))]


def main(argv):
  del argv
  results = evaluate.cli(lambda: predict(FLAGS.workdir, FLAGS.inputs or (), FLAGS.text or (),
                                         FLAGS.step, data_dir=FLAGS.data_dir))
  for result in results:
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
  evaluate.define_run_flags()
  flags.adopt_module_key_flags(evaluate)  # --help lists --workdir, --step, --data_dir
  flags.DEFINE_list('inputs', None, 'Input files: .npy arrays, images, or .txt (one '
                    'example per line), comma-separated.')
  flags.DEFINE_multi_string('text', None, 'An example given as text (repeatable).')
  app.run(main)
