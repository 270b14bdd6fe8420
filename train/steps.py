"""The standard train and eval steps: pure functions, jitted (or pmapped) once by the loop.

    train_step(state, batch) -> (state, metric sums)
    eval_step(state, batch)  -> metric sums

The step's randomness is `state.step_rng()`, a function of (seed, step), so the rng
argument of the classic `(state, batch, rng)` signature lives in the state and is
checkpointed with it. Under `jit` over a mesh the batch axis is sharded and every mean
is already global. Under `pmap` (`axis_name` set) each device holds a slice: gradients
and batch statistics are averaged and metric sums added across the named axis, which
makes the update identical to the single-device one.
"""

import jax
import optax

from train import losses


def make_train_step(task, l2: float = 0.0, axis_name: str | None = None):
  if task.train_step is not None:
    return task.train_step

  def train_step(state, batch):
    def objective(params):
      loss, aux = task.loss(state, params, batch, state.step_rng(), train=True)
      return loss + l2 * losses.l2_penalty(params), aux

    grads, (sums, model_state) = jax.grad(objective, has_aux=True)(state.params)
    if axis_name is not None:
      grads, model_state = jax.lax.pmean((grads, model_state), axis_name)
      sums = jax.lax.psum(sums, axis_name)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    sums['grad_norm'] = optax.tree.norm(grads)  # summed over steps; report divides
    sums['steps'] = 1
    new_state = state.replace(step=state.step + 1,
                              params=optax.apply_updates(state.params, updates),
                              opt_state=opt_state, model_state=model_state)
    return new_state, sums

  return train_step


def make_eval_step(task, axis_name: str | None = None):
  def eval_step(state, batch):
    sums = task.eval_sums(state, batch)
    return sums if axis_name is None else jax.lax.psum(sums, axis_name)
  return eval_step


@jax.jit
def _add(total, new):
  return jax.tree.map(lambda a, b: a + b, total, new)


def add_sums(total, new):
  """Accumulates metric sums on device in one jitted dispatch; `total` is None at first."""
  return new if total is None else _add(total, new)
