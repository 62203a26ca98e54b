"""sb3-xinet's benchmarks: scripts run as ``python -m benchmarks.<script>`` from the repository's root, sharing
:mod:`benchmarks.common`."""
