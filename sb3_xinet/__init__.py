"""sb3-xinet: SAC + OFENet whose units are Bernoulli-gated and physically removed while it learns."""

import os

from sb3_xinet.callbacks import XiNetPruningCallback
from sb3_xinet.cost import LossScale, cost_penalty, count_parameters
from sb3_xinet.gates import BernoulliGate, score_function_loss
from sb3_xinet.nets import GatedDenseNet, GatedLayer, GatedMLP
from sb3_xinet.ofenet import OFENet
from sb3_xinet.policies import MlpPolicy, XiNetPolicy
from sb3_xinet.summary import PruningSummary
from sb3_xinet.xinet_sac import XiNetSAC

with open(os.path.join(os.path.dirname(__file__), "version.txt")) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "BernoulliGate",
    "GatedDenseNet",
    "GatedLayer",
    "GatedMLP",
    "LossScale",
    "MlpPolicy",
    "OFENet",
    "PruningSummary",
    "XiNetPolicy",
    "XiNetPruningCallback",
    "XiNetSAC",
    "cost_penalty",
    "count_parameters",
    "score_function_loss",
]
