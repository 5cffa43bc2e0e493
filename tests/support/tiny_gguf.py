"""Tiny random-weight GGUF models for the tests and benchmarks: real llama.cpp inference on a
CPU in milliseconds, with nothing downloaded.

`write_tiny_gguf` writes a valid llama-architecture GGUF (2 layers, 64-wide embeddings, 4
heads, a 128-wide feed-forward; about 560 KB) with the `gguf` package's writer. Its tokenizer
is built here: a SentencePiece-style ("llama") vocabulary of <unk>, <s>, </s>, the 256 byte
tokens <0x00>..<0xFF> (type BYTE, so any text encodes) and a few hundred word pieces with
scores, plus a ChatML chat template, so llama-cpp-python's server answers
/v1/chat/completions. The weights come from numpy's RNG seeded with `seed`: the same
arguments write the same bytes, another seed or name another file.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TEXT = (
    "the of and to in is that it for on with as was at by be this are from or an have not "
    "they which one you were all we her she there can been has more if will would their what "
    "so up out about who get them me my make like time just him know take people into year "
    "your good some could see other than then now look only come its over think also back "
    "after use two how our work first well way even new want because any these give day most "
    "us model models server hello world tiny test fleet node agent hub switch ready answer"
)
WORDS = tuple(TEXT.split())  # word pieces, each with a leading \u2581 (a space)
SPECIAL = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
UNK, BOS, EOS = 0, 1, 2


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of the tiny SentencePiece vocabulary."""
    tokens = list(SPECIAL)
    types = [gguf.TokenType.UNKNOWN, *[gguf.TokenType.CONTROL] * (len(SPECIAL) - 1)]
    scores = [0.0] * len(SPECIAL)
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        types.append(gguf.TokenType.BYTE)
        scores.append(0.0)
    pieces = ["\u2581", *"abcdefghijklmnopqrstuvwxyz"]
    pieces += [f"\u2581{letter}" for letter in "abcdefghijklmnopqrstuvwxyz"]
    pieces += [f"\u2581{word}" for word in WORDS]
    for rank, piece in enumerate(pieces):
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
        scores.append(-1.0 - rank / 100 if len(piece) <= 2 else float(len(piece)) - rank / 1000)
    return tokens, scores, [int(kind) for kind in types]


def write_tiny_gguf(
    path: Path,
    *,
    seed: int = 0,
    name: str = "tiny",
    layers: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_ff: int = 128,
    context_length: int = 2048,
) -> Path:
    """Write the model to `path` (its folder must exist) and return `path`."""
    rng = np.random.default_rng(seed)
    tokens, scores, types = vocabulary()

    def weights(*shape: int) -> np.ndarray:  # type: ignore[type-arg]
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(BOS)
    writer.add_eos_token_id(EOS)
    writer.add_unk_token_id(UNK)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHATML)
    writer.add_tensor("token_embd.weight", weights(len(tokens), n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", weights(len(tokens), n_embd))
    for layer in range(layers):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{block}.{part}.weight", weights(n_embd, n_embd))
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"{block}.ffn_gate.weight", weights(n_ff, n_embd))
        writer.add_tensor(f"{block}.ffn_up.weight", weights(n_ff, n_embd))
        writer.add_tensor(f"{block}.ffn_down.weight", weights(n_embd, n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
