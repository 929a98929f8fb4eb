"""``load_policy(path, **overrides)``: the closed-loop controller of any checkpoint, chosen by its kind.

=============  =====================================================  ============================================
kind           controller                                             overrides (keyword arguments)
=============  =====================================================  ============================================
``dynaflow``   :class:`dynaflow_policy.policy.DynaFlowPolicy`         execute_steps, ode_steps, ensemble, seed,
                                                                      command, gait, replan_on_change, physics
``state_flow`` :class:`dynaflow_policy.baselines.policy.              execute_steps, ode_steps, seed, command,
               StateFlowIDPolicy`                                     gait, replan_on_change
``ppo``        :class:`dynaflow_policy.experts.policy.PPOExpert`      none (deterministic, no plan)
=============  =====================================================  ============================================

The kind is :func:`dynaflow_policy.checkpoint.checkpoint_kind` (the ``kind`` field
of ``config.json``, or an older checkpoint's marker). ``execute_steps`` and
``ode_steps`` default to the checkpoint's ``policy_defaults``. Every controller
has ``act(obs (44,) or (N, 44))`` and ``reset(mask=None, seed=None)``. Only the
module of the kind found is imported.
"""

from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING, Any, Union

from dynaflow_policy import checkpoint

if TYPE_CHECKING:
    from dynaflow_policy.baselines.policy import StateFlowIDPolicy
    from dynaflow_policy.experts.policy import PPOExpert
    from dynaflow_policy.policy import DynaFlowPolicy

Policy = Union["DynaFlowPolicy", "StateFlowIDPolicy", "PPOExpert"]
"""What :func:`load_policy` returns."""


def _check_overrides(controller: type, overrides: dict[str, Any], kind: str, path: str) -> None:
    """TypeError naming every override that ``controller``'s constructor does not take as a keyword."""
    taken = [name for name, p in inspect.signature(controller.__init__).parameters.items()
             if p.kind == inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(overrides) - set(taken))
    if unknown:
        raise TypeError(f"{path} is a {kind!r} checkpoint ({controller.__name__}), which takes no "
                        f"{', '.join(map(repr, unknown))}; its overrides are {taken or 'none'}")


SAMPLER_OVERRIDES = ("ode_steps", "execute_steps", "ensemble")
"""The sampler settings of a DynaFlow or state-flow checkpoint that an eval CLI may override."""


def sampler_overrides(args: Any) -> dict[str, int]:
    """The sampler overrides an eval CLI's parsed ``args`` set: its fields of ``SAMPLER_OVERRIDES`` that are not None."""
    return {name: getattr(args, name) for name in SAMPLER_OVERRIDES if getattr(args, name) is not None}


def load_policy(path: str | os.PathLike, **overrides: Any) -> Policy:
    """The controller of the checkpoint at ``path``.

    Args:
      path: a checkpoint directory (shipped, exported or a step), a directory of step
        directories, or a run's work directory (its newest checkpoint under ``checkpoints/``).
      **overrides: keyword arguments of the controller's constructor, e.g. ``execute_steps=8``,
        ``ode_steps=10``, ``seed=3``, ``command=(0.5, 0.0, 0.0)``, ``gait="trot"``.

    Returns:
      A ``DynaFlowPolicy``, ``StateFlowIDPolicy`` or ``PPOExpert``.

    Raises:
      CheckpointError: no checkpoint at ``path`` (naming what was looked for), an unknown kind
        (naming the known ones), or a missing, truncated, corrupt or other-physics checkpoint.
      TypeError: an override the controller does not take (naming it and those it takes).
      ValueError: an override out of range (e.g. ``execute_steps`` beyond the plan horizon).
    """
    kind = checkpoint.checkpoint_kind(path)
    resolved = checkpoint.resolve(path)
    if kind == "ppo":
        from dynaflow_policy.experts.policy import PPOExpert, load_expert

        _check_overrides(PPOExpert, overrides, kind, os.fspath(path))
        return load_expert(resolved)
    if kind == "state_flow":
        from dynaflow_policy.baselines.policy import StateFlowIDPolicy as controller
    else:
        from dynaflow_policy.policy import DynaFlowPolicy as controller
    _check_overrides(controller, overrides, kind, os.fspath(path))
    return controller.from_checkpoint(resolved, **overrides)


def parse_variant(text: str, option: str = "--variant") -> tuple[str, str, dict[str, int | float | bool | str]]:
    """``NAME=PATH[:key=value,...]`` (NAME without "=") -> (name, path, :func:`load_policy` overrides with int /
    float / bool (``true`` / ``false``) / str values); a ValueError names ``option`` (the CLI option the text came
    from)."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"{option} must be NAME=PATH[:key=value,...], got {text!r}")
    path, _, options = rest.partition(":")
    overrides: dict[str, int | float | bool | str] = {}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{option} {name}: option {item!r} is not key=value")
        if value.lower() in ("true", "false"):
            overrides[key] = value.lower() == "true"
            continue
        for kind in (int, float):
            try:
                overrides[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            overrides[key] = value
    return name, path, overrides
