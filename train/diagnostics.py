"""Diagnostics at one point of a loss surface: gradient checks and Hessian spectra.

Every function takes a loss `loss_fn(params) -> scalar` over a params pytree and a point
`params`. They compute in float64 by default (inside `jax.enable_x64()`, params converted),
because a finite difference or a small eigenvalue in float32 says more about rounding than
about the model.

Gradient check. For sampled entries w_k of the flattened parameters, the centred difference

    g_k^num = (f(w + eps e_k) - f(w - eps e_k)) / (2 eps)        (error O(eps^2 f'''))

is compared with the analytic gradient g_k = df/dw_k (from `jax.grad`, or from a supplied
`grad_fn`, say one that runs a hand-written `custom_vjp`) by the relative error

    r_k = |g_k^num - g_k| / max(|g_k^num| + |g_k|, tiny),

and the check passes when max_k r_k <= threshold. Rounding limits what the difference can
resolve to about u |f| / eps (u: machine epsilon), so `tiny` defaults to that resolution
divided by the threshold: an entry too small to resolve passes iff it agrees to the resolution.

Hessian. H_ij = d^2 f / dw_i dw_j. At a critical point (grad f = 0), Taylor's expansion is

    f(w + v) = f(w) + 1/2 v^T H v + O(|v|^3),   v^T H v = sum_i lambda_i (u_i . v)^2,

so with every eigenvalue lambda_i > 0 the point is a local minimum, with every one < 0 a local
maximum, and with both signs a saddle point (zero eigenvalues leave the second-order test
inconclusive). The "minimum ratio" (Hung-yi Lee's lecture) is #{lambda_i > 0} / #{lambda_i}:
1 at a minimum, 1/2 at the origin of x^2 - y^2.

`hessian_spectrum` builds H (n x n) and diagonalises it: exact, for small models.
`lanczos_spectrum` never builds H; it only needs Hessian-vector products, forward-over-reverse,

    H v = d/dt grad f(w + t v) |_{t=0}      (one jvp of grad: about the cost of two gradients),

and builds an orthonormal basis Q_m of the Krylov space span{q_1, H q_1, ..., H^{m-1} q_1} in
which H is tridiagonal,

    H Q_m = Q_m T_m + beta_m q_{m+1} e_m^T,   T_m = tridiag(beta_{j-1}, alpha_j, beta_j),
    alpha_j = q_j^T H q_j,  beta_j = |H q_j - alpha_j q_j - beta_{j-1} q_{j-1}|.

The eigenvalues of T_m (Ritz values) lie inside [lambda_min, lambda_max] and converge to the
extreme eigenvalues first; at m = n they are all of H's eigenvalues. In floating point the q_j
lose orthogonality and ghost copies of converged eigenvalues appear, so every new vector is
re-orthogonalised against all previous ones (full reorthogonalisation, applied twice).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

# Defaults per dtype: (eps, threshold). eps ~ u^(1/3) balances truncation (eps^2) against
# rounding (u / eps); the thresholds sit well above what a correct gradient reaches and
# far below what a wrong factor or sign gives (1/3 for a factor of 2, 1 for a flipped sign).
_DEFAULTS = {
    np.dtype(np.float64): (1e-5, 1e-6),
    np.dtype(np.float32): (1e-3, 1e-2),
}


@contextlib.contextmanager
def _precision(x64: bool):
  if x64:
    with jax.enable_x64(True):
      yield
  else:
    yield


def _flat_loss(loss_fn: Callable, params, x64: bool):
  """(f on the flat parameter vector, the flat vector, the params as computed). In context."""
  def convert(p):
    p = jnp.asarray(p)
    return p.astype(jnp.float64) if x64 and jnp.issubdtype(p.dtype, jnp.floating) else p
  params = jax.tree.map(convert, params)
  flat, unravel = ravel_pytree(params)
  return (lambda v: loss_fn(unravel(v))), flat, params


@dataclasses.dataclass(frozen=True)
class GradientCheck:
  """The report of `gradient_check`: one row per sampled entry."""
  names: list[str]  # e.g. "['params']['Dense_0']['kernel'][3, 1]"
  numerical: np.ndarray  # centred differences
  analytic: np.ndarray  # jax.grad or the supplied grad_fn
  relative_error: np.ndarray
  max_relative_error: float
  threshold: float
  passed: bool
  eps: float
  dtype: str

  def __str__(self) -> str:
    width = max([len(n) for n in self.names] + [5])
    rows = [f'{"entry":<{width}} {"numerical":>14} {"analytic":>14} {"rel. error":>10}']
    rows += [f'{n:<{width}} {a:>14.6e} {b:>14.6e} {r:>10.2e}' for n, a, b, r in
             zip(self.names, self.numerical, self.analytic, self.relative_error)]
    verdict = 'PASSED' if self.passed else 'FAILED'
    rows.append(f'{verdict}: max relative error {self.max_relative_error:.2e} vs threshold '
                f'{self.threshold:.0e} (eps={self.eps:.0e}, {self.dtype})')
    return '\n'.join(rows)


def _sample_entries(leaves, num_entries: int, rng: np.random.Generator):
  """Flat indices and names, spread over the leaves (round robin), random within each.

  Uniform sampling over the flat vector would almost never pick a bias next to a large
  kernel; dealing the samples out leaf by leaf checks every parameter array.
  """
  pools, offset = [], 0
  for path, leaf in leaves:
    size = int(np.size(leaf))
    picks = rng.choice(size, min(size, num_entries), replace=False)
    pools.append([(offset + int(i), path, np.shape(leaf), int(i)) for i in picks])
    offset += size
  chosen = []
  for round_ in range(num_entries):
    for pool in (pools[i] for i in rng.permutation(len(pools))):
      if len(chosen) < num_entries and round_ < len(pool):
        chosen.append(pool[round_])
  chosen.sort()
  names = [jax.tree_util.keystr(path) + str([int(j) for j in np.unravel_index(i, shape)])
           for _, path, shape, i in chosen]
  return np.array([c[0] for c in chosen], np.int64), names


def gradient_check(loss_fn: Callable, params, grad_fn: Callable | None = None,
                   num_entries: int = 20, eps: float | None = None,
                   threshold: float | None = None, tiny: float | None = None, seed: int = 0,
                   x64: bool = True) -> GradientCheck:
  """Compares the gradient with centred differences on `num_entries` sampled entries.

  Args:
    loss_fn: params -> scalar loss.
    params: the point, a pytree of arrays.
    grad_fn: params -> gradient pytree (same structure); `jax.grad(loss_fn)` if None.
      Called as given: jit it yourself if it is slow to run op by op.
    num_entries: how many entries to check, dealt out over the leaves.
    eps: finite-difference step; None picks it by dtype (1e-5 in float64, 1e-3 in float32).
    threshold: the largest passing relative error; None: 1e-6 in float64, 1e-2 in float32.
    tiny: the denominator's floor; None: the difference's resolution / threshold (see above).
    seed: which entries are sampled.
    x64: compute in float64 (recommended); False keeps the params' own dtype.

  Returns:
    A `GradientCheck`; `print` it for a table.
  """
  grad_fn = grad_fn or jax.jit(jax.grad(loss_fn))
  with _precision(x64):
    f, flat, params = _flat_loss(loss_fn, params, x64)
    dtype = np.dtype(flat.dtype)
    default_eps, default_threshold = _DEFAULTS.get(dtype, _DEFAULTS[np.dtype(np.float32)])
    eps = default_eps if eps is None else eps
    threshold = default_threshold if threshold is None else threshold
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    indices, names = _sample_entries(leaves, num_entries, np.random.default_rng(seed))

    @jax.jit
    def centred(v, k):
      up, down = v.at[k].add(eps), v.at[k].add(-eps)
      # Divide by the step actually taken: w_k + eps is rounded to a representable number.
      return (f(up) - f(down)) / (up[k] - down[k])

    numerical = np.array([centred(flat, int(k)) for k in indices], np.float64)
    analytic = np.asarray(ravel_pytree(grad_fn(params))[0], np.float64)[indices]
    loss = float(jax.jit(f)(flat))

  if tiny is None:
    resolution = 10 * np.finfo(dtype).eps * max(abs(loss), 1.0) / eps
    tiny = resolution / threshold
  error = np.abs(numerical - analytic) / np.maximum(np.abs(numerical) + np.abs(analytic), tiny)
  max_error = float(np.max(error)) if error.size else 0.0
  return GradientCheck(names=names, numerical=numerical, analytic=analytic,
                       relative_error=error, max_relative_error=max_error,
                       threshold=threshold, passed=bool(max_error <= threshold),  # NaN fails
                       eps=eps, dtype=str(dtype))


def hessian_spectrum(loss_fn: Callable, params, x64: bool = True,
                     max_parameters: int = 5000) -> np.ndarray:
  """Every eigenvalue of the Hessian at `params`, ascending (builds the n x n matrix)."""
  size = sum(int(np.size(p)) for p in jax.tree.leaves(params))
  if size > max_parameters:
    raise ValueError(f'hessian_spectrum would build a {size} x {size} matrix; use '
                     f'lanczos_spectrum for models over max_parameters={max_parameters}.')
  with _precision(x64):
    f, flat, _ = _flat_loss(loss_fn, params, x64)
    hessian = np.asarray(jax.jit(jax.hessian(f))(flat), np.float64)
  return np.linalg.eigvalsh((hessian + hessian.T) / 2)  # symmetric up to rounding


def lanczos_spectrum(loss_fn: Callable, params, num_iterations: int, seed: int = 0,
                     x64: bool = True) -> np.ndarray:
  """Ritz values (ascending) of `num_iterations` Lanczos steps on the Hessian at `params`.

  Returns fewer values when the Krylov space stops growing (an invariant subspace was
  found: then the values are exact eigenvalues of H), and at most n.
  """
  with _precision(x64):
    f, w, _ = _flat_loss(loss_fn, params, x64)
    m = min(num_iterations, w.size)

    @jax.jit
    def step(q_MxN, j):
      """alpha_j and the next direction, from the basis so far (rows after j are zero)."""
      z = jax.jvp(jax.grad(f), (w,), (q_MxN[j],))[1]  # H q_j
      alpha = q_MxN[j] @ z
      # Projecting out all of Q_j removes alpha_j q_j and beta_{j-1} q_{j-1} (the three-term
      # recurrence) and the rounding-error components along older vectors; twice is enough.
      for _ in range(2):
        z = z - q_MxN.T @ (q_MxN @ z)
      return alpha, z, jnp.linalg.norm(z)

    breakdown = np.sqrt(np.finfo(w.dtype).eps)
    q = jax.random.normal(jax.random.key(seed), w.shape, w.dtype)
    q_MxN = jnp.zeros((m, w.size), w.dtype).at[0].set(q / jnp.linalg.norm(q))
    alphas, betas = [], []
    for j in range(m):
      alpha, z, beta = step(q_MxN, j)
      alphas.append(float(alpha))
      beta = float(beta)
      if j == m - 1 or beta <= breakdown * max(max(np.abs(alphas)), max(betas, default=0.0),
                                               1e-30):
        break  # done, or the Krylov space is invariant: T's eigenvalues are exact
      betas.append(beta)
      q_MxN = q_MxN.at[j + 1].set(z / beta)
  m = len(alphas)
  tridiagonal = np.diag(alphas) + np.diag(betas[:m - 1], 1) + np.diag(betas[:m - 1], -1)
  return np.linalg.eigvalsh(tridiagonal)


class CriticalPoint(NamedTuple):
  kind: str  # 'local minimum', 'local maximum', 'saddle point', 'not a critical point',
             # or 'inconclusive' (no negative and some zero eigenvalues, or the reverse)
  minimum_ratio: float  # #positive eigenvalues / #eigenvalues
  grad_norm: float
  eigenvalues: np.ndarray


def classify_critical_point(eigenvalues, grad_norm: float, tol: float = 1e-6) -> CriticalPoint:
  """Second-order test: |grad| <= tol, then the signs of the eigenvalues (|lambda| <= tol is 0)."""
  eigenvalues = np.asarray(eigenvalues, np.float64)
  positive, negative = int(np.sum(eigenvalues > tol)), int(np.sum(eigenvalues < -tol))
  ratio = positive / max(eigenvalues.size, 1)
  if grad_norm > tol:
    kind = 'not a critical point'
  elif positive and negative:
    kind = 'saddle point'  # one direction curving up and one down suffice
  elif positive == eigenvalues.size:
    kind = 'local minimum'
  elif negative == eigenvalues.size:
    kind = 'local maximum'
  else:
    kind = 'inconclusive'  # flat directions: higher-order terms decide
  return CriticalPoint(kind, ratio, float(grad_norm), eigenvalues)


def analyse_critical_point(loss_fn: Callable, params, tol: float = 1e-6,
                           x64: bool = True) -> CriticalPoint:
  """The gradient norm and the exact Hessian spectrum at `params`, classified."""
  with _precision(x64):
    f, flat, _ = _flat_loss(loss_fn, params, x64)
    grad_norm = float(jnp.linalg.norm(jax.jit(jax.grad(f))(flat)))
  return classify_critical_point(hessian_spectrum(loss_fn, params, x64), grad_norm, tol)
