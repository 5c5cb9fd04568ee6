from rl_advkd.advkd.advkd import AdvKD
from rl_advkd.advkd.buffer import AdvKDRolloutBuffer, AdvKDRolloutSamples

__all__ = ["AdvKD", "AdvKDRolloutBuffer", "AdvKDRolloutSamples"]
