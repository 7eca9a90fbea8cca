"""What the conformance suite needs beyond the library: the ``testing`` extra.

The library installs without pytest and Hypothesis; the suite and ``python -m kvstore.testing``
need them. Without them, both say which ``pip install`` to run instead of a bare
``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib

from kvstore.errors import MissingDependency

__all__ = ["EXTRA_MODULES", "INSTALL_HINT", "missing_testing_extra", "testing_extra_error"]

INSTALL_HINT = "pip install 'agentx-persistence[testing]'"

# Import name -> distribution name, as pyproject.toml's ``testing`` extra lists them.
EXTRA_MODULES = {"pytest": "pytest", "hypothesis": "hypothesis", "pytest_timeout": "pytest-timeout"}


def missing_testing_extra() -> list[str]:
    """Return the distributions of the ``testing`` extra that cannot be imported here."""
    missing = []
    for module, distribution in EXTRA_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(distribution)
    return missing


def testing_extra_error(missing: list[str]) -> MissingDependency:
    """Return the error naming the ``missing`` distributions and the ``pip install`` to run."""
    return MissingDependency(
        f"the kvstore conformance suite needs the testing extra ({', '.join(missing)}"
        f" {'is' if len(missing) == 1 else 'are'} missing): {INSTALL_HINT}"
    )
