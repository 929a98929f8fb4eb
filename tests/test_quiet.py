"""Commands print neither MJX's "Failed to import warp" lines nor JAX's os.fork() warning."""

import os
import subprocess
import sys

from envs.mjx_import import WARP_PROBE_LINES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args: list[str]) -> str:
    """stdout + stderr of ``python args`` run from the repository root; fails the test on a non-zero exit."""
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def _noise(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(WARP_PROBE_LINES) or "os.fork()" in line]


def test_module_cli_help_is_quiet():
    out = _run(["-m", "dynaflow_policy.data.kinematic", "--help"])
    assert "--n-trajectories" in out
    assert not _noise(out), out


def test_rollout_video_of_a_jax_controller_is_quiet(tmp_path):
    """JAX is running when imageio-ffmpeg starts ffmpeg: the case that used to fork with a warning."""
    video = tmp_path / "dynaflow.mp4"
    out = _run(["eval/rollout_video.py", "--controller", "dynaflow", "--seconds", "0.1", "--width", "64",
                "--height", "48", "--output", str(video)])
    assert video.exists() and "wrote" in out
    assert not _noise(out), out
