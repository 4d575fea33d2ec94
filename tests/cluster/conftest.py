"""The `cluster` marker: tests that start a real single-node Slurm (tests/cluster/slurm.sh); run
them with `make test-cluster` (root, Debian's packages installed on first use)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster: runs a real single-node Slurm (root; `make test-cluster`)")
