"""Crash, fault and load scenarios (`soak_*`), run small and seeded by the tests here and in
tests/e2e/test_faults_*.py, and at full size by bench/soak.py."""
