"""The one bridge between Flax NNX modules and the runtime's pytrees.

A module becomes ``(params, model_state)``: two flat dicts of arrays keyed by the variables'
paths (``"trunk/0/conv/kernel"``), which checkpoint as they are. ``params`` are the
``nnx.Param`` variables (trained by gradient); ``model_state`` is everything else (batch and
spectral-norm statistics, RNG counters). The graph definition stays in the bridge, so a task
builds its module once and merges it inside its jitted functions::

    bridge = ModuleBridge(nnx.eval_shape(lambda: Generator(cfg, rngs=nnx.Rngs(0))))
    params, state = bridge.split(Generator(cfg, rngs=nnx.Rngs(key)))      # in Task.init
    model = bridge.merge(params, state)                                     # in a loss
    y = model(x)
    new_state = bridge.model_state(model)                                   # after a forward pass
"""

from __future__ import annotations

from typing import Any, Mapping

from flax import nnx


def _key(path: tuple[Any, ...]) -> str:
  """A variable path as one string; a path element may itself be a tuple (SpectralNorm's)."""
  return "/".join(".".join(map(str, p)) if isinstance(p, tuple) else str(p) for p in path)


def _value(variable: Any) -> Any:
  return variable.get_value() if hasattr(variable, "get_value") else variable


class ModuleBridge:
  """Splits modules of one architecture into flat ``(params, model_state)`` dicts and back.

  Args:
    module: a module of the architecture, concrete or abstract (``nnx.eval_shape``).

  Raises:
    ValueError: two variable paths that map to the same key.
  """

  def __init__(self, module: nnx.Module):
    self.graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    self._params = self._paths(params)
    self._state = self._paths(rest)

  @staticmethod
  def _paths(state: nnx.State) -> dict[str, tuple[Any, ...]]:
    paths = {}
    for path, _ in nnx.to_flat_state(state):
      key = _key(path)
      if key in paths:
        raise ValueError(f"variable paths {paths[key]} and {path} both map to key {key!r}")
      paths[key] = path
    return paths

  @staticmethod
  def _flat(state: nnx.State) -> dict[str, Any]:
    return {_key(path): _value(v) for path, v in nnx.to_flat_state(state)}

  def split(self, module: nnx.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(params, model_state)`` of ``module`` as flat dicts of arrays."""
    _, params, rest = nnx.split(module, nnx.Param, ...)
    return self._flat(params), self._flat(rest)

  def params(self, module: nnx.Module) -> dict[str, Any]:
    """The trainable parameters of ``module``, flat."""
    return self._flat(nnx.state(module, nnx.Param))

  def model_state(self, module: nnx.Module) -> dict[str, Any]:
    """Everything in ``module`` that is not a parameter, flat (read it after a forward pass)."""
    return self._flat(nnx.state(module, nnx.Not(nnx.Param)))

  def merge(self, params: Mapping[str, Any], model_state: Mapping[str, Any] | None = None
            ) -> nnx.Module:
    """A module with these arrays (traceable: call it inside jitted functions).

    Raises:
      KeyError: naming missing or unexpected keys, e.g. parameters of another architecture.
    """
    model_state = {} if model_state is None else model_state
    self._check("params", params, self._params)
    self._check("model_state", model_state, self._state)
    states = [nnx.from_flat_state({self._params[k]: v for k, v in params.items()})]
    if self._state:
      states.append(nnx.from_flat_state({self._state[k]: v for k, v in model_state.items()}))
    return nnx.merge(self.graphdef, *states)

  @staticmethod
  def _check(what: str, given: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    if missing or extra:
      raise KeyError(f"{what} do not match the module: missing {missing[:5]}, unexpected "
                     f"{extra[:5]} ({len(missing)} / {len(extra)} in all)")
