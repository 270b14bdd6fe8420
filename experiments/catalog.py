"""What there is to run: experiments, models, datasets, tasks, optimizers and schedules.

  python -m experiments.catalog [--json]

Experiments are the config files in experiments/configs, each shown with the first line
of its docstring and its "Expected:" result; run one with
`python -m experiments.main --config=experiments/configs/<name>.py --workdir=W`. The
rest are the names a config field accepts (`config.model.name`, `config.dataset`,
`config.task`, `config.optimizer.name`, `config.optimizer.schedule`).
"""

import ast
import json
import pathlib
import textwrap

import nets
from absl import app, flags

from train import data, optimizers, tasks
from train import loop  # noqa: F401  (the engine imports, so registers, every task)

CONFIGS = pathlib.Path(__file__).parent / 'configs'
FLAGS = flags.FLAGS


def _first_line(doc: str | None) -> str:
  return (doc or '').strip().split('\n')[0].strip()


def expected(doc: str) -> str:
  """The docstring's "Expected:" paragraph, on one line ('' if it has none)."""
  lines = doc.splitlines()
  for i, line in enumerate(lines):
    if line.strip().startswith('Expected:'):
      paragraph = [line.strip()]
      for more in lines[i + 1:]:
        if not more.strip() or not more.startswith((' ', '\t')) and ':' in more.split()[0]:
          break
        paragraph.append(more.strip())
      return ' '.join(paragraph)[len('Expected:'):].strip()
  return ''


def experiments() -> list[dict]:
  """{name, path, summary, expected} of every config file, read without importing it."""
  found = []
  for path in sorted(CONFIGS.glob('*.py')):
    if path.name.startswith('_'):
      continue
    doc = ast.get_docstring(ast.parse(path.read_text())) or ''
    found.append({'name': path.stem, 'path': str(path.relative_to(CONFIGS.parents[1])),
                  'summary': _first_line(doc), 'expected': expected(doc)})
  return found


def catalog() -> dict:
  """Everything a config can name, by kind."""
  return {
      'experiments': experiments(),
      'models': {name: _first_line(cls.__doc__) for name, cls in sorted(nets.MODELS.items())},
      'datasets': data.names(),
      'tasks': tasks.names(),
      'optimizers': list(optimizers.OPTIMIZERS),
      'schedules': list(optimizers.SCHEDULES),
  }


def render(entries: dict, width: int = 92) -> str:
  """The catalog as text for a terminal."""
  out = ['Experiments (python -m experiments.main --config=<path> --workdir=W):']
  for e in entries['experiments']:
    out.append(f'  {e["path"]}')
    out.append(textwrap.fill(e['summary'], width, initial_indent=' ' * 4,
                             subsequent_indent=' ' * 4))
    if e['expected']:
      out.append(textwrap.fill(f'Expected: {e["expected"]}', width, initial_indent=' ' * 4,
                               subsequent_indent=' ' * 6))
  out.append('Models (config.model.name):')
  models = entries['models']
  out.extend(f'  {name:<{max(map(len, models))}}  {doc}' for name, doc in models.items())
  for kind, field in (('datasets', 'config.dataset'), ('tasks', 'config.task'),
                      ('optimizers', 'config.optimizer.name'),
                      ('schedules', 'config.optimizer.schedule')):
    out.append(textwrap.fill(f'{kind.capitalize()} ({field}): {", ".join(entries[kind])}',
                             width, subsequent_indent='  '))
  return '\n'.join(out)


def main(argv):
  del argv
  entries = catalog()
  print(json.dumps(entries) if FLAGS.json else render(entries), flush=True)


if __name__ == '__main__':
  flags.DEFINE_bool('json', False, 'Print the catalog as one JSON object.')
  app.run(main)
