"""What a fresh ``eqlv2`` process imports: the evaluation verbs start without torch, mmengine and mmdet,
and the plugin module, not the package, registers the modules in mmdet's registries."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "mmengine", "mmdet", "pandas")


def _imported_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.mark.parametrize("verb", ["evaluate-lvis", "collect-metrics", "download", "make-toy"])
def test_a_verb_that_needs_no_model_imports_neither_torch_nor_mmdet(verb):
    # (A fresh process paid seconds for them on a slow 2-core machine: issue 23.)
    assert _imported_after(f"from eqlv2.cli import build_parser\nbuild_parser(({verb!r},))") == []


def test_importing_the_package_registers_nothing_and_the_plugin_registers_the_modules():
    assert _imported_after("import eqlv2") == []
    registered = (
        "import eqlv2.plugin\nfrom mmdet.registry import METRICS, MODELS\n"
        "assert all(MODELS.get(n) for n in ('EQLv2', 'EQL', 'GroupSoftmax', 'LWSBBoxHead', 'ECMLoss'))\n"
        "assert METRICS.get('ExactLVISMetric')"
    )
    assert "mmdet" in _imported_after(registered)


def test_the_full_parser_holds_every_verb_in_the_pipelines_order():
    import argparse

    from eqlv2.cli import VERBS, build_parser

    (subparsers,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert tuple(subparsers.choices) == VERBS
