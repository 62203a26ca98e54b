"""``python -m sb3_xinet.enjoy``: the RL Zoo's evaluation command for saved (pruned) XiNetSAC models.

Every ``rl_zoo3.enjoy`` flag passes through. Example::

    python -m sb3_xinet.enjoy --algo xinet_sac --env Hopper-v5 -f logs/ --no-render -n 5000 --deterministic
"""

from rl_zoo3.enjoy import enjoy

from sb3_xinet.zoo import register


def main() -> None:
    register(evaluation=True)
    enjoy()


if __name__ == "__main__":
    main()
