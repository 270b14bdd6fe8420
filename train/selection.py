"""Testing the best evaluation's parameters (config.select_best); early stopping (config.patience).

config.select_best names the validation metrics that choose the model a run tests,
comma-separated: 'accuracy', or 'accuracy,loss' as in the GAT paper's code. Each is
maximised, except losses (names ending in 'loss', 'perplexity', 'bits_per_token', 'cer'),
which are minimised. After the evaluation at step t, with m_k(t) its metrics and b_k the
best value of each over the evaluations so far (each metric on its own):

    keep the variables of step t    if m_k(t) is at least as good as b_k for EVERY k,
    b_k <- better(b_k, m_k(t)) and wait <- 0    if it is at least as good for ANY k,
    wait <- wait + 1                            otherwise;

training stops once wait = config.patience (evaluations; 0: never). With one metric that
is: test the best evaluation, the latest of ties. The test at the end evaluates the kept
parameters and model state (batch-norm statistics), not the last step's, and logs the kept
step as `selected_step`. The kept variables and this record travel inside every regular
checkpoint (items `best` and `selection` beside `state` and `data`, one atomic Orbax
step), so a run resumed from step S holds the selection of the evaluations up to S exactly
and replays the later ones.
"""

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from train.errors import UserError

MINIMISED = ('loss', 'perplexity', 'bits_per_token', 'cer')


def minimised(name: str) -> bool:
  return name.endswith(MINIMISED)


def at_least_as_good(name: str, value: float, best: float) -> bool:
  return value <= best if minimised(name) else value >= best


class Selection:
  """The selection rule's record (JSON) and the kept variables of one run."""

  def __init__(self, config: ConfigDict):
    self.metrics = [m.strip() for m in config.get('select_best', '').split(',') if m.strip()]
    self.patience = config.get('patience', 0)
    # best: {metric: b_k}; step: the kept evaluation's; wait: evaluations since a b_k moved.
    self.record = {'metrics': self.metrics, 'best': None, 'step': None, 'wait': 0}
    self.variables = None  # {'params', 'model_state'} of record['step']

  def __bool__(self) -> bool:
    return bool(self.metrics)

  @staticmethod
  def _variables(state) -> dict:
    return {'params': state.params, 'model_state': state.model_state}

  def restore_target(self, par, state):
    """The abstract tree a checkpoint's `best` item is read into (None: not selecting)."""
    return par.restore_target(self._variables(state)) if self else None

  def restore(self, par, best) -> None:
    """Takes over a checkpoint's (variables, record), if it selected by the same metrics."""
    if not self or best is None:
      return
    variables, record = best
    if record['metrics'] != self.metrics:
      print(f'The checkpoint selected by {record["metrics"]}, this config by '
            f'{self.metrics}: the selection starts over.', flush=True)
      return
    self.record, self.variables = record, par.place_restored(variables)

  def update(self, step: int, metrics: dict, state) -> None:
    """Applies the rule to the evaluation at `step`, copying its variables if kept."""
    if not self:
      return
    missing = [m for m in self.metrics if m not in metrics]
    if missing:
      raise UserError(f'config.select_best={",".join(self.metrics)!r}: the evaluation '
                      f'reports no {missing[0]!r}; choose among {sorted(metrics)}.')
    values = {m: float(metrics[m]) for m in self.metrics}
    best = self.record['best'] or values
    good = [at_least_as_good(m, values[m], best[m]) for m in self.metrics]
    if all(good):  # copied: the train step donates (overwrites) the state's buffers
      self.variables = jax.tree.map(jnp.copy, self._variables(state))
      self.record['step'] = step
    if any(good):
      self.record['best'] = {m: values[m] if g else best[m]
                             for m, g in zip(self.metrics, good)}
      self.record['wait'] = 0
    else:
      self.record['wait'] += 1

  @property
  def stopped(self) -> bool:
    return bool(self) and 0 < self.patience <= self.record['wait']

  def checkpoint(self, par):
    """(variables, record) for Checkpointer.save, or None."""
    if self.variables is None:
      return None
    return par.checkpointable(self.variables), self.record

  def tested(self, state):
    """The state the test evaluates: the kept variables', else `state` itself."""
    if self.variables is None:
      return state
    return state.replace(**self.variables)
