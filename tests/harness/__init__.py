"""The harness behind the long checks (fault scenarios, crash and race trials) and the
in-process CLI and log capture they share with the tests: tests/ import it as `harness`
(pytest puts tests/ on sys.path) and scripts/ import it after putting tests/ on sys.path,
while nothing here imports from scripts/ or from a test module, so the dependency runs
one way (scripts -> harness <- tests).
"""
