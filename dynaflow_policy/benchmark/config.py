"""What one benchmark run measures: the checkpoints, the data and the sizes of each section."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """Inputs and sizes of :func:`dynaflow_policy.benchmark.run_benchmark`.

    A checkpoint or data path that does not exist is reported as "not run".
    """

    dynaflow: str
    """DynaFlow checkpoint trained on the expert demonstrations."""
    dynaflow_kinematic: str
    """DynaFlow checkpoint trained on the kinematic gaits."""
    ppo: str
    """PPO expert."""
    state_flow: str
    """State-space flow + inverse-dynamics baseline."""
    ppo_gaits: str
    """PPO expert of the four gaits (section 6)."""
    dynaflow_gaits: str
    """DynaFlow checkpoint trained on the four-gait expert's demonstrations (section 6)."""
    data: str
    """Expert demonstrations (held-out windows come from the DynaFlow checkpoint's split)."""
    kinematic_data: str
    """Kinematic gait dataset."""
    out: str
    """Output directory."""
    ode_steps: int | None = None
    """N of the 'DynaFlow (N ODE steps)' row; None: the DynaFlow checkpoint's own default (its export's
    ``--ode-steps``). ``eval/ablation.py`` compares N = 1, 2, 4, 10."""
    windows: int = 128
    """Held-out windows for section 1."""
    constant_command: bool = True
    """Section 1 and 3 draw only windows whose command does not change over them (a model told (x0, c)
    can reproduce those; the data file must hold commands for longer than a window)."""
    episodes: int = 10
    """Closed-loop episodes per command."""
    seconds: float = 10.0
    """Closed-loop episode length (s)."""
    sweep_episodes: int = 5
    """Closed-loop episodes per scenario of the command sweep (section 5, ``benchmark.sweep.SWEEP``)."""
    switch_episodes: int = 5
    """Episodes of the gait-switching scenario (section 6, ``benchmark.four_gaits.SWITCH_SCENARIO``)."""
    open_loop_seconds: float = 5.0
    """Length of the chained open-loop plans (s)."""
    open_loop_starts: int = 8
    """Held-out start states for section 3."""
    kinematic_windows: int = 16
    """Kinematic windows whose actions are fitted for the data SAE (LM fit, ~0.1 s per transition)."""
    kinematic_command_windows: int = 64
    """Held-out kinematic windows whose distinct commands per gait the kinematic closed loop cycles through."""
    seed: int = 0
    """Seed of window sampling, noise and env resets."""
    latency_calls: int = 200
    """Timed act() calls per controller for the latency in the closed-loop headings."""
    latency_warmup: int = 5
    """Untimed act() calls before them (compilation)."""

    def __post_init__(self) -> None:
        if self.ode_steps is not None and (not isinstance(self.ode_steps, int) or self.ode_steps < 1):
            raise ValueError(f"--ode-steps must be a positive int or None, got {self.ode_steps!r}")
        for name in ("windows", "episodes", "sweep_episodes", "switch_episodes", "open_loop_starts",
                     "kinematic_windows", "kinematic_command_windows", "latency_calls"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive int, got {value!r}")
        if not isinstance(self.latency_warmup, int) or self.latency_warmup < 0:
            raise ValueError(f"--latency-warmup must be an int >= 0, got {self.latency_warmup!r}")
        for name in ("seconds", "open_loop_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
