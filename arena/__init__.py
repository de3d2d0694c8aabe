"""arena: pairwise human-preference prediction with Lightning + Hydra (see README.md)."""

import os

# Arrow picks its default memory pool when pyarrow is first imported, and the parquet reader keeps
# allocating from it even after ``pa.set_memory_pool``; its default (mimalloc) keeps the buffers of
# chunks already read, so streamed reads grow (arena.heap). Only the environment, set before
# pyarrow loads, changes it; an explicit user setting wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
