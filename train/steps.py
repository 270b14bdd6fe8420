"""The standard train and eval steps: pure functions, jitted (or pmapped) once by the loop.

    train_step(state, batch) -> (state, metric sums)
    eval_step(state, batch)  -> tasks.EvalOutput

The step's randomness is `state.step_rng()`, a function of (seed, step), so the rng
argument of the classic `(state, batch, rng)` signature lives in the state and is
checkpointed with it. Under `jit` over a mesh the batch axis is sharded and every sum is
already global. Under `pmap` (`axis_name` set) each device holds a slice: it folds its
device index into the key (so replicas draw different dropout masks), divides its loss
sum by the weight summed over every device (so the gradient is the global mean's even
when per-device masks differ), and sums gradients and metric sums across the axis.
"""

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from train import losses


def device_rng(rng, axis_name: str | None):
  """A key of this replica's own under pmap; the key itself under jit."""
  return rng if axis_name is None else jax.random.fold_in(rng, jax.lax.axis_index(axis_name))


def global_sum(x, axis_name: str | None):
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def make_train_step(task, config: ConfigDict, axis_name: str | None = None):
  """The task's own step if it has one, else the standard step below."""
  custom = task.make_train_step(config, axis_name)
  if custom is not None:
    return custom
  l2 = config.l2

  def train_step(state, batch):
    rng = device_rng(state.step_rng(), axis_name)

    def objective(params):
      loss_sum, aux = task.loss(state, params, batch, rng, train=True)
      total_weight = global_sum(jax.lax.stop_gradient(aux.weight), axis_name)
      return loss_sum / jnp.maximum(total_weight, 1.0), aux

    (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    loss, grads, sums = global_sum((loss, grads, aux.sums), axis_name)
    model_state = (aux.model_state if axis_name is None
                   else jax.lax.pmean(aux.model_state, axis_name))
    if l2:  # the gradient of l2 * (1/2)||W||^2, weights only, added once (not per replica)
      grads = jax.tree.map(lambda g, p: g + l2 * p, grads,
                           jax.grad(losses.l2_penalty)(state.params))
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    sums['grad_norm'] = optax.tree.norm(grads)  # summed over steps; the loop divides
    sums['steps'] = 1
    # A NaN or Inf loss or gradient never reaches the state: the update is skipped (the
    # step still counts, so data and randomness move on) and counted for the loop.
    finite = jnp.isfinite(loss) & jnp.isfinite(sums['grad_norm'])
    sums['nonfinite_steps'] = 1 - finite.astype(jnp.int32)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_state = state.replace(
        step=state.step + 1,
        params=keep(optax.apply_updates(state.params, updates), state.params),
        opt_state=keep(opt_state, state.opt_state),
        model_state=keep(model_state, state.model_state))
    return new_state, sums

  return train_step


def make_eval_step(task, axis_name: str | None = None):
  def eval_step(state, batch):
    out = task.eval_batch(state, batch)
    return out._replace(sums=global_sum(out.sums, axis_name))
  return eval_step


@jax.jit
def _add(total, new):
  return jax.tree.map(lambda a, b: a + b, total, new)


def add_sums(total, new):
  """Accumulates metric sums on device in one jitted dispatch; `total` is None at first."""
  if total is None or new is None:
    return new if total is None else total
  return _add(total, new)
