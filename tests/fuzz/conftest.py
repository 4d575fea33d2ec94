"""The ``fuzz`` marker, registered here too so that the fuzz tests run warning-free on their own
(``pytest -m fuzz tests/fuzz``; ``FUZZ_EXAMPLES=N`` for a longer run)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "fuzz: Hypothesis fuzz tests of the input readers (bounded; FUZZ_EXAMPLES=N "
                                       "for longer runs)")
