"""``python -m sb3_xinet.record_video``: the RL Zoo's video recorder for saved XiNetSAC and XiNetTQC models.

Every ``rl_zoo3.record_video`` flag passes through; it needs ``moviepy`` and, for MuJoCo without a display,
``MUJOCO_GL=egl``. Example::

    MUJOCO_GL=egl python -m sb3_xinet.record_video --algo xinet_sac --env Hopper-v5 -f logs/ -n 1000
"""

import runpy

from sb3_xinet.zoo import register


def main() -> None:
    register(evaluation=True)
    # the zoo's recorder is a script (all of it under ``if __name__ == "__main__"``), not a function
    runpy.run_module("rl_zoo3.record_video", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
