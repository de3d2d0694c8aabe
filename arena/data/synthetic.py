"""Deterministic synthetic pair tables with learnable rules, for the quickstart and tests.

Each row is in one of six languages (``en``, ``de``, ``es``, ``fr``, ``ru`` in Cyrillic and
``zh``), each with a small content vocabulary and four *quality markers* (en: "indeed clearly
because thus"). Words are separated by spaces in every language. The prompt has 1 to
``n_turns_max`` turns of 3-8 random content words; each response has as many turns as the
prompt, 8-16 words per turn, drawn independently of the label. A response's words are its
markers, its *echoes* (words copied from the prompt) and fillers (content words that are not in
the prompt), shuffled. The rule-based winner, before noise, is decided by counts over all turns:

1. The response with more quality markers wins.
2. If the marker counts are equal, the response with more echoes wins.
3. If both counts are equal, the pair is a tie; this only happens with ``n_classes=3``.

The rule label is drawn first (A and B equally likely, and a tie with probability 0.3 when
``n_classes=3``) and the responses are built to obey it: in 70% of A/B rows the winner has
1-3 more markers (echoes independent), in the rest the marker counts are equal and the winner has
1-2 more echoes. Then each label is replaced by another class with probability ``noise``
(uniformly among the others), so the Bayes-optimal accuracy is ``1 - noise``. Response lengths
(in words) and model names carry no information, so "the longer response wins" is at chance.
:func:`rule_labels` recovers the rule label from the text alone.

Usage::

    from arena.data.synthetic import make_synthetic
    train = make_synthetic(4000, seed=0)  # ids syn-0-0 ... syn-0-3999
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate, pairwise
from random import Random

import numpy as np
import pandas as pd

from arena.data.schema import COLUMNS, LABEL_A, LABEL_B, LABEL_TIE


@dataclass(frozen=True)
class Language:
    """A synthetic language: its tag, content words and quality markers."""

    tag: str
    words: tuple[str, ...]
    markers: tuple[str, ...]


def _language(tag: str, words: str, markers: str) -> Language:
    return Language(tag, tuple(words.split()), tuple(markers.split()))


LANGUAGES: tuple[Language, ...] = (
    _language(
        "en",
        "apple river window garden music paper system travel market city water bridge forest "
        "letter morning number office planet school summer table winter yellow animal button "
        "camera dinner engine flower island kitchen ladder mirror orange pencil rocket silver "
        "ticket valley",
        "indeed clearly because thus",
    ),
    _language(
        "de",
        "haus wasser fenster garten musik papier reise markt stadt brücke wald brief morgen "
        "zahl büro planet schule sommer tisch winter gelb tier knopf kamera abend motor blume "
        "insel küche leiter spiegel bleistift rakete silber karte straße wolke sonne kerze",
        "wirklich klar weil daher",
    ),
    _language(
        "es",
        "casa agua ventana jardín música papel viaje mercado ciudad puente bosque carta mañana "
        "número oficina planeta escuela verano mesa invierno amarillo animal botón cámara cena "
        "motor flor isla cocina escalera espejo naranja lápiz cohete plata billete valle nube",
        "cierto porque además claro",
    ),
    _language(
        "fr",
        "maison eau fenêtre jardin musique papier voyage marché ville pont forêt lettre matin "
        "nombre bureau planète école été table hiver jaune animal bouton caméra dîner moteur "
        "fleur île cuisine échelle miroir orange crayon fusée argent billet vallée nuage soleil",
        "vraiment parce donc ainsi",
    ),
    _language(
        "ru",
        "дом вода окно сад музыка бумага поездка рынок город мост лес письмо утро число офис "
        "планета школа лето стол зима жёлтый зверь кнопка камера ужин мотор цветок остров "
        "кухня лестница зеркало апельсин карандаш ракета серебро билет долина облако солнце",
        "ясно потому поэтому итак",
    ),
    _language(
        "zh",
        "苹果 河流 窗户 花园 音乐 纸张 系统 旅行 市场 城市 水杯 桥梁 森林 信件 早晨 数字 办公 "
        "星球 学校 夏天 桌子 冬天 黄色 动物 按钮 相机 晚饭 引擎 花朵 岛屿 厨房 梯子 镜子 橙子 "
        "铅笔 火箭 银色 车票 山谷 云朵",
        "确实 显然 因为 所以",
    ),
)
MODELS: tuple[str, ...] = (
    "gpt-4o",
    "claude-3-5-sonnet",
    "gemini-1.5-pro",
    "llama-3-70b",
    "qwen2.5-72b",
    "mistral-large",
)
ALL_MARKERS: frozenset[str] = frozenset(m for lang in LANGUAGES for m in lang.markers)
TIE_RATE = 0.3  # share of rule ties when n_classes=3
MARKER_DECIDED_RATE = 0.7  # share of A/B rows decided by markers rather than echoes


def _side_counts(rnd: Random, rule: int) -> tuple[int, int, int, int]:
    """(markers_a, echoes_a, markers_b, echoes_b) that make ``rule`` the rule label."""
    if rule == LABEL_TIE:
        markers, echoes = rnd.randint(0, 2), rnd.randint(0, 3)
        return markers, echoes, markers, echoes
    if rnd.random() < MARKER_DECIDED_RATE:
        loser_m = rnd.randint(0, 1)
        win = (loser_m + rnd.randint(1, 3), rnd.randint(0, 3))
        lose = (loser_m, rnd.randint(0, 3))
    else:
        markers, loser_e = rnd.randint(0, 2), rnd.randint(0, 2)
        win, lose = (markers, loser_e + rnd.randint(1, 2)), (markers, loser_e)
    a, b = (win, lose) if rule == LABEL_A else (lose, win)
    return a[0], a[1], b[0], b[1]


def _join_turns(tokens: list[str], lengths: list[int]) -> list[str]:
    """Consecutive runs of ``lengths`` tokens, each joined by spaces into one turn."""
    bounds = [0, *accumulate(lengths)]
    return [" ".join(tokens[lo:hi]) for lo, hi in pairwise(bounds)]


def _response(
    rnd: Random,
    lang: Language,
    prompt_words: list[str],
    n_turns: int,
    counts: tuple[int, int],
) -> list[str]:
    """One response of ``n_turns`` turns, 8-16 words each, with the given counts over all turns.

    Args:
        rnd: random source of the row.
        lang: language of the row.
        prompt_words: sorted distinct words of the prompt.
        n_turns: number of turns.
        counts: (quality markers, echoes), each <= 4 so that they fit in 8 words.

    Returns:
        Response turns.
    """
    in_prompt = set(prompt_words)
    fillers = [w for w in lang.words if w not in in_prompt]
    lengths = [rnd.randint(8, 16) for _ in range(n_turns)]  # label-independent
    tokens = rnd.choices(fillers, k=sum(lengths))
    special = rnd.choices(lang.markers, k=counts[0]) + rnd.choices(prompt_words, k=counts[1])
    # fillers are i.i.d., so overwriting random distinct positions equals a uniform shuffle
    for pos, word in zip(rnd.sample(range(len(tokens)), len(special)), special, strict=True):
        tokens[pos] = word
    return _join_turns(tokens, lengths)


def _pair(rnd: Random, lang: Language, n_turns: int, rule: int) -> tuple[list[str], ...]:
    """(prompt, response_a, response_b) turns of one row whose rule label is ``rule``."""
    sizes = [rnd.randint(3, 8) for _ in range(n_turns)]
    picked = rnd.choices(lang.words, k=sum(sizes))
    prompt_words = sorted(set(picked))  # sorted: set order is not reproducible across runs
    m_a, e_a, m_b, e_b = _side_counts(rnd, rule)
    return (
        _join_turns(picked, sizes),
        _response(rnd, lang, prompt_words, n_turns, (m_a, e_a)),
        _response(rnd, lang, prompt_words, n_turns, (m_b, e_b)),
    )


def _noisy(rng: np.random.Generator, rule: np.ndarray, n_classes: int, noise: float) -> np.ndarray:
    """(n,) labels: ``rule`` with each entry moved to another class with probability noise."""
    flip = rng.random(len(rule)) < noise
    shift = rng.integers(1, n_classes, size=len(rule))  # uniform over the other classes
    return np.where(flip, (rule + shift) % n_classes, rule).astype(np.int64)


def make_synthetic(
    n: int, seed: int = 0, n_classes: int = 2, noise: float = 0.1, n_turns_max: int = 2
) -> pd.DataFrame:
    """A pair table of ``n`` synthetic rows following the rules in the module docstring.

    Args:
        n: number of rows.
        seed: the only random source; the same seed gives the same table.
        n_classes: 2 (A or B wins) or 3 (with ties).
        noise: probability that a label is replaced by another class, in [0, 1).
        n_turns_max: maximum number of conversation turns (>= 1).

    Returns:
        Pair table per :mod:`arena.data.schema` with ids ``syn-<seed>-<i>``, source
        ``synthetic``, no soft labels and folds -1.

    Raises:
        ValueError: on an invalid ``n_classes``, ``noise`` or ``n_turns_max``.
    """
    if n_classes not in (2, 3) or not 0.0 <= noise < 1.0 or n_turns_max < 1:
        raise ValueError(f"bad arguments: {n_classes=}, {noise=}, {n_turns_max=}")
    rng = np.random.default_rng(seed)
    p_tie = TIE_RATE if n_classes == 3 else 0.0
    rule = rng.choice([LABEL_A, LABEL_B, LABEL_TIE], size=n, p=[(1 - p_tie) / 2] * 2 + [p_tie])
    langs = rng.integers(0, len(LANGUAGES), size=n)
    turns = rng.integers(1, n_turns_max + 1, size=n)
    model_a = rng.integers(0, len(MODELS), size=n)
    model_b = (model_a + rng.integers(1, len(MODELS), size=n)) % len(MODELS)
    label = _noisy(rng, rule, n_classes, noise)
    rnd = Random(int(rng.integers(2**63)))  # per-row draws: scalar Python RNG is much faster
    rows = [
        _pair(rnd, LANGUAGES[lang], int(t), int(r))
        for lang, t, r in zip(langs, turns, rule, strict=True)
    ]
    table = {
        "id": [f"syn-{seed}-{i}" for i in range(n)],
        "prompt": [r[0] for r in rows],
        "response_a": [r[1] for r in rows],
        "response_b": [r[2] for r in rows],
        "label": label,
        "soft_label": [None] * n,
        "model_a": np.array(MODELS, dtype=object)[model_a],
        "model_b": np.array(MODELS, dtype=object)[model_b],
        "language": np.array([lang.tag for lang in LANGUAGES], dtype=object)[langs],
        "source": ["synthetic"] * n,
        "fold": np.full(n, -1, dtype=np.int64),
    }
    return pd.DataFrame(table, columns=list(COLUMNS))


def side_counts(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Quality-marker and echo counts of both sides, read from the text.

    Args:
        df: pair table, n rows.

    Returns:
        ``(markers, echoes)``, each an (n, 2) int64 array with columns (A, B); an echo is a
        response word that also occurs in the prompt.
    """
    markers = np.zeros((len(df), 2), dtype=np.int64)
    echoes = np.zeros((len(df), 2), dtype=np.int64)
    for i, (prompt, *sides) in enumerate(
        df[["prompt", "response_a", "response_b"]].itertuples(index=False)
    ):
        prompt_words = {w for turn in prompt for w in turn.split()}
        for j, side in enumerate(sides):
            words = [w for turn in side for w in turn.split()]
            markers[i, j] = sum(w in ALL_MARKERS for w in words)
            echoes[i, j] = sum(w in prompt_words for w in words)
    return markers, echoes


def rule_labels(df: pd.DataFrame) -> np.ndarray:
    """The noise-free label of each row by the count rules (markers, then echoes, else tie).

    Args:
        df: pair table, n rows.

    Returns:
        (n,) int64 labels in {0, 1, 2}.
    """
    markers, echoes = side_counts(df)
    key = np.sign(markers[:, 0] - markers[:, 1]) * 2 + np.sign(echoes[:, 0] - echoes[:, 1])
    # key > 0: A ahead on markers, or tied on markers and ahead on echoes.
    return np.select([key > 0, key < 0], [LABEL_A, LABEL_B], LABEL_TIE).astype(np.int64)
