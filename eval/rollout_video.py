"""Render the Go1 in the Gymnasium env to an MP4.

    MUJOCO_GL=egl python eval/rollout_video.py

Until a DynaFlow checkpoint ships, the controller is the default pose (zero
action): the video shows the robot settling under its servos and standing.
It prints where it wrote the file and the base height and tilt it measured.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import tyro


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    output: str = "outputs/go1_standing.mp4"
    """Where to write the MP4."""
    seconds: float = 10.0
    """Duration (s) of simulated time."""
    width: int = 640
    """Frame width (px)."""
    height: int = 480
    """Frame height (px)."""
    seed: int = 0
    """Reset seed (initial joint perturbation and heading)."""


def main(cfg: VideoConfig) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    import gymnasium
    import imageio
    import numpy as np

    import envs
    from envs import task
    from envs.physics import PHYSICS

    env = gymnasium.make(envs.GYM_ID, render_mode="rgb_array", width=cfg.width, height=cfg.height)
    obs, _ = env.reset(seed=cfg.seed, options={"command": (0.0, 0.0, 0.0), "gait": "trot"})
    fps = round(1.0 / PHYSICS.ctrl_dt)
    heights, tilts = [], []
    os.makedirs(os.path.dirname(os.path.abspath(cfg.output)), exist_ok=True)
    with imageio.get_writer(cfg.output, fps=fps, codec="libx264", quality=7, macro_block_size=8) as writer:
        for _ in range(round(cfg.seconds * fps)):
            obs, _, terminated, truncated, _ = env.step(np.zeros(12, np.float32))
            writer.append_data(env.render())
            heights.append(obs[2])
            tilts.append(np.degrees(np.arccos(np.clip(-task.projected_gravity(obs[:37])[2], -1.0, 1.0))))
            if terminated or truncated:
                break
    env.close()
    print(f"wrote {os.path.abspath(cfg.output)} ({len(heights)} frames at {fps} fps)")
    print(f"base height {min(heights):.3f}-{max(heights):.3f} m, max tilt {max(tilts):.1f} deg, "
          f"fell: {bool(terminated)}")


if __name__ == "__main__":
    sys.exit(main(tyro.cli(VideoConfig)))
