"""Registers seqlab's sweepers with Hydra before an entry point starts.

Hydra finds plugins by listing the `hydra_plugins` namespace package. A wheel install is found that
way; an editable install (`pip install -e .`) serves the package through an import hook that such
a listing does not see, so the entry points register the classes themselves.
"""

from hydra.core.plugins import Plugins


def register_sweepers() -> None:
    # Scan first: the scan re-executes plugin modules it finds, and the classes registered last win;
    # so they are imported here, after it.
    plugins = Plugins.instance()

    from hydra_plugins.seqlab_sweepers.basic_sweeper import CrossValidationBasicSweeper
    from hydra_plugins.seqlab_sweepers.optuna_sweeper import OptunaSweeper

    for sweeper in (CrossValidationBasicSweeper, OptunaSweeper):
        plugins.register(sweeper)
