"""Render a controller driving the Go1 in the Gymnasium env to an MP4, with the command as a caption.

    MUJOCO_GL=egl python eval/rollout_video.py

With no arguments it runs the shipped controller (``--controller auto``: the
DynaFlow checkpoint ``checkpoints/dynaflow_go1_expert`` where it exists, else the
PPO expert ``checkpoints/ppo_go1_trot``; for ``--gait pace``, ``bound`` or
``pronk``, the four-gait ones, ``checkpoints/dynaflow_go1_gaits`` or
``checkpoints/ppo_go1_gaits``) for 10 s under a
changing command (walk, walk faster, turn, stop), writes
``outputs/go1_rollout.mp4`` from the tracking camera and prints the path and
the closed-loop metrics. Other options: ``--command VX VY YAW`` (fixed),
``--gait``, ``--seconds``, ``--output``, ``--checkpoint``, and ``--demo
FILE.npz --demo-index N`` for a side-by-side video: the demonstration's states
(left, replayed kinematically) next to the controller's closed-loop motion
from the same initial state under the demonstration's commands (right).

``--grid`` renders the four gaits side by side (2 x 2 panels, one batched
controller, the shipped four-gait checkpoint by default), each captioned with
its gait, its contact-pattern score (``envs.task.gait_sync``, averaged after
the first second) and the fraction of feet in the air.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import tyro

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = {"dynaflow": os.path.join(REPO, "checkpoints", "dynaflow_go1_expert"),
           "ppo": os.path.join(REPO, "checkpoints", "ppo_go1_trot")}
SHIPPED_GAITS = {"dynaflow": os.path.join(REPO, "checkpoints", "dynaflow_go1_gaits"),
                 "ppo": os.path.join(REPO, "checkpoints", "ppo_go1_gaits")}
"""The four-gait checkpoints ``--grid`` and a ``--gait`` other than the trot run."""
SCHEDULE: tuple[tuple[float, tuple[float, float, float]], ...] = (
    (0.0, (0.3, 0.0, 0.0)),
    (3.0, (0.8, 0.0, 0.0)),
    (6.0, (0.4, 0.0, 0.6)),
    (8.5, (0.0, 0.0, 0.0)),
)
"""Default command schedule: (start time s, (vx m/s, vy m/s, yaw rate rad/s))."""


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    controller: Literal["auto", "dynaflow", "ppo", "stand"] = "auto"
    """auto: the shipped DynaFlow checkpoint, else the shipped PPO expert; stand: hold the default pose."""
    checkpoint: str | None = None
    """Checkpoint to run, of any kind (default: the shipped one of --controller)."""
    command: tuple[float, float, float] | None = None
    """Fixed command (vx m/s, vy m/s, yaw rate rad/s) instead of the default schedule."""
    gait: str = "trot"
    """Gait given to the controller."""
    seconds: float = 10.0
    """Duration (s) of simulated time."""
    output: str = "outputs/go1_rollout.mp4"
    """Where to write the MP4."""
    demo: str | None = None
    """Dataset (.npz) whose trajectory is shown on the left, side by side with the controller's motion."""
    demo_index: int = 0
    """Trajectory of --demo."""
    width: int = 640
    """Frame width (px) of each panel."""
    height: int = 480
    """Frame height (px)."""
    seed: int = 0
    """Reset seed (initial joint perturbation and heading) and controller seed."""
    grid: bool = False
    """Render trot, pace, bound and pronk side by side (2 x 2 panels of --width x --height); ignores --gait."""


class _Stand:
    def act(self, obs):
        import numpy as np

        return np.zeros(np.shape(obs)[:-1] + (12,), np.float32)

    def reset(self):
        pass


def _controller(cfg: VideoConfig):
    """(controller, description) for ``cfg.controller``."""
    shipped = SHIPPED_GAITS if cfg.grid or cfg.gait != "trot" else SHIPPED  # the trot-only ones know no other
    kind = cfg.controller
    if kind == "auto":
        kind = "dynaflow" if os.path.isdir(shipped["dynaflow"]) else "ppo"
    if kind == "stand":
        return _Stand(), "default pose (zero action)"
    from dynaflow_policy import load_policy
    from dynaflow_policy.checkpoint import checkpoint_kind

    path = cfg.checkpoint or shipped[kind]
    found = checkpoint_kind(path)
    overrides = {} if found == "ppo" else {"seed": cfg.seed}
    names = {"ppo": "PPO expert", "dynaflow": "DynaFlow", "state_flow": "state flow + ID"}
    return load_policy(path, **overrides), f"{names[found]} {os.path.relpath(path, REPO)}"


def _caption(frame, lines: list[str]):
    """Draws ``lines`` of text on a dark band at the top of ``frame`` (H, W, 3) uint8."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    size = max(10, image.height // 32)  # 15 px at 480 px
    font = ImageFont.load_default(size=size)
    band = 6 + (size + 3) * len(lines)
    draw.rectangle([0, 0, image.width, band], fill=(20, 20, 20))
    for i, line in enumerate(lines):
        draw.text((6, 4 + (size + 3) * i), line, fill=(240, 240, 240), font=font)
    return np.asarray(image)


class _StateRenderer:
    """Renders arbitrary states (kinematic replay) from the tracking camera."""

    def __init__(self, width: int, height: int):
        import copy

        import mujoco

        from envs.native import NativeGo1

        self.sim = NativeGo1()
        model = copy.copy(self.sim.model)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        self.renderer = mujoco.Renderer(model, height, width)

    def __call__(self, x):
        self.sim.set_state(x)
        self.renderer.update_scene(self.sim.data, camera="track")
        return self.renderer.render()

    def close(self):
        self.renderer.close()


def main(cfg: VideoConfig) -> dict:
    os.environ.setdefault("MUJOCO_GL", "egl")
    # imageio-ffmpeg starts ffmpeg with preexec_fn=os.setpgrp (so that Ctrl-C spares it), which makes subprocess
    # os.fork() this multithreaded JAX process (JAX warns of deadlocks). Without it subprocess starts ffmpeg
    # fork-free (vfork + exec); Ctrl-C then stops ffmpeg too, which ends an unfinished video either way.
    os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")
    import gymnasium
    import imageio
    import numpy as np

    import envs
    from dynaflow_policy.closed_loop import tracking_errors
    from envs.physics import PHYSICS

    controller, description = _controller(cfg)
    fps = round(1.0 / PHYSICS.ctrl_dt)
    n_steps = round(cfg.seconds * fps)
    if cfg.grid:
        if cfg.demo is not None:
            raise ValueError("--grid and --demo cannot be combined")
        return _grid(cfg, controller, description, n_steps, fps)
    options = {"gait": cfg.gait}
    demo = None
    if cfg.demo is not None:
        from dynaflow_policy.data import load_dataset
        from envs.task import GAITS

        ds = load_dataset(cfg.demo)
        if not 0 <= cfg.demo_index < ds.n_trajectories:
            raise ValueError(f"--demo-index must be in [0, {ds.n_trajectories}), got {cfg.demo_index}")
        demo = ds.states[cfg.demo_index].astype(np.float64)  # (T, 37)
        commands = ds.commands[cfg.demo_index]  # (T, 3)
        n_steps = min(n_steps, len(demo) - 1)
        options.update(state=demo[0], gait=GAITS[int(ds.gait[cfg.demo_index])])
        command_at = lambda k: commands[k]  # noqa: E731
    else:
        command_at = _schedule(cfg)

    env = gymnasium.make(envs.GYM_ID, render_mode="rgb_array", width=cfg.width, height=cfg.height,
                         max_episode_steps=n_steps)
    obs, _ = env.reset(seed=cfg.seed, options={**options, "command": command_at(0)})
    controller.reset()
    demo_renderer = _StateRenderer(cfg.width, cfg.height) if demo is not None else None
    states, cmds, torques = [env.unwrapped.state], [], []
    fell = False
    os.makedirs(os.path.dirname(os.path.abspath(cfg.output)), exist_ok=True)
    try:
        with imageio.get_writer(cfg.output, fps=fps, codec="libx264", quality=7, macro_block_size=8) as writer:
            for k in range(n_steps):
                c = command_at(k)
                env.unwrapped.set_command(c)
                obs[37:40] = c  # the observation carries the command the controller must follow now
                obs, _, terminated, truncated, info = env.step(controller.act(obs))
                x = env.unwrapped.state
                states.append(x)
                cmds.append(c)
                torques.append(info["torque"])
                v = tracking_errors(x[None], np.zeros(3))[0]
                text = [f"{description}, gait {cfg.gait if demo is None else options['gait']}   t {k / fps:4.1f} s",
                        f"command  vx {c[0]:+.2f}  vy {c[1]:+.2f}  yaw {c[2]:+.2f}",
                        f"actual   vx {v[0]:+.2f}  vy {v[1]:+.2f}  yaw {v[2]:+.2f}"]
                frame = _caption(env.render(), text)
                if demo_renderer is not None:
                    frame = np.concatenate([_caption(demo_renderer(demo[k + 1]), ["demonstration (replayed states)"]),
                                            frame], axis=1)
                writer.append_data(frame)
                if terminated or truncated:
                    fell = bool(terminated)
                    break
    finally:
        env.close()
        if demo_renderer is not None:
            demo_renderer.close()
    X, C = np.stack(states), np.stack(cmds)  # (T+1, 37) from the start state, (T, 3)
    err = tracking_errors(X[1:], C)[fps:]  # after the first second, as dynaflow_policy.closed_loop
    rmse = np.sqrt(np.mean(err**2, axis=0)) if len(err) else np.full(3, np.nan)
    metrics = {"frames": len(C), "fell": fell, "vx_rmse": float(rmse[0]),
               "vy_rmse": float(rmse[1]), "yaw_rate_rmse": float(rmse[2]),
               "mean_torque": float(np.abs(np.stack(torques)).mean()),
               "distance": float(np.linalg.norm(np.diff(X[:, :2], axis=0), axis=1).sum())}
    print(f"wrote {os.path.abspath(cfg.output)} ({len(C)} frames at {fps} fps; {description})")
    print(f"closed loop: fell {metrics['fell']}, tracking RMSE after 1 s: vx {metrics['vx_rmse']:.3f} m/s, "
          f"vy {metrics['vy_rmse']:.3f} m/s, yaw rate {metrics['yaw_rate_rmse']:.3f} rad/s; mean |torque| "
          f"{metrics['mean_torque']:.2f} N m; walked {metrics['distance']:.2f} m")
    return metrics


def _schedule(cfg: VideoConfig):
    """command_at(step) -> (3,) command: --command, else the default schedule."""
    import numpy as np

    from envs.physics import PHYSICS

    if cfg.command is not None:
        return lambda k: np.asarray(cfg.command, np.float32)
    starts = np.array([t for t, _ in SCHEDULE])
    return lambda k: np.asarray(SCHEDULE[np.searchsorted(starts, k * PHYSICS.ctrl_dt, "right") - 1][1], np.float32)


def _grid(cfg: VideoConfig, controller, description: str, n_steps: int, fps: int) -> dict:
    """The four gaits in lockstep, one env each, the controller acting on the (4, 44) batch; 2 x 2 panels."""
    import gymnasium
    import imageio
    import numpy as np

    import envs
    from envs.task import GAITS, gait_sync

    command_at = _schedule(cfg)
    gym_envs = [gymnasium.make(envs.GYM_ID, render_mode="rgb_array", width=cfg.width, height=cfg.height)
                for _ in GAITS]
    obs = np.stack([e.reset(seed=cfg.seed, options={"gait": g, "command": command_at(0)})[0]
                    for e, g in zip(gym_envs, GAITS)])
    controller.reset()
    contacts: list[list[np.ndarray]] = [[] for _ in GAITS]
    fell = np.zeros(len(GAITS), bool)
    os.makedirs(os.path.dirname(os.path.abspath(cfg.output)), exist_ok=True)
    try:
        with imageio.get_writer(cfg.output, fps=fps, codec="libx264", quality=7, macro_block_size=8) as writer:
            for k in range(n_steps):
                c = command_at(k)
                for e in gym_envs:
                    e.unwrapped.set_command(c)
                obs[:, 37:40] = c
                actions = controller.act(obs)  # (4, 12)
                panels = []
                for i, (e, gait) in enumerate(zip(gym_envs, GAITS)):
                    if not fell[i]:
                        obs[i], _, terminated, _, info = e.step(actions[i])
                        contacts[i].append(info["contact"])
                        fell[i] = terminated
                    after = np.array(contacts[i][fps:]) if len(contacts[i]) > fps else np.zeros((0, 4), bool)
                    score = gait_sync(after, GAITS.index(gait)).mean() if len(after) else float("nan")
                    air = (~after).mean() if len(after) else float("nan")
                    panels.append(_caption(e.render(), [
                        f"{gait}{'   FELL' if fell[i] else ''}   t {k / fps:4.1f} s",
                        f"contact pattern {score:.2f}   feet in air {air:.2f}",
                        f"command vx {c[0]:+.2f} vy {c[1]:+.2f} yaw {c[2]:+.2f}"]))
                writer.append_data(np.concatenate([np.concatenate(panels[:2], axis=1),
                                                   np.concatenate(panels[2:], axis=1)], axis=0))
    finally:
        for e in gym_envs:
            e.close()
    metrics = {}
    for i, gait in enumerate(GAITS):
        after = np.array(contacts[i][fps:]).reshape(-1, 4)
        metrics[gait] = {"fell": bool(fell[i]),
                         "contact_pattern": float(gait_sync(after, i).mean()) if len(after) else float("nan"),
                         "feet_in_air": float((~after).mean()) if len(after) else float("nan")}
    print(f"wrote {os.path.abspath(cfg.output)} ({n_steps} frames at {fps} fps, 2 x 2 gaits; {description})")
    for gait, m in metrics.items():
        print(f"{gait:>5}: fell {m['fell']}, contact pattern {m['contact_pattern']:.2f}, "
              f"feet in air {m['feet_in_air']:.2f}")
    return metrics


if __name__ == "__main__":
    main(tyro.cli(VideoConfig))
