"""What every XiNet algorithm shares: argument checks and the algorithm machinery (:mod:`.algorithm`)."""
