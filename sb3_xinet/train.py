"""``python -m sb3_xinet.train``: the RL Zoo's training command, with ``xinet_sac``, ``xinet_tqc`` and their dense
baselines ``ofenet_sac`` and ``ofenet_tqc`` registered.

Every ``rl_zoo3.train`` flag passes through; without ``-conf``/``--conf-file`` the packaged
``hyperparams/<algo>.yml`` is used, and without ``--num-threads`` torch runs on one thread. Example::

    python -m sb3_xinet.train --algo xinet_sac --env Hopper-v5 -f logs/ --seed 0 --eval-freq 10000
"""

import sys

from rl_zoo3.train import train

from sb3_xinet.zoo import prepare


def main() -> None:
    sys.argv = [sys.argv[0], *prepare(sys.argv[1:])]
    train()


if __name__ == "__main__":
    main()
