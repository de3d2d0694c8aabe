"""Architectures of the tiny random twins, as plain transformers config dicts.

The real home of these numbers is ``conf/backbone/tiny_*.yaml`` (``backbone.arch``); this module
keeps the same dicts importable so that tests and notebooks can build a twin without Hydra::

    spec = BackboneSpec(name="tiny_llama", kind="decoder", arch=TINY_ARCH["llama"],
                        random_init=True, pad_token="eos", lora_targets=("q_proj", "v_proj"))

Every twin: 2 layers, hidden 64, 4 heads of 16, MLP 128 and a vocabulary of 4096 (the default
``BackboneSpec.tokenizer_vocab_size``); the decoders also have 2 key/value heads and 2048
positions, the encoders their family's positions (512, or 514 for XLM-R). Special-token ids follow
the order in which :mod:`arena.models.tokenizer` adds them to the twin tokenizers.
"""

from __future__ import annotations

from typing import Any, Final

_COMMON: Final[dict[str, Any]] = {
    "vocab_size": 4096,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 2048,
}

#: the encoder twins' shared sizes (no key/value heads or head_dim: encoders have neither option)
_ENCODER: Final[dict[str, Any]] = {
    "vocab_size": 4096,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "hidden_act": "gelu",
}

TINY_ARCH: Final[dict[str, dict[str, Any]]] = {
    # ids: <pad>=0 <eos>=1 <bos>=2 <unk>=3, as in the real Gemma tokenizer
    "gemma2": {
        "model_type": "gemma2",
        **_COMMON,
        "sliding_window": 1024,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    },
    # ids: <|endoftext|>=0 <|im_start|>=1 <|im_end|>=2; Qwen2 has biased q/k/v projections
    "qwen2": {
        "model_type": "qwen2",
        **_COMMON,
        "pad_token_id": 0,
        "eos_token_id": 0,
        "bos_token_id": 0,
        "tie_word_embeddings": True,
    },
    # ids: <|begin_of_text|>=0 <|end_of_text|>=1; no pad token (use pad_token="eos")
    "llama": {
        "model_type": "llama",
        **_COMMON,
        "bos_token_id": 0,
        "eos_token_id": 1,
    },
    # ids: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4
    "bert": {
        "model_type": "bert",
        "vocab_size": 4096,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 512,
        "pad_token_id": 0,
    },
    # conf/backbone/tiny_deberta_v2.yaml; ids: [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3 [MASK]=4
    "deberta_v2": {
        "model_type": "deberta-v2",
        **_ENCODER,
        "max_position_embeddings": 512,
        "type_vocab_size": 0,
        "layer_norm_eps": 1e-7,
        "relative_attention": True,
        "max_relative_positions": -1,
        "position_buckets": 256,
        "position_biased_input": False,
        "pos_att_type": ["p2c", "c2p"],
        "share_att_key": True,
        "norm_rel_ebd": "layer_norm",
        "pad_token_id": 0,
    },
    # conf/backbone/tiny_xlm_roberta.yaml; ids: <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4
    "xlm_roberta": {
        "model_type": "xlm-roberta",
        **_ENCODER,
        "max_position_embeddings": 514,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-5,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    },
}
