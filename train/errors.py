"""The project's own errors: mistakes a user can fix, explained in one sentence.

`experiments/main.py` prints a `UserError` as one line and exits; every other exception
(a bug, a JAX shape error, an Orbax failure) keeps its traceback.
"""


class UserError(ValueError):
  """A config value, data file or command a run cannot use; names the field and the fix."""
