"""Per-dimension state normaliser, fitted on heading-frame windows and stored with the model.

Quaternion handling. The four base-quaternion dimensions share ONE scale (the
root-mean-square of their four standard deviations) while keeping per-dimension
means, so the normalised distance between two orientations is their chordal
quaternion distance over a constant: no component (in particular w, which is
nearly constant, about 1, in the heading frame) is blown up, and the loss
treats every direction of rotation alike. The normaliser never creates a
physics state: states fed to the simulator are always the given x0 and the
states of rollouts. Where a state is decoded from normalised space anyway
(:meth:`Normalizer.denormalize`, e.g. for a state-space baseline), the
quaternion block is projected back onto the unit sphere, so the result is
always a valid rotation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

import flax.struct
import numpy as np

if TYPE_CHECKING:
    import jax

from envs.physics import BASE_ANGVEL, BASE_LINVEL, BASE_QUAT, JOINT_VEL, STATE_DIM

MIN_STD = 1e-2
"""Floor on a scale in position units (m, rad, quaternion): a near-constant dimension cannot blow up."""

MIN_VELOCITY_STD = 1e-1
"""Floor on a velocity scale (m/s, rad/s).

Kinematic gaits have exactly zero vertical velocity and roll and pitch rates;
the physics cannot (a trotting Go1 pitches at about 0.1 rad/s). With the
position floor there, those three dimensions weighed 10^4 times their raw
squared error and the loss of DynaFlow on the kinematic set started at 171,
against 1.8 on the expert set. 0.1 is about the smallest velocity error that
shows in a gait."""

STATE_MIN_STD = np.full(STATE_DIM, MIN_STD, np.float32)
STATE_MIN_STD[BASE_LINVEL] = STATE_MIN_STD[BASE_ANGVEL] = STATE_MIN_STD[JOINT_VEL] = MIN_VELOCITY_STD
"""(37,) default floors of :meth:`Normalizer.fit`: :data:`MIN_STD` for positions, :data:`MIN_VELOCITY_STD`
for velocities."""

Array = Union[np.ndarray, "jax.Array"]
"""A numpy or JAX array."""

_QUAT_MASK = np.zeros(STATE_DIM, np.float32)
_QUAT_MASK[BASE_QUAT] = 1.0


@flax.struct.dataclass
class Normalizer:
    """z = (x - mean) / std per state dimension; a pytree, so it can be a jit argument.

    Attributes:
      mean: (37,) per-dimension mean (state units).
      std: (37,) per-dimension scale (state units), >= the floor used in :meth:`fit`;
        the four quaternion entries are equal.
    """

    mean: Array
    std: Array

    @classmethod
    def fit(cls, windows: np.ndarray, min_std: float | np.ndarray = STATE_MIN_STD) -> Normalizer:
        """Statistics of every state of every window.

        Args:
          windows: (N, H+1, 37) heading-frame windows (any (..., 37) array works).
          min_std: floor on each scale, a scalar or (37,) (default :data:`STATE_MIN_STD`).

        Returns:
          The normaliser, float32.
        """
        x = np.asarray(windows, np.float64)
        if x.shape[-1] != STATE_DIM or x.size < 2 * STATE_DIM:
            raise ValueError(f"windows must have shape (..., {STATE_DIM}) with at least 2 states, got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("windows contain NaN or inf")
        x = x.reshape(-1, STATE_DIM)  # (N * (H+1), 37)
        mean, var = x.mean(axis=0), x.var(axis=0)  # (37,)
        std = np.sqrt(var)
        std[BASE_QUAT] = np.sqrt(var[BASE_QUAT].mean())  # one shared scale for (w, x, y, z)
        return cls(mean=mean.astype(np.float32), std=np.maximum(std, min_std).astype(np.float32))

    def normalize(self, x: Array) -> Array:
        """(..., 37) states -> (..., 37) normalised states; numpy or JAX in, same out."""
        return (x - self.mean) / self.std

    def denormalize(self, z: Array) -> Array:
        """(..., 37) normalised states -> (..., 37) states with unit quaternions.

        The affine inverse of :meth:`normalize`, followed by dividing the
        quaternion block by its norm (a no-op on the image of a valid state).
        """
        x = z * self.std + self.mean
        q = x[..., BASE_QUAT]  # (..., 4)
        norm = ((q * q).sum(axis=-1, keepdims=True) + 1e-12) ** 0.5  # (..., 1)
        return x / (1.0 + _QUAT_MASK * (norm - 1.0))  # divides the quaternion entries only

    def to_dict(self) -> dict[str, list[float]]:
        """Plain lists for a JSON checkpoint; :meth:`from_dict` inverts it."""
        return {"mean": np.asarray(self.mean).tolist(), "std": np.asarray(self.std).tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> Normalizer:
        """Rebuilds a normaliser from :meth:`to_dict`; checks the shapes and that std > 0."""
        mean, std = np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32)
        if mean.shape != (STATE_DIM,) or std.shape != (STATE_DIM,):
            raise ValueError(f"normaliser mean and std must have shape ({STATE_DIM},), got {mean.shape}, {std.shape}")
        if not np.all(std > 0):
            raise ValueError(f"normaliser std must be positive, got min {std.min()}")
        return cls(mean=mean, std=std)
