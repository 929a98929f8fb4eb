"""The locomotion task shared by the Brax env and the Gymnasium env.

Velocity commands, gait labels, named reward terms and the fall test. Every
function takes an array namespace ``xp`` (``numpy`` or ``jax.numpy``) so the
Brax env (jitted) and the Gymnasium env (numpy) compute the same numbers from
the same code.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np

from envs.physics import (BASE_ANGVEL, BASE_LINVEL, BASE_POS, BASE_QUAT, FOOT_CONTACT_HEIGHT, JOINT_POS, JOINT_VEL,
                          PHYSICS, STATE_DIM, PhysicsConfig, motor_targets)

GAITS: tuple[str, ...] = ("trot", "pace", "bound", "pronk")
COMMAND_DIM = 3  # (vx m/s, vy m/s, yaw rate rad/s), body frame
INIT_JOINT_NOISE = 0.1
"""Default reset perturbation: joint angles are home +- U(this) rad, clipped to the joint ranges."""
EPISODE_SECONDS = 20.0
"""Default Gymnasium episode length (s): 1000 control steps at 50 Hz, then truncation."""


GAIT_PHASE_GROUPS = np.array([
    [0, 1, 1, 0],  # trot: diagonal pairs (FR, RL) and (FL, RR) alternate
    [0, 1, 0, 1],  # pace: lateral pairs (FR, RR) and (FL, RL) alternate
    [0, 0, 1, 1],  # bound: front pair and hind pair alternate
    [0, 0, 0, 0],  # pronk: all four feet together
], np.int32)
"""(len(GAITS), 4) phase group of each foot (FR, FL, RR, RL) per gait: feet of one group land together,
feet of different groups alternate."""
_FOOT_PAIRS = np.array([(i, j) for i in range(4) for j in range(i + 1, 4)], np.int32)  # (6, 2)
GAIT_PHASE_OFFSETS = 0.5 * GAIT_PHASE_GROUPS.astype(np.float32)
"""(len(GAITS), 4) phase offset (gait cycles) of each foot: the second phase group runs half a cycle behind."""
GAIT_PERIODS: tuple[float, ...] = (0.5, 0.5, 0.4, 0.4)
"""Gait period (s) of each gait, in GAITS order: of the kinematic gaits and of the expert's gait clock."""
GAIT_DUTY = 0.5
"""Fraction of a gait cycle a foot is in stance."""
CLOCK_DIM = 8
"""Size of :func:`gait_clock`: sine and cosine of each foot's phase."""


OBSERVATION_STRUCTURE: dict[str, int] = {
    "base_pos": 3,
    "base_quat": 4,
    "joint_pos": 12,
    "base_linvel": 3,
    "base_angvel": 3,
    "joint_vel": 12,
    "command": COMMAND_DIM,
    "gait": len(GAITS),
}
"""Size of each observation block, in order (the Gymnasium and Brax envs share it)."""
OBS_DIM = sum(OBSERVATION_STRUCTURE.values())  # 44


def observation(x, command, gait, xp=np):
    """Observation = state (37) ++ command (3) ++ gait one-hot (4).

    Args:
      x: (37,) state; command: (3,) (vx, vy, yaw rate); gait: int index into GAITS.

    Returns:
      (44,) observation in the dtype of x.
    """
    return xp.concatenate([
        x,  # 37
        xp.asarray(command, x.dtype),  # 3
        xp.eye(len(GAITS), dtype=x.dtype)[gait],  # 4
    ])


POLICY_INPUT_STRUCTURE: dict[str, int] = {
    "base_height": 1,
    "projected_gravity": 3,
    "body_linvel": 3,
    "body_angvel": 3,
    "joint_offset": 12,
    "joint_vel": 12,
    "command": COMMAND_DIM,
    "gait": len(GAITS),
}
"""Size of each block of :func:`policy_input`, in order."""
POLICY_INPUT_DIM = sum(POLICY_INPUT_STRUCTURE.values())  # 41


def policy_input(obs, config: PhysicsConfig = PHYSICS, xp=np):
    """What a feedback policy (the PPO expert) sees: the observation without its world position and heading.

    The dynamics do not depend on where the robot is or (for a quarter turn)
    which way it faces, and a policy trained on world x, y and yaw would only
    work where it was trained. Blocks (:data:`POLICY_INPUT_STRUCTURE`): base
    height (m), gravity direction in the body frame, body-frame linear (m/s)
    and angular (rad/s) velocity, joint angles minus the default pose (rad),
    joint velocities (rad/s), command, gait one-hot.

    Args:
      obs: (..., 44) observations (:func:`observation`).

    Returns:
      (..., 41) policy inputs in the dtype of obs.
    """
    x = obs[..., :STATE_DIM]
    return xp.concatenate([
        x[..., BASE_POS][..., 2:],  # 1
        projected_gravity(x, xp),  # 3
        body_linvel(x, xp),  # 3
        x[..., BASE_ANGVEL],  # 3 (already body frame)
        x[..., JOINT_POS] - xp.asarray(config.default_pose, obs.dtype),  # 12
        x[..., JOINT_VEL],  # 12
        obs[..., STATE_DIM:],  # 3 command + 4 gait
    ], axis=-1)


def advance_phase(phase, gait, dt: float, xp=np):
    """Gait phase (cycles, in [0, 1)) after ``dt`` seconds of ``gait``: phase + dt / period, wrapped.

    Args:
      phase: (...,) phase in [0, 1); gait: (...,) int index into GAITS; dt: seconds.
    """
    return xp.mod(phase + dt / xp.asarray(GAIT_PERIODS, np.float32)[gait], 1.0)


def foot_phases(phase, gait, xp=np):
    """(..., 4) phase of each foot (FR, FL, RR, RL) in [0, 1): the gait phase plus the foot's offset.

    A foot is in stance while its phase is below :data:`GAIT_DUTY` (the kinematic gaits' convention).
    """
    return xp.mod(xp.asarray(phase)[..., None] + xp.asarray(GAIT_PHASE_OFFSETS)[gait], 1.0)


def gait_clock(phase, gait, xp=np):
    """(..., 8) clock inputs of a gait-following policy: sin(2 pi foot phase) (4) ++ cos(2 pi foot phase) (4).

    The sine is positive exactly while the schedule holds the foot in stance.

    Args:
      phase: (...,) gait phase in [0, 1); gait: (...,) int index into GAITS.
    """
    angle = 2.0 * np.pi * foot_phases(phase, gait, xp)
    return xp.concatenate([xp.sin(angle), xp.cos(angle)], axis=-1)


def scheduled_contact(phase, gait, xp=np):
    """(..., 4) bool: which feet the gait schedule puts in stance at ``phase``."""
    return foot_phases(phase, gait, xp) < GAIT_DUTY


def gait_index(gait: str) -> int:
    """Index of a gait name in :data:`GAITS`; ValueError names the choices."""
    if gait not in GAITS:
        raise ValueError(f"unknown gait {gait!r}; expected one of {GAITS}")
    return GAITS.index(gait)


@dataclasses.dataclass(frozen=True)
class CommandRanges:
    """Uniform ranges that velocity commands are sampled from.

    Attributes:
      vx: forward velocity range (m/s), body frame.
      vy: lateral velocity range (m/s), body frame.
      yaw_rate: yaw rate range (rad/s).
    """

    vx: tuple[float, float] = (-0.5, 1.0)
    vy: tuple[float, float] = (-0.5, 0.5)
    yaw_rate: tuple[float, float] = (-1.0, 1.0)

    def __post_init__(self):
        for name in ("vx", "vy", "yaw_rate"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"CommandRanges.{name}: low {lo} > high {hi}")

    @property
    def low(self) -> np.ndarray:
        return np.array([self.vx[0], self.vy[0], self.yaw_rate[0]], np.float32)

    @property
    def high(self) -> np.ndarray:
        return np.array([self.vx[1], self.vy[1], self.yaw_rate[1]], np.float32)


GAIT_COMMAND_RANGES: dict[str, CommandRanges] = {
    "trot": CommandRanges(vx=(-1.5, 1.5), vy=(-0.8, 0.8), yaw_rate=(-1.2, 1.2)),  # MuJoCo Playground's Go1 joystick
    "pace": CommandRanges(vx=(-1.0, 1.0), vy=(-0.5, 0.5), yaw_rate=(-1.0, 1.0)),
    "bound": CommandRanges(vx=(-0.5, 1.5), vy=(-0.3, 0.3), yaw_rate=(-1.0, 1.0)),
    "pronk": CommandRanges(vx=(-1.0, 1.0), vy=(-0.5, 0.5), yaw_rate=(-1.0, 1.0)),
}
"""Command ranges of the four-gait expert, per gait: the trot as wide as Playground's; a bound is a forward gait
with little sideways motion; pace and pronk as the trot expert's old ranges."""


def command_range_table(command_ranges: CommandRanges | Mapping[str, CommandRanges],
                        gaits: tuple[str, ...] = GAITS) -> tuple[np.ndarray, np.ndarray]:
    """Per-gait command bounds: (low, high), each (len(GAITS), 3) float32, indexed by gait index.

    Args:
      command_ranges: one :class:`CommandRanges` for every gait, or a mapping gait name -> ranges that covers
        every gait in ``gaits`` (rows of other gaits are zeros).

    Raises:
      ValueError: the mapping misses a gait of ``gaits`` or names an unknown gait.
    """
    if isinstance(command_ranges, CommandRanges):
        command_ranges = {g: command_ranges for g in GAITS}
    unknown = set(command_ranges) - set(GAITS)
    missing = set(gaits) - set(command_ranges)
    if unknown or missing:
        raise ValueError(f"command ranges must be given for the gaits {tuple(gaits)} (of {GAITS}); "
                         f"missing {sorted(missing)}, unknown {sorted(unknown)}")
    low = np.zeros((len(GAITS), COMMAND_DIM), np.float32)
    high = np.zeros((len(GAITS), COMMAND_DIM), np.float32)
    for name, ranges in command_ranges.items():
        low[gait_index(name)], high[gait_index(name)] = ranges.low, ranges.high
    return low, high


@dataclasses.dataclass(frozen=True)
class RewardWeights:
    """Weights of the named reward terms (reward = sum of weight * term * dt).

    Weights follow MuJoCo Playground's Go1 joystick task. Unlike Playground,
    ``lin_vel_z`` and ``ang_vel_xy`` penalise BODY-frame rates, the torque term
    uses the servo law at the post-step state (``servo_torque``), the total
    is not clipped at zero, and ``gait_sync`` (ours) rewards the contact
    pattern of the commanded gait.
    """

    tracking_lin_vel: float = 1.0
    tracking_ang_vel: float = 0.5
    lin_vel_z: float = -0.5
    ang_vel_xy: float = -0.05
    orientation: float = -5.0
    torques: float = -2e-4
    action_rate: float = -0.01
    feet_air_time: float = 0.1
    termination: float = -1.0
    gait_sync: float = 0.2
    gait_schedule: float = 0.0
    """Weight of following the gait clock's contact schedule (:func:`scheduled_contact`); the four-gait expert
    trains with it, the trot expert did not."""
    gait_height_sync: float = 0.0
    """Weight of :func:`group_height_spread` times the gait's ``gait_height_sync_scale`` (a penalty: use a negative
    weight), the dense counterpart of ``gait_sync``: feet of one phase group should rise and fall together, not a
    few steps apart."""
    gait_height_sync_scale: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    """Per-gait factor (order :data:`GAITS`) on the ``gait_height_sync`` term: the pronk, whose diagonal pairs
    lift apart, can take more of it, the bound, whose tracking it costs, less."""
    tracking_sigma: float = 0.25
    """Width (m^2/s^2) of the exponential velocity-tracking kernels."""

    def __post_init__(self):
        try:
            scale = tuple(float(v) for v in self.gait_height_sync_scale)
        except TypeError:
            scale = ()
        if len(scale) != len(GAITS) or not all(math.isfinite(v) and v >= 0 for v in scale):
            raise ValueError(f"gait_height_sync_scale needs {len(GAITS)} finite factors >= 0 (order {GAITS}), "
                             f"got {self.gait_height_sync_scale!r}")
        object.__setattr__(self, "gait_height_sync_scale", scale)  # a JSON list becomes a hashable tuple

    def as_dict(self) -> dict[str, float]:
        """Weight of each named term (the keys of :func:`reward_terms`)."""
        d = dataclasses.asdict(self)
        d.pop("tracking_sigma")
        d.pop("gait_height_sync_scale")
        return d


def quat_rotate_inverse(q, v, xp=np):
    """Rotates world vectors into the body frame.

    Args:
      q: (..., 4) unit quaternions (w, x, y, z), body-to-world.
      v: (..., 3) world-frame vectors.

    Returns:
      (..., 3) the same vectors in the body frame.
    """
    w, qv = q[..., :1], q[..., 1:]
    a = v * (2.0 * w**2 - 1.0)
    b = xp.cross(qv, v) * w * 2.0
    c = qv * xp.sum(qv * v, axis=-1, keepdims=True) * 2.0
    return a - b + c


def projected_gravity(x, xp=np):
    """(..., 3) unit gravity direction in the body frame; (0, 0, -1) when upright."""
    down = xp.zeros(x.shape[:-1] + (3,), x.dtype) + xp.asarray([0.0, 0.0, -1.0], x.dtype)
    return quat_rotate_inverse(x[..., BASE_QUAT], down, xp)


def body_linvel(x, xp=np):
    """(..., 3) trunk linear velocity in the body frame (m/s)."""
    return quat_rotate_inverse(x[..., BASE_QUAT], x[..., BASE_LINVEL], xp)


def servo_torque(x, u, config: PhysicsConfig = PHYSICS, xp=np):
    """(..., 12) servo torques (N m) at state x for action u, clipped to the limits."""
    tau = config.kp * (motor_targets(u, config, xp) - x[..., JOINT_POS])
    limit = xp.asarray(config.torque_limit, x.dtype)
    return xp.clip(tau, -limit, limit)


def is_fallen(x, xp=np):
    """True where the trunk is below 0.12 m or tilted more than ~60 degrees."""
    return (x[..., BASE_POS][..., 2] < 0.12) | (projected_gravity(x, xp)[..., 2] > -0.5)


def gait_sync(contact, gait, xp=np):
    """Fraction of the 6 foot pairs whose contacts follow the gait: equal within a phase group, opposite across.

    Clock-free, so it needs nothing beyond the state: a trot scores 1 while
    exactly one diagonal pair is down, standing on four feet scores 2/6 for a
    trot and 1 for a pronk.

    Args:
      contact: (..., 4) bool foot contacts (FR, FL, RR, RL).
      gait: (...,) int index into GAITS.

    Returns:
      (...,) float in [0, 1].
    """
    groups = xp.asarray(GAIT_PHASE_GROUPS)[gait]  # (..., 4)
    i, j = _FOOT_PAIRS[:, 0], _FOOT_PAIRS[:, 1]
    same_group = groups[..., i] == groups[..., j]  # (..., 6)
    same_contact = contact[..., i] == contact[..., j]
    return xp.mean((same_group == same_contact).astype(np.float32), axis=-1)


def group_height_spread(foot_z, gait, xp=np):
    """Mean height difference (m) between feet that the gait puts in one phase group.

    0 while the feet of each group are at the same height; a pronk whose diagonal pairs lift a few
    steps apart scores the height between them, where ``gait_sync`` only sees the steps when a
    contact differs.

    Args:
      foot_z: (..., 4) foot site heights (m), order FR, FL, RR, RL.
      gait: (...,) int index into GAITS.

    Returns:
      (...,) mean of |z_i - z_j| over the same-group foot pairs (2 for trot, pace and bound, 6 for pronk).
    """
    groups = xp.asarray(GAIT_PHASE_GROUPS)[gait]  # (..., 4)
    i, j = _FOOT_PAIRS[:, 0], _FOOT_PAIRS[:, 1]
    same_group = (groups[..., i] == groups[..., j]).astype(foot_z.dtype)  # (..., 6)
    spread = xp.abs(foot_z[..., i] - foot_z[..., j])  # (..., 6)
    return xp.sum(spread * same_group, axis=-1) / xp.sum(same_group, axis=-1)


def reward_terms(x, u, u_prev, command, gait, contact, air_time, first_contact, fallen,
                 weights: RewardWeights = RewardWeights(), config: PhysicsConfig = PHYSICS, xp=np, *, phase,
                 foot_z) -> dict:
    """Unweighted named reward terms for one control step.

    Args:
      x: (..., 37) state after the step.
      u: (..., 12) action of the step; u_prev: (..., 12) the action before.
      command: (..., 3) velocity command (vx, vy, yaw rate), body frame.
      gait: (...,) int index into GAITS of the commanded gait.
      contact: (..., 4) bool raw foot contacts after the step (``update_feet``).
      air_time: (..., 4) time (s) each foot had been in the air when it landed.
      first_contact: (..., 4) 1.0 where a foot touched down in this step.
      fallen: (...,) bool, the episode ends in a fall.
      phase: (...,) gait phase in [0, 1) after the step (:func:`advance_phase`).
      foot_z: (..., 4) foot site heights (m) after the step.

    Returns:
      dict name -> (...,) term; :func:`total_reward` weighs and sums them. ``gait_height_sync`` already carries
      its per-gait factor (``weights.gait_height_sync_scale``).
    """
    v_body = body_linvel(x, xp)
    w_body = x[..., BASE_ANGVEL]
    lin_err = xp.sum((command[..., :2] - v_body[..., :2]) ** 2, axis=-1)
    yaw_err = (command[..., 2] - w_body[..., 2]) ** 2
    moving = (xp.linalg.norm(command, axis=-1) > 0.05).astype(x.dtype)
    return {
        "tracking_lin_vel": xp.exp(-lin_err / weights.tracking_sigma),
        "tracking_ang_vel": xp.exp(-yaw_err / weights.tracking_sigma),
        "lin_vel_z": v_body[..., 2] ** 2,
        "ang_vel_xy": xp.sum(w_body[..., :2] ** 2, axis=-1),
        "orientation": xp.sum(projected_gravity(x, xp)[..., :2] ** 2, axis=-1),
        "torques": xp.sum(servo_torque(x, u, config, xp) ** 2, axis=-1),
        "action_rate": xp.sum((u - u_prev) ** 2, axis=-1),
        "feet_air_time": xp.sum((air_time - 0.1) * first_contact, axis=-1) * moving,
        "termination": xp.asarray(fallen, x.dtype),
        "gait_sync": gait_sync(contact, gait, xp).astype(x.dtype) * moving,
        "gait_schedule": xp.mean((contact == scheduled_contact(phase, gait, xp)).astype(x.dtype), axis=-1),
        "gait_height_sync": (group_height_spread(foot_z, gait, xp).astype(x.dtype) * moving
                             * xp.asarray(weights.gait_height_sync_scale, x.dtype)[gait]),
    }


def total_reward(terms: Mapping, weights: RewardWeights = RewardWeights(), config: PhysicsConfig = PHYSICS):
    """Reward = ctrl_dt * sum_k weight_k * term_k."""
    w = weights.as_dict()
    return config.ctrl_dt * sum(w[k] * terms[k] for k in w)



def update_feet(foot_z, last_contact, air_time, dt: float, xp=np):
    """Foot contacts and air time over one control step (MuJoCo Playground's convention).

    A foot touching down in this step or the one before counts as in contact
    (filters one-step bounces); its air time is credited on touchdown.

    Args:
      foot_z: (..., 4) foot site heights (m) after the step, order FR, FL, RR, RL.
      last_contact: (..., 4) bool, raw contact after the previous step.
      air_time: (..., 4) time (s) each foot has been in the air before this step.
      dt: control period (s).

    Returns:
      contact: (..., 4) bool raw contact after this step (the next ``last_contact``).
      first_contact: (..., 4) float, 1.0 where a foot touched down in this step.
      landed_air_time: (..., 4) air time (s) including this step, for the reward.
      next_air_time: (..., 4) air time to carry into the next step (0 where in raw contact).
    """
    contact = foot_z < FOOT_CONTACT_HEIGHT
    contact_filt = contact | last_contact
    first_contact = ((air_time > 0) & contact_filt).astype(foot_z.dtype)
    landed_air_time = air_time + dt
    next_air_time = xp.where(contact, 0.0, landed_air_time)
    return contact, first_contact, landed_air_time, next_air_time
