"""DynaFlow: DiT action predictor, flow matching through the MJX rollout, metrics, and the closed-loop policy."""

from dynaflow_policy.configs import DiTConfig, FlowConfig
from dynaflow_policy.flow import matching_loss, sample
from dynaflow_policy.frames import from_heading_frame, to_heading_frame
from dynaflow_policy.loading import load_policy
from dynaflow_policy.metrics import action_recovery_rmse, sae, sae_native, tre
from dynaflow_policy.model import DiT1d
from dynaflow_policy.normalizer import Normalizer
from dynaflow_policy.policy import DynaFlowPolicy

__all__ = ["DiTConfig", "FlowConfig", "matching_loss", "sample", "from_heading_frame", "to_heading_frame",
           "action_recovery_rmse", "sae", "sae_native", "tre", "DiT1d", "Normalizer",
           "DynaFlowPolicy", "load_policy"]
