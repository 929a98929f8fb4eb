"""Domain randomisation of friction and masses for the Brax env (an option of PPO training).

The floor has contact priority in ``go1.xml``, so its sliding friction is the
friction of every foot contact; randomising it randomises the ground. Masses:
every body mass and rotational inertia is scaled by one factor (the same
shapes, denser), and a payload is added to the trunk as a point mass at its
centre of mass (mass only).
The derived constants MuJoCo computes at compile time (``body_invweight0``,
used only to scale constraint regularisation) are left as compiled, as in
Brax's and MuJoCo Playground's randomisers.

Each env draws its own parameters at reset and after a fall
(:class:`envs.brax_env.Go1Env` keeps them in ``State.info["physics"]``); the
MJX model of a step is the nominal one with those fields replaced
(:func:`randomized_model`), so one compiled step serves every draw.
"""

from __future__ import annotations

import dataclasses

import jax
from mujoco import mjx

from envs import physics
from envs.physics import PHYSICS, PhysicsConfig

TRUNK_BODY = "trunk"
FLOOR_GEOM = "floor"


@dataclasses.dataclass(frozen=True)
class DomainRandomization:
    """Uniform ranges of the randomised physics parameters.

    Attributes:
      friction: sliding friction coefficient of the floor (nominal 0.6).
      mass_scale: factor applied to every body mass (nominal 1).
      payload: mass (kg) added to the trunk (nominal 0).
    """

    friction: tuple[float, float] = (0.4, 1.0)
    mass_scale: tuple[float, float] = (0.9, 1.1)
    payload: tuple[float, float] = (-0.5, 1.5)

    def __post_init__(self):
        for name in ("friction", "mass_scale", "payload"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"DomainRandomization.{name}: low {lo} > high {hi}")
        if self.friction[0] <= 0 or self.mass_scale[0] <= 0:
            raise ValueError(f"DomainRandomization: friction and mass_scale must stay positive, got "
                             f"{self.friction}, {self.mass_scale}")

    def sample(self, rng: jax.Array) -> dict[str, jax.Array]:
        """One draw: ``{"friction": (), "mass_scale": (), "payload": ()}`` float32 scalars."""
        keys = jax.random.split(rng, 3)
        return {name: jax.random.uniform(k, (), minval=lo, maxval=hi)
                for k, (name, (lo, hi)) in zip(keys, ((n, getattr(self, n)) for n in ("friction", "mass_scale",
                                                                                         "payload")))}


def randomized_model(model: mjx.Model, params: dict[str, jax.Array], config: PhysicsConfig = PHYSICS) -> mjx.Model:
    """``model`` with the floor friction, body masses and trunk payload of ``params`` (jittable, vmappable)."""
    m = physics.load_mj_model(config)
    floor, trunk = m.geom(FLOOR_GEOM).id, m.body(TRUNK_BODY).id
    friction = model.geom_friction.at[floor, 0].set(params["friction"])
    mass = model.body_mass * params["mass_scale"]
    mass = mass.at[trunk].add(params["payload"])
    inertia = model.body_inertia * params["mass_scale"]
    return model.replace(geom_friction=friction, body_mass=mass, body_inertia=inertia)

