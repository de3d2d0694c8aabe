"""Recipes that ``python -m arena.pipeline recipe=<name>`` chains from stage commands:
:mod:`arena.recipes.distill` (post-pretraining, K-fold teachers, the distilled student, merge,
quantized predict) and :mod:`arena.recipes.semi_supervised` (rounds of soft labels);
:mod:`arena.recipes.stages` holds the stages they share."""
