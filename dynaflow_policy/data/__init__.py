"""Demonstration datasets: the ``.npz`` schema, training windows, the kinematic gait generator.

The kinematic generator's names are imported on first use, so that
``python -m dynaflow_policy.data.kinematic`` does not import its own module twice.
"""

from dynaflow_policy.data.schema import (SCHEMA_VERSION, Dataset, DatasetError, DatasetMetadata, load_dataset,
                                         save_dataset)
from dynaflow_policy.data.windows import WindowSet, split_trajectories, train_held_out_windows, window_starts

_KINEMATIC = ("GAIT_OFFSETS", "KinematicGaitConfig", "generate_kinematic_dataset", "leg_fk",
              "leg_geometry", "leg_ik", "synthesize_trajectory")


def __getattr__(name):
    if name in _KINEMATIC:
        from dynaflow_policy.data import kinematic
        return getattr(kinematic, name)
    raise AttributeError(f"module 'dynaflow_policy.data' has no attribute {name!r}")


__all__ = ["SCHEMA_VERSION", "Dataset", "DatasetError", "DatasetMetadata", "load_dataset", "save_dataset",
           "WindowSet", "split_trajectories", "train_held_out_windows", "window_starts", *_KINEMATIC]
