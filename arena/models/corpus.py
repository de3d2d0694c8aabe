"""The fixed corpus that twin tokenizers are trained on (no downloads, same merges everywhere).

Chat-arena text is multilingual and full of code, markdown and numbers; so is this corpus, in
miniature. Changing it changes every twin tokenizer; the on-disk caches are keyed by a hash of
its text, so they are rebuilt.
"""

from __future__ import annotations

from typing import Final

from arena.data.synthetic import LANGUAGES

_SENTENCES: Final[tuple[str, ...]] = (
    "Which response is better? The first answer is correct, the second one is not.",
    "Please explain the difference between a list and a tuple in Python.",
    "Sure! Here is a short summary of the article in three bullet points.",
    "I'm sorry, but I can't help with that request.",
    "The capital of France is Paris, and the capital of Japan is Tokyo.",
    "Write a haiku about the ocean at night.",
    "¿Cuál es la mejor manera de aprender a programar? Practica todos los días.",
    "La respuesta A es más clara, pero la respuesta B es más completa.",
    "Quelle est la différence entre un modèle de langue et un moteur de recherche ?",
    "Je préfère la deuxième réponse parce qu'elle est plus précise.",
    "Kannst du mir bitte erklären, wie ein Transformer funktioniert?",
    "Die Antwort ist leider falsch, aber gut formuliert.",
    "Qual è la risposta migliore? Entrambe sono corrette.",
    "Você pode traduzir este texto para o português?",
    "Объясни, пожалуйста, как работает градиентный спуск.",
    "Первый ответ лучше, потому что он короче и точнее.",
    "请用简单的语言解释什么是机器学习。",
    "第一个回答更好，因为它更详细。",
    "東京の天気はどうですか？今日は晴れです。",
    "この答えは正しいですが、説明が足りません。",
    "인공지능이란 무엇인가요? 간단히 설명해 주세요.",
    "ما هي عاصمة مصر؟ عاصمة مصر هي القاهرة.",
    "मुझे एक छोटी कहानी सुनाओ।",
    "Bu cevap daha iyi, çünkü daha açık.",
    "Trả lời bằng tiếng Việt, vui lòng.",
    "def add(a: int, b: int) -> int:\n    return a + b\n",
    "for i in range(10):\n    print(i * i)\n",
    "SELECT name, COUNT(*) FROM users GROUP BY name ORDER BY 2 DESC;",
    "const x = [1, 2, 3].map((v) => v * 2); // [2, 4, 6]",
    "```python\nimport numpy as np\nx = np.zeros((3, 4))\n```",
    "## Step 1\n- install the package\n- run `make test`\n\n**Note:** it takes 5 minutes.",
    "The answer is 42. 3.14159 * 2 = 6.28318; 1e-5 < 0.001; 100% sure.",
    "Dates: 2024-05-01, 2025/01/31, 12:30 PM, $19.99, €5, ¥1000.",
    "Emojis are common too 😀👍🔥 and so are URLs like https://example.com/a?b=c.",
    "Assistant: Certainly. User: Thank you! Assistant: You're welcome.",
)

# The synthetic quickstart languages' words, so that a twin reads them as whole tokens (a model
# trained from scratch in minutes cannot also learn to assemble words from byte pieces).
_SYNTHETIC_WORDS: Final[tuple[str, ...]] = tuple(
    " ".join(lang.words + lang.markers) for lang in LANGUAGES
)

TWIN_CORPUS: Final[tuple[str, ...]] = _SENTENCES * 4 + _SYNTHETIC_WORDS * 20
