"""The benchmark: DynaFlow against the PPO expert and a state-space flow + inverse-dynamics baseline.

Methods (all in the same Gymnasium env, on the same commands and seeds):

- ``DynaFlow (1 ODE step)``, ``DynaFlow (N ODE steps)``: a DynaFlow checkpoint.
- ``PPO expert``: the demonstrator (closed loop only).
- ``State flow + ID``: flow matching in state space with an inverse-dynamics
  model trained on the robot's own random play (Decision-Diffuser style,
  :mod:`dynaflow_policy.baselines`).

Sections (metrics defined in ``docs/design.md``, :mod:`dynaflow_policy.metrics`
and :mod:`dynaflow_policy.closed_loop`):

1. Held-out demonstration windows (:mod:`dynaflow_policy.data.split`; by
   default only windows whose command holds over the window): SAE of the data
   and of each generator's (states, actions), TRE against the demonstration,
   action recovery RMSE against the expert's held-out actions. A reference row
   replays the PPO expert from each window's x0 with the window's first command
   held: the TRE of the demonstrator itself when it knows only what a model
   conditioned on (x0, c) is told (0 when the command holds over the window).
2. Closed loop: falls per minute, vx / yaw-rate tracking RMSE, torque, energy
   per metre, foot slip, the fraction of episodes that reached half the
   command, ``act()`` latency (mean per control step and p99).
3. Open loop, long horizon: from held-out start states, each generator plans
   H steps, the next plan starts at the last planned state, with no feedback;
   the chained actions are then executed in native MuJoCo. Drift = distance
   between the planned and the executed base position (m) and the normalised
   state distance, over time.
4. Kinematic gaits (:mod:`dynaflow_policy.benchmark.gaits`): SAE of the
   kinematic data (actions fitted per transition, an upper bound) against SAE
   of DynaFlow's output, and the gait's contact pattern
   (:func:`envs.task.gait_sync`) of the reference against the executed motion.
5. Command sweep (:mod:`dynaflow_policy.benchmark.sweep`): the closed loop
   over the expert's whole command range: standing, backward, sideways,
   combined commands, a command that changes mid-episode, and shoves.
6. Four gaits (:mod:`dynaflow_policy.benchmark.four_gaits`): the four-gait
   PPO expert and DynaFlow trained on its demonstrations, per gait (falls,
   tracking, contact pattern, feet in the air), switching gait mid-episode,
   and foot-contact timelines against the gait clock (``gait_contacts.png``;
   ``kinematic_contacts.png`` does the same for section 4).

A method whose checkpoint or dataset is missing is listed as "not run" with
the missing path; nothing is filled in for it. ``eval/benchmark.py`` is the
command line.
"""

from dynaflow_policy.benchmark.config import BenchmarkConfig
from dynaflow_policy.benchmark.methods import HELD_COMMAND_ROW
from dynaflow_policy.benchmark.report import BenchmarkResults
from dynaflow_policy.benchmark.run import run_benchmark

__all__ = ["BenchmarkConfig", "BenchmarkResults", "HELD_COMMAND_ROW", "run_benchmark"]
