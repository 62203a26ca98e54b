"""``python -m sb3_xinet.enjoy``: the RL Zoo's evaluation command for saved (pruned) XiNetSAC and XiNetTQC
models (the keys of :mod:`sb3_xinet.train`).

Every ``rl_zoo3.enjoy`` flag passes through; without ``--num-threads`` torch runs on one thread. Example::

    python -m sb3_xinet.enjoy --algo xinet_sac --env Hopper-v5 -f logs/ --no-render -n 5000 --deterministic
"""

import sys

from rl_zoo3.enjoy import enjoy

from sb3_xinet.zoo import register, with_one_thread


def main() -> None:
    register(evaluation=True)
    sys.argv = [sys.argv[0], *with_one_thread(sys.argv[1:])]
    enjoy()


if __name__ == "__main__":
    main()
