"""Kinematic gaits: state-only Go1 trajectories from foot paths and leg inverse kinematics.

This is the infeasible dataset of DynaFlow's retargeting experiment: motion that
looks like trot, pace, bound and pronk but that no action sequence can produce
under the physics (the base glides at constant height and speed whatever the
feet do; in the pronk's flight phase it floats with all feet in the air).

Construction, per trajectory (times t_k = k * ctrl_dt):

* Base: moves with the commanded body-frame velocity (vx, vy) and yaw rate at
  a fixed height (``base_height``), integrated in closed form; level apart
  from yaw, plus an optional small sway (pitch for bound, roll for pace).
* Feet: foot f has phase ``phi_f(t) = frac(t / period + phase0 + offset_f)``;
  stance while ``phi_f < duty``, swing otherwise. A stance foot stays fixed in
  the world (ideal no-slip) at its foothold: the neutral foot position (below
  the thigh joint) at the middle of that stance, which is Raibert's placement
  "neutral + v * T_stance / 2" measured from touchdown, exact under yaw rate.
  A swing foot moves from one foothold to the next on a minimum-jerk
  horizontal path and a ``64 s^3 (1 - s)^3`` lift of height ``step_height``.
  Phase offsets::

      trot   FR RL | FL RR      pace   FR RR | FL RL
      bound  FR FL | RR RL      pronk  FR FL RR RL together (flight phase)

* Joints: analytic 3-DoF leg IK (abduction about x, then hip and knee about
  y), from the link geometry of the compiled MJCF.
* Velocities: backward differences at the control rate,
  ``v_k = (q_k - q_{k-1}) / ctrl_dt`` (the trajectory is synthesised from
  t_{-1} = -ctrl_dt so that v_0 exists). This is the relation of MuJoCo's
  semi-implicit Euler (position updated with the new velocity), so a state's
  velocity is the one that carries the previous pose into it. Base linear
  velocity is in the world frame, base angular velocity in the body frame
  (``q_k = q_{k-1} * exp(omega_k * dt)``), as in ``envs.physics``.

CLI::

    python -m dynaflow_policy.data.kinematic --out data/kinematic.npz --n-trajectories 256 --seconds 10
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Sequence

import numpy as np

from envs.kinematics import LegGeometry, leg_fk, leg_geometry
from envs.physics import FOOT_RADIUS, PHYSICS, STATE_DIM, PhysicsConfig
from envs.physics import BASE_ANGVEL, BASE_LINVEL, BASE_POS, BASE_QUAT, JOINT_POS, JOINT_VEL
from envs.task import GAIT_DUTY, GAIT_PERIODS, GAIT_PHASE_OFFSETS, GAITS, CommandRanges, gait_index

from dynaflow_policy.data.schema import Dataset, DatasetMetadata

GAIT_OFFSETS: dict[str, tuple[float, ...]] = {g: tuple(float(o) for o in GAIT_PHASE_OFFSETS[i])
                                              for i, g in enumerate(GAITS)}
"""Phase offset (cycles) of each leg, order FR, FL, RR, RL, per gait name (``envs.task.GAIT_PHASE_OFFSETS``)."""


@dataclasses.dataclass(frozen=True)
class KinematicGaitConfig:
    """Shape of the synthesised gaits.

    Attributes:
      base_height: trunk height (m), constant.
      step_height: swing foot lift above the stance height (m).
      periods: gait period (s) of each gait, in ``envs.task.GAITS`` order
        (trot, pace, bound, pronk).
      duty: fraction of the period a foot is in stance.
      sway: amplitude (rad) of the body sway at the gait frequency: pitch for
        bound, roll for pace; trot and pronk stay level. 0 = level base.
      foot_y: lateral distance (m) of the neutral foot position from the
        hip's abduction axis, outward; default: the thigh offset, so the
        neutral foot is straight below the thigh joint.
    """

    base_height: float = 0.27
    step_height: float = 0.08
    periods: tuple[float, ...] = GAIT_PERIODS
    duty: float = GAIT_DUTY
    sway: float = 0.0
    foot_y: float | None = None

    def __post_init__(self):
        if len(self.periods) != len(GAITS) or min(self.periods) <= 0:
            raise ValueError(f"periods must be {len(GAITS)} positive values ({GAITS}), got {self.periods}")
        if not 0.0 < self.duty < 1.0:
            raise ValueError(f"duty must be in (0, 1), got {self.duty}")
        if self.base_height <= FOOT_RADIUS or self.step_height < 0:
            raise ValueError(f"need base_height > {FOOT_RADIUS} and step_height >= 0, got "
                             f"{self.base_height}, {self.step_height}")

    def period(self, gait: str) -> float:
        return self.periods[gait_index(gait)]


# --------------------------------------------------------------------------- leg kinematics


def leg_ik(feet: np.ndarray, geometry: LegGeometry | None = None) -> np.ndarray:
    """Analytic inverse kinematics of the four legs (knee bent backwards, foot below the hip).

    Args:
      feet: (..., 4, 3) foot-site targets in the trunk frame (m).
      geometry: leg geometry (default: the MJCF's).

    Returns:
      (..., 12) joint angles in action order (rad).

    Raises:
      ValueError: a target is out of reach (closer to the abduction axis than
        the thigh offset, or farther from the thigh joint than thigh + calf).
    """
    g = geometry or leg_geometry()
    p = np.asarray(feet, dtype=np.float64) - g.hip  # (..., 4, 3) relative to the abduction joint
    px, py, pz = p[..., 0], p[..., 1], p[..., 2]
    d = g.abduction_offset
    lz2 = py**2 + pz**2 - d**2
    if np.any(lz2 <= 0):
        raise ValueError("foot target inside the abduction offset: out of reach")
    lz = -np.sqrt(lz2)  # sagittal-plane foot height below the thigh joint
    q1 = _wrap(np.arctan2(pz, py) - np.arctan2(lz, d))
    r2 = px**2 + lz**2
    cos_knee = (r2 - g.thigh**2 - g.calf**2) / (2.0 * g.thigh * g.calf)
    if np.any(np.abs(cos_knee) > 1.0):
        raise ValueError(f"foot target out of reach: leg extension {np.sqrt(r2.max()):.4f} m > "
                         f"{g.thigh + g.calf:.4f} m or too short")
    q3 = -np.arccos(cos_knee)
    k1 = g.thigh + g.calf * np.cos(q3)
    k2 = g.calf * np.sin(q3)
    q2 = np.arctan2(-px, -lz) - np.arctan2(k2, k1)
    return np.stack([q1, q2, q3], axis=-1).reshape(*p.shape[:-2], 12)


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2.0 * np.pi) - np.pi


# --------------------------------------------------------------------------- rotations


def quat_from_rpy(roll, pitch, yaw) -> np.ndarray:
    """(..., 4) unit quaternions (w, x, y, z) of R = Rz(yaw) Ry(pitch) Rx(roll), body-to-world."""
    cr, sr = np.cos(np.asarray(roll) / 2), np.sin(np.asarray(roll) / 2)
    cp, sp = np.cos(np.asarray(pitch) / 2), np.sin(np.asarray(pitch) / 2)
    cy, sy = np.cos(np.asarray(yaw) / 2), np.sin(np.asarray(yaw) / 2)
    return np.stack([cy * cp * cr + sy * sp * sr,
                     cy * cp * sr - sy * sp * cr,
                     cy * sp * cr + sy * cp * sr,
                     sy * cp * cr - cy * sp * sr], axis=-1)


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 4) Hamilton product a * b, (w, x, y, z)."""
    aw, av = a[..., :1], a[..., 1:]
    bw, bv = b[..., :1], b[..., 1:]
    return np.concatenate([aw * bw - np.sum(av * bv, -1, keepdims=True),
                           aw * bv + bw * av + np.cross(av, bv)], axis=-1)


def quat_conj(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def quat_to_mat(q: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices of unit quaternions (..., 4)."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def body_angular_velocity(q_prev: np.ndarray, q_next: np.ndarray, dt: float) -> np.ndarray:
    """(..., 3) body-frame angular velocity omega with q_next = q_prev * exp(omega * dt)."""
    dq = quat_mul(quat_conj(q_prev), q_next)  # (..., 4)
    dq = np.where(dq[..., :1] < 0, -dq, dq)  # shortest arc
    vn = np.linalg.norm(dq[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(vn, dq[..., :1])
    scale = np.where(vn > 1e-12, angle / np.maximum(vn, 1e-300), 2.0)  # angle / sin(angle/2) -> 2
    return dq[..., 1:] * scale / dt


# --------------------------------------------------------------------------- base motion


class BaseMotion:
    """Planar base motion under piecewise-constant body-frame commands, in closed form.

    Args:
      commands: (S, 3) (vx, vy, yaw rate) of each segment.
      segment_starts: (S,) increasing start times (s); the first segment also
        extends to t < segment_starts[0], the last one to t -> infinity.
      yaw0: yaw (rad) at t = segment_starts[0]; position there is (0, 0).
    """

    def __init__(self, commands: np.ndarray, segment_starts: np.ndarray, yaw0: float = 0.0):
        self.commands = np.asarray(commands, np.float64).reshape(-1, 3)  # (S, 3)
        self.starts = np.asarray(segment_starts, np.float64).reshape(-1)  # (S,)
        xy = [np.zeros(2)]
        yaw = [float(yaw0)]
        for j in range(len(self.starts) - 1):
            dxy, dyaw = self._advance(self.commands[j], yaw[-1], self.starts[j + 1] - self.starts[j])
            xy.append(xy[-1] + dxy)
            yaw.append(yaw[-1] + dyaw)
        self.start_xy = np.array(xy)  # (S, 2)
        self.start_yaw = np.array(yaw)  # (S,)

    @staticmethod
    def _advance(c: np.ndarray, yaw0, dt):
        """Displacement (..., 2) and yaw change (...) after dt under command c (..., 3) from yaw0."""
        vx, vy, w = c[..., 0], c[..., 1], c[..., 2]
        a = w * dt
        sinc = np.sinc(a / np.pi)  # sin(a) / a
        cosc = 0.5 * a * np.sinc(a / (2 * np.pi)) ** 2  # (1 - cos a) / a
        i_cos = dt * (np.cos(yaw0) * sinc - np.sin(yaw0) * cosc)  # integral of cos(yaw0 + w s) ds
        i_sin = dt * (np.sin(yaw0) * sinc + np.cos(yaw0) * cosc)
        return np.stack([vx * i_cos - vy * i_sin, vx * i_sin + vy * i_cos], -1), a

    def segment(self, t: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.starts, t, side="right") - 1, 0, len(self.starts) - 1)

    def __call__(self, t) -> tuple[np.ndarray, np.ndarray]:
        """Position (..., 2) and yaw (...) at times t (...)."""
        t = np.asarray(t, np.float64)
        j = self.segment(t)
        dxy, dyaw = self._advance(self.commands[j], self.start_yaw[j], t - self.starts[j])
        return self.start_xy[j] + dxy, self.start_yaw[j] + dyaw

    def command(self, t) -> np.ndarray:
        """(..., 3) command in force at times t."""
        return self.commands[self.segment(np.asarray(t, np.float64))]


# --------------------------------------------------------------------------- one trajectory


def _min_jerk(s: np.ndarray) -> np.ndarray:
    return s**3 * (10.0 - 15.0 * s + 6.0 * s**2)


def synthesize_trajectory(gait: str, commands: np.ndarray, segment_starts: np.ndarray, n_steps: int,
                          config: KinematicGaitConfig = KinematicGaitConfig(), phase0: float = 0.0,
                          yaw0: float = 0.0, physics: PhysicsConfig = PHYSICS) -> dict[str, np.ndarray]:
    """One kinematic trajectory, in float64.

    Args:
      gait: one of ``envs.task.GAITS``.
      commands: (S, 3) body-frame (vx, vy, yaw rate) commands of S segments.
      segment_starts: (S,) segment start times (s), the first 0.
      n_steps: T, number of states (at t_k = k * ctrl_dt, k = 0..T-1).
      config: gait shape.
      phase0: gait phase at t = 0, in [0, 1).
      yaw0: base yaw at t = 0 (rad).
      physics: physics config (ctrl_dt, MJCF geometry).

    Returns:
      dict with ``states`` (T, 37), ``commands`` (T, 3), ``feet`` (T, 4, 3)
      foot-site targets in the world frame, ``stance`` (T, 4) bool, ``phase`` (T,) the gait
      phase in [0, 1) (``stance`` is ``envs.task.scheduled_contact`` of it with ``config.duty``).
    """
    geom = leg_geometry(physics)
    dt = physics.ctrl_dt
    period = config.period(gait)
    offsets = np.asarray(GAIT_OFFSETS[gait])  # (4,)
    t = np.arange(-1, n_steps) * dt  # (T+1,), includes t_{-1} for backward differences
    motion = BaseMotion(commands, segment_starts, yaw0)

    # Base pose.
    xy, yaw = motion(t)  # (T+1, 2), (T+1,)
    sway = config.sway * np.sin(2 * np.pi * (t / period + phase0))
    roll = sway if gait == "pace" else np.zeros_like(t)
    pitch = sway if gait == "bound" else np.zeros_like(t)
    base_pos = np.concatenate([xy, np.full((t.size, 1), config.base_height)], -1)  # (T+1, 3)
    quat = quat_from_rpy(roll, pitch, yaw)  # (T+1, 4)

    # Footholds: the neutral foot position at the middle of each stance.
    foot_y = geom.abduction_offset if config.foot_y is None else np.sign(geom.abduction_offset) * config.foot_y
    neutral_body = np.stack([geom.hip[:, 0], geom.hip[:, 1] + foot_y], -1)  # (4, 2)

    def foothold(cycle: np.ndarray) -> np.ndarray:
        """(T+1, 4, 2) world xy foothold of stance number `cycle` (T+1, 4)."""
        t_mid = (cycle - phase0 - offsets + 0.5 * config.duty) * period  # (T+1, 4)
        p, psi = motion(t_mid)
        c, s = np.cos(psi), np.sin(psi)
        nx, ny = neutral_body[:, 0], neutral_body[:, 1]
        return p + np.stack([c * nx - s * ny, s * nx + c * ny], -1)

    u = t[:, None] / period + phase0 + offsets  # (T+1, 4) gait cycles
    cycle = np.floor(u)
    phi = u - cycle
    stance = phi < config.duty
    s = np.where(stance, 0.0, (phi - config.duty) / (1.0 - config.duty))  # swing progress in [0, 1)
    f0, f1 = foothold(cycle), foothold(cycle + 1)
    feet_xy = f0 + _min_jerk(s)[..., None] * (f1 - f0)
    feet_z = FOOT_RADIUS + config.step_height * 64.0 * s**3 * (1.0 - s) ** 3
    feet = np.concatenate([feet_xy, feet_z[..., None]], -1)  # (T+1, 4, 3) world

    # Joint angles: feet in the trunk frame, then IK.
    rot = quat_to_mat(quat)  # (T+1, 3, 3)
    feet_body = np.einsum("tji,tfj->tfi", rot, feet - base_pos[:, None, :])  # R^T (p - base)
    q = leg_ik(feet_body, geom)  # (T+1, 12)
    lo, hi = np.asarray(physics.joint_lower), np.asarray(physics.joint_upper)
    if np.any(q < lo) or np.any(q > hi):
        k, j = np.argwhere((q < lo) | (q > hi))[0]
        raise ValueError(f"{gait}: joint {j} angle {q[k, j]:.3f} rad outside [{lo[j]}, {hi[j]}] at step {k - 1}; "
                         f"command {motion.command(t[k])} is too fast for this gait")

    # Velocities: backward differences at the control rate.
    x = np.empty((n_steps, STATE_DIM))
    x[:, BASE_POS] = base_pos[1:]
    x[:, BASE_QUAT] = quat[1:]
    x[:, JOINT_POS] = q[1:]
    x[:, BASE_LINVEL] = np.diff(base_pos, axis=0) / dt
    x[:, BASE_ANGVEL] = body_angular_velocity(quat[:-1], quat[1:], dt)
    x[:, JOINT_VEL] = np.diff(q, axis=0) / dt
    phase = np.mod(t[1:] / period + phase0, 1.0)  # (T,) the gait clock (foot offsets 0)
    return {"states": x, "commands": motion.command(t[1:]), "feet": feet[1:], "stance": stance[1:],
            "phase": phase}


# --------------------------------------------------------------------------- dataset


def generate_kinematic_dataset(n_trajectories: int, seconds: float, gaits: Sequence[str] = GAITS,
                               command_ranges: CommandRanges = CommandRanges(), seed: int = 0,
                               command_segment_seconds: float | None = None,
                               config: KinematicGaitConfig = KinematicGaitConfig(),
                               physics: PhysicsConfig = PHYSICS) -> Dataset:
    """The kinematic (infeasible) gait dataset.

    Trajectory i has gait ``gaits[i % len(gaits)]`` (balanced), a random start
    phase and yaw, and commands drawn uniformly from ``command_ranges``: one per
    trajectory, or a new one every ``command_segment_seconds`` (piecewise
    constant). Everything follows from ``seed``.

    Args:
      n_trajectories: N, total over all gaits.
      seconds: trajectory duration; T = round(seconds / ctrl_dt) states.
      gaits: gait names to cycle through.
      command_ranges: uniform command ranges (vx, vy, yaw rate).
      seed: RNG seed.
      command_segment_seconds: resample the command this often (None: constant).
      config: gait shape.
      physics: physics config.

    Returns:
      Dataset with source "kinematic", no expert actions, and the gait phase of every state.
    """
    for g in gaits:
        gait_index(g)
    n_steps = int(round(seconds / physics.ctrl_dt))
    if n_trajectories < 1 or n_steps < 1:
        raise ValueError(f"need n_trajectories >= 1 and seconds >= ctrl_dt, got {n_trajectories}, {seconds}")
    rng = np.random.default_rng(seed)
    n_seg = 1 if command_segment_seconds is None else max(1, int(np.ceil(seconds / command_segment_seconds)))
    seg_starts = np.arange(n_seg) * (command_segment_seconds or 0.0)
    states = np.empty((n_trajectories, n_steps, STATE_DIM), np.float32)
    commands = np.empty((n_trajectories, n_steps, 3), np.float32)
    gait_idx = np.empty(n_trajectories, np.int64)
    phase = np.empty((n_trajectories, n_steps), np.float32)
    for i in range(n_trajectories):
        gait = gaits[i % len(gaits)]
        cmd = rng.uniform(command_ranges.low, command_ranges.high, (n_seg, 3))
        traj = synthesize_trajectory(gait, cmd, seg_starts, n_steps, config, phase0=rng.uniform(),
                                     yaw0=rng.uniform(-np.pi, np.pi), physics=physics)
        states[i] = traj["states"]
        commands[i] = traj["commands"]
        phase[i] = traj["phase"]
        gait_idx[i] = gait_index(gait)
    extra = {"generator": "dynaflow_policy.data.kinematic", "seed": seed, "seconds": seconds,
             "gaits": list(gaits), "command_ranges": dataclasses.asdict(command_ranges),
             "command_segment_seconds": command_segment_seconds, "config": dataclasses.asdict(config)}
    phase[phase >= 1.0] = 0.0  # float32 rounding of phases just below 1
    return Dataset(states, commands, gait_idx, DatasetMetadata.for_physics("kinematic", physics, extra),
                   phase=phase)


# --------------------------------------------------------------------------- CLI


@dataclasses.dataclass(frozen=True)
class Args:
    """Generate the kinematic gait dataset."""

    out: str = "data/kinematic.npz"
    """Output .npz file (written atomically)."""
    n_trajectories: int = 256
    """Trajectories in total, spread evenly over the gaits."""
    seconds: float = 10.0
    """Duration of each trajectory (s)."""
    gaits: tuple[str, ...] = GAITS
    """Gaits to generate."""
    seed: int = 0
    """RNG seed."""
    command_segment_seconds: float | None = None
    """Resample the command this often (s); None keeps one command per trajectory."""
    command_ranges: CommandRanges = CommandRanges()
    """Uniform command ranges."""
    config: KinematicGaitConfig = KinematicGaitConfig()
    """Gait shape."""


def main(args: Args) -> Dataset:
    from dynaflow_policy.data.schema import save_dataset

    t0 = time.perf_counter()
    ds = generate_kinematic_dataset(args.n_trajectories, args.seconds, args.gaits, args.command_ranges, args.seed,
                                    args.command_segment_seconds, args.config)
    t_gen = time.perf_counter() - t0
    save_dataset(args.out, ds)
    counts = {g: int(np.sum(ds.gait == gait_index(g))) for g in args.gaits}
    print(f"wrote {args.out}: N={ds.n_trajectories} trajectories x T={ds.n_steps} states ({counts}), "
          f"{ds.nbytes / 2**20:.1f} MiB in memory, {os.path.getsize(args.out) / 2**20:.1f} MiB on disk; "
          f"generated in {t_gen:.2f} s")
    return ds


if __name__ == "__main__":
    import tyro

    main(tyro.cli(Args))
