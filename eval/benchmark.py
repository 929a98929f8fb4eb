"""The benchmark: DynaFlow against the PPO expert and a state-space flow + inverse-dynamics baseline.

    python eval/benchmark.py            # shipped checkpoints and data; writes results/benchmark/

One command, every number in ``results/benchmark/benchmark.md`` (and the
plots beside it) measured by it. Methods (all in the same Gymnasium env, on
the same commands and seeds):

- ``DynaFlow (1 ODE step)``, ``DynaFlow (N ODE steps)``: ``checkpoints/dynaflow_go1_expert``.
- ``PPO expert``: ``checkpoints/ppo_go1_trot`` (the demonstrator; closed loop only).
- ``State flow + ID``: ``checkpoints/state_flow_go1_expert``, flow matching in
  state space with an inverse-dynamics model trained on the robot's own random
  play (Decision-Diffuser style, :mod:`dynaflow_policy.baselines`).

Sections (metrics of DESIGN.md, :mod:`dynaflow_policy.metrics` and
:mod:`dynaflow_policy.closed_loop`):

1. Held-out demonstration windows (the trajectories the checkpoint's own
   train / held-out split kept out): SAE of the data and of each generator's
   (states, actions), TRE against the demonstration, action recovery RMSE
   against the expert's held-out actions. A reference row replays the PPO
   expert from each window's x0 with the window's first command held: the
   commands change within a window, so this is the TRE of the demonstrator
   itself when it knows only what a model conditioned on (x0, c) is told.
2. Closed loop: falls per minute, vx / yaw-rate tracking RMSE, torque,
   energy per metre, foot slip, the fraction of episodes that reached half the
   command, ``act()`` latency (mean per control step and p99).
3. Open loop, long horizon: from held-out start states, each generator plans
   H steps, the next plan starts at the last planned state, for 5 s with no
   feedback; the chained actions are then executed in native MuJoCo. Drift =
   distance between the planned and the executed base position (m) and the
   normalised state distance, over time.
4. Kinematic set (``checkpoints/dynaflow_go1_kinematic``, ``data/kinematic_small.npz``):
   SAE of the kinematic data (actions fitted per transition, an upper bound)
   against SAE of DynaFlow's output, and the gait's contact pattern
   (:func:`envs.task.gait_sync`) of the reference against the executed motion.

A method whose checkpoint or dataset is missing is listed as "not run" with
the missing path; nothing is filled in for it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Callable

import numpy as np
import tyro

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CKPT = os.path.join(REPO, "checkpoints")


@dataclasses.dataclass(frozen=True)
class Args:
    dynaflow: str = os.path.join(CKPT, "dynaflow_go1_expert")
    """DynaFlow checkpoint trained on the expert demonstrations."""
    dynaflow_kinematic: str = os.path.join(CKPT, "dynaflow_go1_kinematic")
    """DynaFlow checkpoint trained on the kinematic gaits."""
    ppo: str = os.path.join(CKPT, "ppo_go1_trot")
    """PPO expert."""
    state_flow: str = os.path.join(CKPT, "state_flow_go1_expert")
    """State-space flow + inverse-dynamics baseline."""
    data: str = os.path.join(REPO, "data", "go1_expert_small.npz")
    """Expert demonstrations (held-out windows come from the DynaFlow checkpoint's split)."""
    kinematic_data: str = os.path.join(REPO, "data", "kinematic_small.npz")
    """Kinematic gait dataset."""
    ode_steps: int = 10
    """N of the 'DynaFlow (N ODE steps)' row."""
    windows: int = 128
    """Held-out windows for section 1."""
    episodes: int = 10
    """Closed-loop episodes per command."""
    seconds: float = 10.0
    """Closed-loop episode length (s)."""
    open_loop_seconds: float = 5.0
    """Length of the chained open-loop plans (s)."""
    open_loop_starts: int = 8
    """Held-out start states for section 3."""
    kinematic_windows: int = 16
    """Kinematic windows whose actions are fitted for the data SAE (LM fit, ~0.1 s per transition)."""
    out: str = os.path.join(REPO, "results", "benchmark")
    """Output directory."""
    seed: int = 0
    """Seed of window sampling, noise and env resets."""


# --------------------------------------------------------------------------------------------------------------------
# Generators: (x0 world (37,), command (3,), gait int) -> (X world (H+1, 37), U (H, 12))


Generator = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def dynaflow_generator(policy) -> Generator:
    def generate(x0, command, gait):
        U = policy.plan(x0, command, gait)
        return policy.planned_states(), U

    return generate


def state_flow_generator(policy) -> Generator:
    """Planned states, and the inverse dynamics' action for each planned transition."""
    from dynaflow_policy.baselines.inverse_dynamics import predict

    def generate(x0, command, gait):
        X = policy.plan(x0, command, gait)  # (H+1, 37) world frame
        return X, predict(policy.inverse_dynamics, X[:-1], X[1:])

    return generate


HELD_COMMAND_ROW = "PPO expert told only the first command (held for H steps)"


def held_command_generator(expert, horizon: int) -> Generator:
    """The demonstrator told only (x0, c): the expert in native MuJoCo with the command held at c for H steps.

    The demonstrations' commands change within a window, so this is the TRE of
    the demonstrator itself when it knows what a conditional model is given.
    """
    from dynaflow_policy.data.collect import rollout_expert

    def generate(x0, command, gait):
        states, actions, ok = rollout_expert(expert, np.asarray(x0, np.float64),
                                             np.repeat(np.asarray(command, np.float32)[None], horizon + 1, 0), gait)
        if not ok:
            raise RuntimeError("the expert fell in a held-out window with its command held")
        return states, actions[:horizon]

    return generate


def load_methods(args: Args) -> tuple[dict, dict, list[str]]:
    """(controllers name -> controller, generators name -> Generator, notes on what did not run)."""
    from dynaflow_policy import DynaFlowPolicy
    from dynaflow_policy.experts import load_expert

    controllers, generators, missing = {}, {}, []
    if os.path.isdir(args.dynaflow):
        for n in (1, args.ode_steps):
            policy = DynaFlowPolicy.from_checkpoint(args.dynaflow, ode_steps=n, seed=args.seed)
            name = f"DynaFlow ({n} ODE step{'s' if n > 1 else ''})"
            controllers[name] = policy
            generators[name] = dynaflow_generator(policy)
    else:
        missing.append(f"DynaFlow: {os.path.relpath(args.dynaflow, REPO)} missing")
    if os.path.isdir(args.ppo):
        controllers["PPO expert"] = load_expert(args.ppo)
    else:
        missing.append(f"PPO expert: {os.path.relpath(args.ppo, REPO)} missing")
    if os.path.isdir(args.state_flow):
        from dynaflow_policy.baselines.policy import StateFlowIDPolicy

        policy = StateFlowIDPolicy.from_checkpoint(args.state_flow, seed=args.seed)
        controllers["State flow + ID"] = policy
        generators["State flow + ID"] = state_flow_generator(policy)
    else:
        missing.append(f"State flow + ID: {os.path.relpath(args.state_flow, REPO)} missing")
    return controllers, generators, missing


# --------------------------------------------------------------------------------------------------------------------
# Sections


def _split_of(checkpoint: str | None, kind: str):
    """(dataset basenames, held_out_fraction, seed, horizon, normaliser) of a training checkpoint, or None."""
    if checkpoint is None or not os.path.isdir(checkpoint):
        return None
    if kind == "dynaflow":
        from dynaflow_policy.train import load_checkpoint

        ckpt = load_checkpoint(checkpoint)
        cfg = ckpt.config
    else:
        from dynaflow_policy.baselines.train import load_checkpoint

        ckpt = load_checkpoint(checkpoint)
        cfg = ckpt.config.train
    return ({os.path.basename(p) for p in cfg.dataset}, cfg.held_out_fraction, cfg.seed, cfg.horizon,
            ckpt.normalizer)


def held_out_windows(args: Args, data_path: str, checkpoints: dict[str, str | None], horizon: int = 16):
    """Evaluation windows of ``data_path`` that no checkpoint in ``checkpoints`` (kind -> path) trained on.

    If ``data_path`` is one of the checkpoints' training files, the windows are
    those of the trajectories the checkpoint held out (the checkpoints must
    agree on the split); otherwise the file is evaluation data as a whole (the
    committed ``data/*_small.npz`` files are made with other seeds than the
    training sets). Returns (batch of ``args.windows`` windows, normaliser, description of the rule).
    """
    from dynaflow_policy.data import load_dataset
    from dynaflow_policy.data.windows import WindowSet, train_held_out_windows
    from dynaflow_policy.frames import to_heading_frame
    from dynaflow_policy.normalizer import Normalizer

    splits = {k: _split_of(p, k) for k, p in checkpoints.items()}
    splits = {k: v for k, v in splits.items() if v is not None}
    normalizer = next((v[4] for v in splits.values()), None)
    horizon = next((v[3] for v in splits.values()), horizon)
    ds = load_dataset(data_path, horizon=horizon)
    trained_on = {k: v for k, v in splits.items() if os.path.basename(data_path) in v[0]}
    if trained_on:
        keys = {(v[1], v[2], v[3]) for v in trained_on.values()}
        if len(keys) > 1:
            raise ValueError(f"{data_path}: the checkpoints trained on it with different held-out splits "
                             f"(fraction, seed, horizon) {sorted(keys)}: their held-out windows differ")
        fraction, seed, _ = keys.pop()
        fit_set, held = train_held_out_windows(ds, horizon, fraction, seed)
        rule = f"the trajectories held out of training (fraction {fraction}, seed {seed})"
    else:
        held = WindowSet(ds, horizon)
        fit_set = held
        rule = "the whole file (no checkpoint trained on it)"
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(held), size=min(args.windows, len(held)), replace=False))
    if normalizer is None:
        normalizer = Normalizer.fit(to_heading_frame(fit_set.batch(np.arange(0, len(fit_set), 7))["states"]))
    return held.batch(idx), normalizer, rule


def section_offline(generators: dict, batch: dict, normalizer, expert=None) -> list[dict]:
    """Rows of section 1; with ``expert``, also the demonstrator with the window's first command held."""
    from dynaflow_policy.metrics import action_recovery_rmse, sae_native, tre

    X_ref = batch["states"].astype(np.float64)  # (B, H+1, 37)
    horizon = X_ref.shape[1] - 1
    rows = []
    if "expert_actions" in batch:
        rows.append({"method": "demonstrations (expert actions)",
                     "sae": sae_native(X_ref, batch["expert_actions"], normalizer), "tre": 0.0,
                     "action_rmse": 0.0})
    if expert is not None:
        generators = {HELD_COMMAND_ROW: held_command_generator(expert, horizon), **generators}
    for name, generate in generators.items():
        out = [generate(x[0], c, g) for x, c, g in zip(X_ref, batch["command"], batch["gait"])]
        X = np.stack([o[0] for o in out])
        U = np.stack([o[1] for o in out])
        rows.append({"method": name, "sae": sae_native(X, U, normalizer), "tre": float(tre(X, X_ref, normalizer)),
                     "action_rmse": float(action_recovery_rmse(U, batch["expert_actions"]))
                     if "expert_actions" in batch else float("nan")})
    return rows


def section_closed_loop(controllers: dict, args: Args) -> dict:
    from dynaflow_policy.closed_loop import EXPERT_COMMANDS, evaluate

    results = {}
    for name, controller in controllers.items():
        t0 = time.perf_counter()
        results[name] = evaluate(controller, EXPERT_COMMANDS, args.episodes, args.seconds, args.seed)
        print(f"  closed loop {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return results


def section_open_loop(generators: dict, batch: dict, normalizer, args: Args) -> dict:
    """name -> dict(t (S,), position drift (S,) m, state drift (S,)) averaged over start states."""
    from dynaflow_policy.metrics import state_distance
    from envs.native import NativeGo1
    from envs.physics import PHYSICS

    steps = int(round(args.open_loop_seconds / PHYSICS.ctrl_dt))
    starts = range(min(args.open_loop_starts, len(batch["states"])))
    sim = NativeGo1()
    out = {}
    for name, generate in generators.items():
        pos, dist = [], []
        for i in starts:
            x = batch["states"][i, 0].astype(np.float64)
            planned, actions = [x], []
            while len(actions) < steps:
                X, U = generate(planned[-1], batch["command"][i], int(batch["gait"][i]))
                planned.extend(X[1:])
                actions.extend(U)
            planned, actions = np.stack(planned[:steps + 1]), np.stack(actions[:steps])
            executed = sim.rollout(planned[0], actions)
            pos.append(np.linalg.norm(executed[:, :3] - planned[:, :3], axis=1))
            dist.append(state_distance(planned, executed, np.asarray(normalizer.std, np.float64)))
        out[name] = {"t": np.arange(steps + 1) * PHYSICS.ctrl_dt, "position": np.mean(pos, axis=0),
                     "state": np.mean(dist, axis=0)}
    return out


def section_kinematic(args: Args) -> dict | None:
    """Kinematic data SAE (fitted actions) vs DynaFlow output SAE; gait contact pattern of reference vs executed."""
    if not (os.path.isdir(args.dynaflow_kinematic) and os.path.isfile(args.kinematic_data)):
        return None
    from dynaflow_policy import DynaFlowPolicy
    from dynaflow_policy.closed_loop import run_episode
    from dynaflow_policy.data.kinematic import foot_positions
    from dynaflow_policy.metrics import sae_fitted_native, sae_native
    from envs.physics import FOOT_CONTACT_HEIGHT
    from envs.task import GAITS, body_linvel, gait_sync

    batch, normalizer, _ = held_out_windows(dataclasses.replace(args, windows=args.kinematic_windows),
                                            args.kinematic_data, {"dynaflow": args.dynaflow_kinematic})
    X_ref = batch["states"].astype(np.float64)
    data_sae, _ = sae_fitted_native(X_ref, normalizer)
    policy = DynaFlowPolicy.from_checkpoint(args.dynaflow_kinematic, seed=args.seed)
    generate = dynaflow_generator(policy)
    out = [generate(x[0], c, g) for x, c, g in zip(X_ref, batch["command"], batch["gait"])]
    gen_sae = sae_native(np.stack([o[0] for o in out]), np.stack([o[1] for o in out]), normalizer)

    import gymnasium

    import envs

    gaits = {}
    env = gymnasium.make(envs.GYM_ID, max_episode_steps=int(round(args.seconds / envs.PHYSICS.ctrl_dt)))
    for g, gait in enumerate(GAITS):
        sel = batch["gait"] == g
        if not np.any(sel):
            continue
        ref_contact = foot_positions(X_ref[sel])[..., 2] < FOOT_CONTACT_HEIGHT  # (n, H+1, 4)
        command = batch["command"][sel][0]
        episodes = [run_episode(env, policy, command, args.seconds, args.seed + i, gait)
                    for i in range(args.episodes)]
        steps = sum(len(ep["contacts"]) for ep in episodes)
        falls = sum(ep["fell"] for ep in episodes)
        contacts = np.concatenate([ep["contacts"] for ep in episodes])  # (steps, 4)
        velocity = np.concatenate([body_linvel(ep["states"][1:])[:, :2] for ep in episodes])  # (steps, 2)
        gaits[gait] = {"reference": float(gait_sync(ref_contact, g).mean()),
                       "executed": float(gait_sync(contacts, g).mean()),
                       "reference_feet_in_air": float(1.0 - ref_contact.mean()),
                       "feet_in_air": float(1.0 - contacts.mean()),
                       "speed": float(np.linalg.norm(velocity, axis=1).mean()),
                       "command": [float(c) for c in command], "episodes": args.episodes, "falls": int(falls),
                       "falls_per_minute": falls / (steps * envs.PHYSICS.ctrl_dt / 60.0),
                       "survival_seconds": steps * envs.PHYSICS.ctrl_dt / args.episodes}
    env.close()
    return {"data_sae": data_sae, "dynaflow_sae": gen_sae, "gaits": gaits, "windows": len(X_ref)}


# --------------------------------------------------------------------------------------------------------------------
# Report


def plots(closed: dict, open_loop: dict, out: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if closed:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        names = list(closed)
        commands = list(next(iter(closed.values())))
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            xs = np.arange(len(commands)) + j * width
            axes[0].bar(xs, [closed[name][c].vx_rmse for c in commands], width, label=name)
            axes[1].bar(xs, [closed[name][c].falls_per_minute for c in commands], width, label=name)
        for ax, title in zip(axes, ("vx tracking RMSE (m/s)", "falls per minute")):
            ax.set_xticks(np.arange(len(commands)) + 0.4 - width / 2, commands)
            ax.set_title(title)
            ax.grid(alpha=0.3, axis="y")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        paths.append(os.path.join(out, "closed_loop.png"))
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    if open_loop:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        for name, d in open_loop.items():
            axes[0].plot(d["t"], d["position"], label=name)
            axes[1].plot(d["t"], d["state"], label=name)
        axes[0].set_title("open loop: |planned - executed| base position (m)")
        axes[1].set_title("open loop: normalised state distance")
        for ax in axes:
            ax.set_xlabel("time (s)")
            ax.set_yscale("symlog", linthresh=1e-4)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        paths.append(os.path.join(out, "open_loop_drift.png"))
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def report(args: Args, missing, offline, closed, latency, open_loop, kinematic, wall: float,
           windows: tuple[int, int, str]) -> str:
    from dynaflow_policy.closed_loop import markdown_table

    lines = [f"# Benchmark\n\n`python eval/benchmark.py` on {os.cpu_count()} CPU cores, {wall / 60:.1f} min. "
             f"Data: `{os.path.relpath(args.data, REPO)}`.\n"]
    if missing:
        lines.append("Not run: " + "; ".join(missing) + ".\n")
    if offline:
        lines.append(f"## Held-out demonstration windows ({windows[0]} windows, H = {windows[1]}, from "
                     f"{windows[2]})\n")
        lines.append("| method | SAE | TRE | action RMSE vs expert |\n|---|---|---|---|")
        lines += [f"| {r['method']} | {r['sae']:.3g} | {r['tre']:.3g} | {r['action_rmse']:.3g} |" for r in offline]
        lines.append("")
    for name, results in closed.items():
        lines.append(f"## Closed loop: {name} ({args.episodes} episodes x {args.seconds:g} s per command; act() "
                     f"{1e3 * latency[name]['mean']:.2f} ms per control step on average, p99 "
                     f"{1e3 * latency[name]['p99']:.2f} ms, for a planner the cost of a replanning step)\n")
        lines.append(markdown_table(results) + "\n")
    if open_loop:
        lines.append(f"## Open loop, {args.open_loop_seconds:g} s of chained plans, no feedback "
                     f"({args.open_loop_starts} held-out starts)\n")
        lines.append("| method | position drift at 1 s (m) | at end (m) | state distance at end |\n|---|---|---|---|")
        for name, d in open_loop.items():
            k1 = min(50, len(d["t"]) - 1)
            lines.append(f"| {name} | {d['position'][k1]:.3g} | {d['position'][-1]:.3g} | {d['state'][-1]:.3g} |")
        lines.append("")
    if kinematic is not None:
        lines.append(f"## Kinematic gaits ({kinematic['windows']} held-out windows)\n")
        lines.append(f"SAE of the kinematic data (actions fitted per transition, an upper bound): "
                     f"{kinematic['data_sae']:.3g}; SAE of DynaFlow's output: {kinematic['dynaflow_sae']:.3g}.\n")
        lines.append(f"Closed loop from the env's resting start, {args.episodes} episodes x {args.seconds:g} s "
                     "per gait, under the command of the gait's first held-out window. Contact-pattern score: "
                     "`envs.task.gait_sync`, mean over the reference windows and over every executed step "
                     "(standing on four feet scores 0.33 for trot, pace and bound, and 1 for pronk). Feet in "
                     "the air: mean fraction of the four feet off the ground (0 when standing). Speed: mean "
                     "horizontal body speed.\n")
        lines.append("| gait | command (vx, vy, yaw rate) | contact-pattern score, reference / executed "
                     "| feet in the air, reference / executed | speed (m/s) | falls / min | survival (s) |\n"
                     "|---|---|---|---|---|---|---|")
        lines += [f"| {g} | ({', '.join(f'{c:.2f}' for c in d['command'])}) | {d['reference']:.2f} / "
                  f"{d['executed']:.2f} | {d['reference_feet_in_air']:.2f} / {d['feet_in_air']:.2f} "
                  f"| {d['speed']:.2f} | {d['falls_per_minute']:.1f} | {d['survival_seconds']:.1f} |"
                  for g, d in kinematic["gaits"].items()]
    else:
        lines.append("Kinematic section not run: "
                     f"{os.path.relpath(args.dynaflow_kinematic, REPO)} or {os.path.relpath(args.kinematic_data, REPO)} "
                     "missing.")
    return "\n".join(lines) + "\n"


def main(args: Args) -> str:
    from envs.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_policy import time_controller

    t0 = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    controllers, generators, missing = load_methods(args)
    offline, open_loop, windows = [], {}, (0, 0, "")
    if os.path.isfile(args.data):
        batch, normalizer, rule = held_out_windows(args, args.data, {"dynaflow": args.dynaflow,
                                                                     "state_flow": args.state_flow})
        windows = (batch["states"].shape[0], batch["states"].shape[1] - 1, rule)
        print("section 1: held-out windows", file=sys.stderr)
        offline = section_offline(generators, batch, normalizer, controllers.get("PPO expert"))
        print("section 3: open loop", file=sys.stderr)
        open_loop = section_open_loop(generators, batch, normalizer, args)
    else:
        missing.append(f"data: {os.path.relpath(args.data, REPO)} missing")
    print("section 2: closed loop", file=sys.stderr)
    closed = section_closed_loop(controllers, args)
    latency = {}
    for name, c in controllers.items():
        act_t, _ = time_controller(c, 200, 5, args.seed)
        latency[name] = {"mean": float(act_t.mean()), "p99": float(np.percentile(act_t, 99))}
    print("section 4: kinematic", file=sys.stderr)
    kinematic = section_kinematic(args)
    text = report(args, missing, offline, closed, latency, open_loop, kinematic, time.perf_counter() - t0, windows)
    paths = plots(closed, open_loop, args.out)
    text += "\n" + "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in paths) + "\n"
    with open(os.path.join(args.out, "benchmark.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "benchmark.json"), "w") as f:
        json.dump({"offline": offline, "latency_s": latency, "missing": missing, "kinematic": kinematic,
                   "closed_loop": {n: {c: dataclasses.asdict(r) for c, r in res.items()} for n, res in closed.items()},
                   "open_loop": {n: {k: v.tolist() for k, v in d.items()} for n, d in open_loop.items()}}, f, indent=1)
    print(text)
    print(f"wrote {os.path.join(args.out, 'benchmark.md')}", file=sys.stderr)
    return text


if __name__ == "__main__":
    main(tyro.cli(Args))
