"""The benchmark suite: ``python -m arena.bench [output=<file>] [quick=true] [only=a,b]``.

Sections (one module each): ``train_loop``, ``train_batching``, ``inference_batching``,
``tokenization``, ``tta``, ``scaling``, ``gpu``. Every comparison interleaves its variants in one
process, reports min and median, the load average and an equivalence check; see
:mod:`arena.bench.common` for the rules and :mod:`arena.bench.report` for the targets.

    from arena.bench.suite import run_suite
    from arena.bench.common import Settings
    result = run_suite(Settings(quick=True, backbone="tiny"), only=["tta"])
"""
