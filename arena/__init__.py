"""arena: pairwise human-preference prediction with Lightning + Hydra (see README.md)."""

import logging
import os
import warnings

# Arrow picks its default memory pool when pyarrow is first imported, and the parquet reader keeps
# allocating from it even after ``pa.set_memory_pool``; its default (mimalloc) keeps the buffers of
# chunks already read, so streamed reads grow (arena.utils.heap). Only the environment, set before
# pyarrow loads, changes it; an explicit user setting wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


class DropMessages(logging.Filter):
    """A logger filter dropping the records whose message starts with one of ``prefixes``; every
    other record of that logger passes."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


# Known start-up noise, dropped message by message; every other record and warning still shows.
# bitsandbytes (on CPUs with AVX512-BF16) tries to fetch an optional 4-bit CPU kernel from the HF
# hub through the `kernels` package when it is imported, and warns when it cannot: arena never
# fetches code at run time (it runs offline by design) and the CPU fallback is what runs and is
# tested. Set here, before anything imports bitsandbytes.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    DropMessages("Failed to load CPU gemm_4bit_forward from kernels-community")
)
# Lightning 2.6 advertises its cloud services (litlogger, litmodels) on every Trainer unless one of
# them is in use, with no setting to turn it off (Lightning-AI/pytorch-lightning#21294).
_adverts = DropMessages("💡 Tip: For seamless cloud")
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_adverts)
logging.getLogger("lightning.fabric.utilities.rank_zero").addFilter(_adverts)
# Lightning 2.6.6's own batch flattening builds a ``LeafSpec``, which torch 2.13 deprecates: a note
# for Lightning's authors that no arena setting or user can act on (both versions are pinned).
warnings.filterwarnings(
    "ignore",
    message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    category=FutureWarning,
    module=r"lightning\.pytorch\.utilities\._pytree",
)
