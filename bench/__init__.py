"""wfcli's benchmarks: ``python -m bench`` (``--quick`` for tiny sizes).

Each section measures one item of issue 6 against its floor or target and adds
rows to a :class:`~bench.harness.Report`; ``bench/__main__.py`` runs them all
and writes ``bench/results/latest.json`` and ``latest.md``.
"""

__all__: list[str] = []
