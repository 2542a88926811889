"""The benchmark of issue 8 (run by hand): see bench/README.md."""
