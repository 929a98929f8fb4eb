"""dynaflow_policy.benchmark.step_response and eval/step_response.py: windows at command steps, plan RMSE, CLI."""

import json
import os

import numpy as np
import pytest

import envs
from artifacts import load_eval_script, write_dynaflow_checkpoint
from dynaflow_policy.benchmark.step_response import plan_rmse, step_windows, untrained_trajectories
from dynaflow_policy.data.schema import Dataset, DatasetMetadata, save_dataset
from dynaflow_policy.data.split import TrainingSplit
from dynaflow_policy.data.windows import split_trajectories

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H = 8


def _stepping(n: int = 3, t: int = 60, step_at: tuple[int, ...] = (20, 40), actions: bool = True) -> Dataset:
    """Standing states; the command of every trajectory jumps at ``step_at``; expert action k = k / 100."""
    states = np.tile(np.asarray(envs.PHYSICS.home_state, np.float32), (n, t, 1))  # (N, T, 37)
    commands = np.zeros((n, t, 3), np.float32)
    for i, s in enumerate(step_at):
        commands[:, s:] = (0.2 * (i + 1), 0.0, 0.1)
    expert = np.tile((np.arange(t, dtype=np.float32) / 100)[None, :, None], (n, 1, 12)) if actions else None
    return Dataset(states, commands, np.zeros(n, np.int64), DatasetMetadata.for_physics("test"), expert)


def test_windows_start_at_each_command_step_and_later_while_it_holds():
    found = step_windows(_stepping(), H, hold_offset=5)
    # steps at 20 and 40; 5 steps later (25, 45) the command still holds to the end of the window (33, 53)
    assert sorted(map(tuple, found.at_step.tolist())) == [(n, s) for n in range(3) for s in (20, 40)]
    np.testing.assert_array_equal(found.held, found.at_step + [0, 5])  # paired row by row
    # a step whose command changes again before its held window ends is left out
    late = step_windows(_stepping(step_at=(20, 25)), H, hold_offset=5)
    assert set(late.at_step[:, 1].tolist()) == {25} and set(late.held[:, 1].tolist()) == {30}
    assert set(step_windows(_stepping(), H, 5, trajectories=np.array([1])).at_step[:, 0].tolist()) == {1}
    with pytest.raises(ValueError, match="no command step"):
        step_windows(_stepping(step_at=()), H)
    with pytest.raises(ValueError, match="hold_offset \\+ H \\+ 1 = 39"):
        step_windows(_stepping(), H, hold_offset=30)  # 20 + 30 + 8 crosses the step at 40; 40 + 38 passes T
    with pytest.raises(ValueError, match="hold_offset"):
        step_windows(_stepping(), H, hold_offset=0)


def test_only_trajectories_that_no_controller_trained_on_are_measured():
    data = _stepping(n=10)
    everything, rule = untrained_trajectories(data, "x/steps.npz", [])
    assert everything.tolist() == list(range(10)) and "no controller" in rule
    split = TrainingSplit(frozenset({"steps.npz"}), 0.3, 4, H, None)
    other = TrainingSplit(frozenset({"walk.npz"}), 0.3, 5, H, None)
    held, rule = untrained_trajectories(data, "data/steps.npz", [split, other])
    np.testing.assert_array_equal(held, split_trajectories(data.gait, 0.3, 4)[1])
    assert len(held) == 3 and "held out" in rule


class _Replay:
    """Plans the expert's actions (of :func:`_stepping`) at the windows ``starts``, plus a fixed offset; checks
    that it is asked from each window's first state, command and gait."""

    def __init__(self, data: Dataset, starts: np.ndarray, offset: float):
        self.data, self.starts, self.offset = data, starts, offset

    def reset(self, seed=None):
        pass

    def plan(self, x, command, gait, phase=None):
        n, s = self.starts[:, 0], self.starts[:, 1]
        np.testing.assert_array_equal(command, self.data.commands[n, s])  # the new command, not the one before
        np.testing.assert_array_equal(x, self.data.states[n, s])
        np.testing.assert_array_equal(gait, self.data.gait[n])
        steps = s[:, None] + np.arange(H)  # (K, H)
        return np.repeat((steps / 100)[..., None], 12, -1).astype(np.float32) + self.offset


def test_plan_rmse_is_the_error_of_each_planned_action():
    data = _stepping()
    starts = step_windows(data, H, hold_offset=5).at_step
    for offset in (0.0, 0.25):
        np.testing.assert_allclose(plan_rmse(_Replay(data, starts, offset), data, starts), np.full(H, offset),
                                   atol=1e-6)
    with pytest.raises(ValueError, match="no expert actions"):
        plan_rmse(_Replay(data, starts, 0.0), _stepping(actions=False), starts)
    with pytest.raises(ValueError, match="no windows"):
        plan_rmse(_Replay(data, starts, 0.0), data, starts[:0])


def test_cli_writes_the_table_and_refuses_what_it_cannot_measure(tmp_path):
    cli = load_eval_script("step_response")
    ckpt = write_dynaflow_checkpoint(tmp_path / "dynaflow", H)
    data = tmp_path / "steps.npz"
    save_dataset(data, _stepping())
    out = tmp_path / "out"
    cli.main(cli.Args(controller=(f"tiny={ckpt}", f"one={ckpt}:execute_steps=1"), data=str(data), hold_offset=5,
                      out=str(out)))
    table = (out / "step_response.md").read_text()
    assert "| tiny | at a command step (6) |" in table and "| one | command held (5 steps later) (6) |" in table
    assert "every trajectory (no controller trained on the file)" in table
    saved = json.loads((out / "step_response.json").read_text())
    assert len(saved["rmse_per_plan_step"]["tiny"]["at a command step"]) == H
    with pytest.raises(ValueError, match="--controller ppo: .* 'ppo' checkpoint"):
        cli.main(cli.Args(controller=(f"ppo={os.path.join(REPO, 'checkpoints', 'ppo_go1_trot')}",), out=str(out)))
    with pytest.raises(FileNotFoundError, match="--controller x"):
        cli.main(cli.Args(controller=(f"x={tmp_path / 'nowhere'}",), out=str(out)))
    with pytest.raises(ValueError, match="--controller: each NAME once"):
        cli.main(cli.Args(controller=(f"a={ckpt}", f"a={ckpt}:execute_steps=1"), data=str(data), out=str(out)))
    with pytest.raises(FileNotFoundError, match="--data"):
        cli.main(cli.Args(controller=(f"a={ckpt}",), data=str(tmp_path / "none.npz"), out=str(out)))
    with pytest.raises(ValueError, match="--hold-offset 30"):
        cli.main(cli.Args(controller=(f"a={ckpt}",), data=str(data), hold_offset=30, out=str(out)))
    with pytest.raises(ValueError, match="--controller: give at least one"):
        cli.Args(controller=())
    for option in ("windows", "hold_offset"):
        with pytest.raises(ValueError, match="--" + option.replace("_", "-")):
            cli.Args(controller=("a=b",), **{option: 0})
