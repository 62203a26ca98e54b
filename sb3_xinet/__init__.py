"""sb3-xinet: SAC and TQC on an OFENet whose units are Bernoulli-gated and physically removed while they learn."""

import os

from sb3_xinet.callbacks import XiNetPruningCallback
from sb3_xinet.common.errors import PrunedShapeError, UnsupportedSpaceError
from sb3_xinet.cost import LossScale, count_parameters
from sb3_xinet.gates import BernoulliGate, score_function_loss
from sb3_xinet.nets import GatedDenseNet, GatedLayer, GatedMLP
from sb3_xinet.ofenet import OFENet
from sb3_xinet.policies import MlpPolicy, XiNetPolicy, XiNetTQCPolicy
from sb3_xinet.regularizer import Regularizer
from sb3_xinet.schedule import PruningSchedule
from sb3_xinet.summary import PruningSummary
from sb3_xinet.time_cost import TimeCalibration
from sb3_xinet.xinet_sac import XiNetSAC
from sb3_xinet.xinet_tqc import XiNetTQC

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
    "PrunedShapeError",
    "PruningSchedule",
    "PruningSummary",
    "Regularizer",
    "TimeCalibration",
    "UnsupportedSpaceError",
    "XiNetPolicy",
    "XiNetPruningCallback",
    "XiNetSAC",
    "XiNetTQC",
    "XiNetTQCPolicy",
    "count_parameters",
    "score_function_loss",
]
