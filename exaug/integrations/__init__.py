"""Integrations with the tools around a training loop; each submodule needs its optional extra.

- :mod:`exaug.integrations.lightning`: ``ExConModule`` (SupCon / ExCon / ExConB as a ``LightningModule``) and
  ``SaliencyGridCallback`` (``pip install "exaug[lightning]"``).

Experiment tracking of the reference trainer (``exaug train --logger wandb``) lives in
:mod:`exaug.training.trackers`; cluster submission of the benchmark grids in ``benchmarks/cluster.py``.
Nothing is imported here, so ``import exaug.integrations`` never needs an extra.
"""

__all__: list[str] = []
