"""Tiny, randomly initialised Qwen VLMs of each supported family for tests, the demo and users' dry runs
(``mevqa tiny-model --family qwen2_vl|qwen2_5_vl|qwen3_vl|qwen3_vl_moe``).

Public API::

    write_tiny_model(out_dir, seed=0, family="qwen2_5_vl") -> Path   # model + processor via save_pretrained
    TINY_FAMILIES                                                   # the families a tiny model can be built for

Everything is the real thing at a toy size: the family's ``*ForConditionalGeneration`` built from its config class
(text hidden 64, 2 layers, 4 heads; vision hidden 32, depth 2, spatial merge 2, temporal patch 2; the family's patch
size: 14 for Qwen2-VL and Qwen2.5-VL, 16 for Qwen3-VL, whose tiny model has one DeepStack merger; Qwen3-VL-MoE is
Qwen3-VL's tiny vision tower with a language model of 4 experts per layer, 2 per token), and the family's
processor class with its real image and video processors, a ``Qwen2Tokenizer`` and a chat template equivalent to the
Instruct checkpoint's (Qwen2/2.5-VL add Qwen's default system turn when none is given; Qwen3-VL adds none). The
tokenizer is a byte-level BPE trained offline (no download) with Qwen2's normaliser and pre-tokenisation, followed by
Qwen's special tokens in Qwen's order. Its corpus holds every official question, answer template, label, AU name and
mevqa prompt, so an answer is a few tokens and a tiny model can learn it in a few steps. The folder loads back
offline with ``AutoModelForImageTextToText`` / ``AutoProcessor``.

Weights are random with std 0.1 (see ``INIT_STD``) so that a short CPU run can learn from pixels.
Pixel budgets are small (4x4 to 8x8 patches per image or video frame: 4 to 16 visual tokens; Qwen3-VL's video
processor budgets the whole video, so its budget is that times 8 frames) so CPU runs stay fast;
:func:`mevqa.models.loading.set_pixel_budgets` changes them.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mevqa import messages, vocab
from mevqa.errors import MevqaError
from mevqa.jsonl import ensure_dir
from mevqa.models.families import DEFAULT_FAMILY, FAMILIES
from mevqa.paths import is_disk_full, seed as seed_type
from mevqa.runfolder import atomic_folder

log = logging.getLogger(__name__)

# LAZY: torch, transformers and tokenizers are imported inside the functions that build the model: mevqa demo
# imports this module for its family names, and `mevqa demo --help` should not load the model stack.

# Qwen2/Qwen2.5 added tokens, in Qwen's id order (151643...). Only the first 14 are "special" in Qwen's tokenizer.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)
QWEN_EXTRA_TOKENS = ("<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                     "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")

# Qwen2-VL / Qwen2.5-VL-Instruct's chat template (the one in their chat_template.json); Qwen3-VL-Instruct's renders
# mevqa's messages the same way except that it adds no default system turn.
_DEFAULT_SYSTEM = ("{% if loop.first and message['role'] != 'system' %}"
                   "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}")
_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}DEFAULT_SYSTEM"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHAT_TEMPLATE = _CHAT_TEMPLATE.replace("DEFAULT_SYSTEM", _DEFAULT_SYSTEM)
QWEN3_CHAT_TEMPLATE = _CHAT_TEMPLATE.replace("DEFAULT_SYSTEM", "")

# Weights are drawn with std 0.1 (about 1/sqrt(64)), not Qwen's 0.02: at width 64 each 0.02 layer scales activations
# by 0.02 * sqrt(64) = 0.16, so a random tiny model passes almost nothing from the pixels to the answer and a short
# CPU run cannot learn from images (measured: coarse class stuck at chance on synthetic clips; with 0.1, 100%
# held-out accuracy after 50 steps).
INIT_STD = 0.1
BPE_VOCAB_SIZE = 640  # 256 byte symbols + merges; small so the embedding tables stay small
PATCH = 14
MERGE = 2
# Per image / per video frame, in pixels: 4x4 to 8x8 patches of 14 px.
TINY_MIN_PIXELS = (PATCH * 4) ** 2
TINY_MAX_PIXELS = (PATCH * 8) ** 2
TINY_FRAMES = 8  # the frames a Qwen3-VL video budget (for the whole video) is sized for


def _corpus() -> list[str]:
    """Texts the tiny BPE is trained on: the challenge vocabulary, mevqa's prompts and the chat-template words."""
    aus = list(vocab.AU_NAMES.values())
    # Short answers alone (as they follow "assistant\n"), so each becomes one or two tokens.
    answers = [*vocab.COARSE_LABELS, *vocab.FINE_LABELS, *vocab.LATERALITY_ANSWERS, *vocab.PRESENCE_ANSWERS, *aus]
    texts = [vocab.Q_COARSE, vocab.Q_FINE, vocab.Q_AU_ONE, vocab.Q_AU_MANY, vocab.Q_COMPOSITE_ONE,
             vocab.Q_COMPOSITE_MANY, "system", "user", "assistant", "You are a helpful assistant.",
             "others", "neutral", "unknown", "The answer is", "Picture", "Video"]
    for au in aus:
        texts += [vocab.Q_LATERALITY.format(au=au), vocab.Q_PRESENCE.format(au=au)]
    for i, fine in enumerate(vocab.FINE_LABELS):
        picked = [aus[i % len(aus)], aus[(3 * i + 1) % len(aus)]]
        texts += [vocab.composite_answer(picked[:1], fine, vocab.FINE_TO_COARSE[fine]),
                  vocab.composite_answer(picked, fine, vocab.FINE_TO_COARSE[fine]), vocab.au_answer(picked)]
    texts += messages.prompt_texts()
    # Repeat so that whole labels and questions win the merges over rare byte pairs.
    return texts * 4 + answers * 16


def _train_tokenizer():
    # lazy: see LAZY
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    backend = Tokenizer(BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False,
                            byte_fallback=False))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB_SIZE, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    backend.train_from_iterator(_corpus(), trainer=trainer)
    model_json = json.loads(backend.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    bpe_vocab = dict(sorted(model_json["vocab"].items(), key=lambda item: item[1]))
    # Qwen's added tokens sit right after the BPE vocabulary, in Qwen's order.
    full_vocab = dict(bpe_vocab)
    for token in QWEN_SPECIAL_TOKENS + QWEN_EXTRA_TOKENS:
        full_vocab[token] = len(full_vocab)
    tokenizer = Qwen2Tokenizer(vocab=full_vocab, merges=merges, unk_token=None, bos_token=None,
                               eos_token="<|im_end|>", pad_token="<|endoftext|>", errors="replace",
                               model_max_length=32768, split_special_tokens=False)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS], special_tokens=True)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_EXTRA_TOKENS])
    for token in QWEN_SPECIAL_TOKENS + QWEN_EXTRA_TOKENS:
        assert tokenizer.convert_tokens_to_ids(token) == full_vocab[token], token
    return tokenizer


def _text_config(vocab_size: int, token_ids: dict[str, int], *, interleaved: bool = False) -> dict:
    hidden, heads = 64, 4
    head_dim = hidden // heads
    # M-RoPE splits head_dim/2 rotary frequencies over (time, height, width), like Qwen's [16, 24, 24].
    rope = {"rope_type": "default", "rope_theta": 1000000.0,
            "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16]}
    if interleaved:
        rope["mrope_interleaved"] = True
    return {
        "vocab_size": vocab_size, "hidden_size": hidden, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": heads, "num_key_value_heads": 2, "head_dim": head_dim, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6, "hidden_act": "silu", "initializer_range": INIT_STD, "rope_parameters": rope,
        "bos_token_id": token_ids["<|endoftext|>"], "eos_token_id": token_ids["<|im_end|>"],
        "pad_token_id": token_ids["<|endoftext|>"],
    }


def _token_config(token_ids: dict[str, int]) -> dict:
    return dict(image_token_id=token_ids["<|image_pad|>"], video_token_id=token_ids["<|video_pad|>"],
                vision_start_token_id=token_ids["<|vision_start|>"], vision_end_token_id=token_ids["<|vision_end|>"],
                tie_word_embeddings=False)


def _qwen2_vl_config(vocab_size, token_ids):
    # lazy: see LAZY
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(text_config=_text_config(vocab_size, token_ids), vision_config={
        "depth": 2, "embed_dim": 32, "mlp_ratio": 2, "num_heads": 2, "in_channels": 3, "hidden_size": 64,
        "patch_size": PATCH, "spatial_merge_size": MERGE, "temporal_patch_size": 2, "initializer_range": INIT_STD,
    }, **_token_config(token_ids))


def _qwen2_5_vl_config(vocab_size, token_ids):
    # lazy: see LAZY
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(text_config=_text_config(vocab_size, token_ids), vision_config={
        "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "in_channels": 3,
        "patch_size": PATCH, "spatial_merge_size": MERGE, "temporal_patch_size": 2, "tokens_per_second": 2,
        "window_size": PATCH * MERGE * 4, "out_hidden_size": 64, "fullatt_block_indexes": [1],
        "hidden_act": "silu", "initializer_range": INIT_STD,
    }, **_token_config(token_ids))


def _qwen3_vl_config(vocab_size, token_ids):
    # lazy: see LAZY
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(text_config=_text_config(vocab_size, token_ids, interleaved=True), vision_config={
        "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "in_channels": 3,
        "patch_size": 16, "spatial_merge_size": MERGE, "temporal_patch_size": 2, "out_hidden_size": 64,
        # A 16 x 16 learned position grid (resampled to each image's grid) and one DeepStack merger (after block 0).
        "num_position_embeddings": 256, "deepstack_visual_indexes": [0], "hidden_act": "gelu_pytorch_tanh",
        "initializer_range": INIT_STD,
    }, **_token_config(token_ids))


def _qwen3_vl_moe_config(vocab_size, token_ids):
    from transformers import Qwen3VLMoeConfig  # lazy: see LAZY

    # Qwen3-VL's tiny vision tower; a language model whose every layer's MLP is a mixture of 4 experts (2 per token,
    # width 32 each), held as fused 3-D parameters with a router, as in Qwen3-VL-30B-A3B (128 experts, 8 per token).
    text = {**_text_config(vocab_size, token_ids, interleaved=True), "num_experts": 4, "num_experts_per_tok": 2,
            "moe_intermediate_size": 32, "decoder_sparse_step": 1, "mlp_only_layers": []}
    vision = _qwen3_vl_config(vocab_size, token_ids).vision_config.to_dict()
    return Qwen3VLMoeConfig(text_config=text, vision_config={k: v for k, v in vision.items() if k != "model_type"},
                            **_token_config(token_ids))


# family -> (config builder, model class, processor class, video processor class, patch size, chat template)
_TINY = {
    "qwen2_vl": (_qwen2_vl_config, "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", "Qwen2VLVideoProcessor",
                 PATCH, CHAT_TEMPLATE),
    "qwen2_5_vl": (_qwen2_5_vl_config, "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor",
                   "Qwen2VLVideoProcessor", PATCH, CHAT_TEMPLATE),
    "qwen3_vl": (_qwen3_vl_config, "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", "Qwen3VLVideoProcessor",
                 16, QWEN3_CHAT_TEMPLATE),
    "qwen3_vl_moe": (_qwen3_vl_moe_config, "Qwen3VLMoeForConditionalGeneration", "Qwen3VLProcessor",
                     "Qwen3VLVideoProcessor", 16, QWEN3_CHAT_TEMPLATE),
}
TINY_FAMILIES = tuple(_TINY)


def _tiny(family: str):
    if family not in _TINY:
        raise MevqaError(f"--family {family!r}: expected one of {', '.join(TINY_FAMILIES)}")
    return _TINY[family]


def tiny_config(vocab_size: int, token_ids: dict[str, int], family: str = DEFAULT_FAMILY):
    """The config of the tiny model of ``family`` (about 230k parameters)."""
    return _tiny(family)[0](vocab_size, token_ids)


def build_tiny_processor(family: str = DEFAULT_FAMILY):
    """The tiny model's processor: the family's real processor classes, the offline BPE and its chat template."""
    # lazy: see LAZY
    import transformers

    _, _, processor_class, video_class, patch, template = _tiny(family)
    size = {"shortest_edge": (patch * 4) ** 2, "longest_edge": (patch * 8) ** 2}
    video_size = dict(size)
    if FAMILIES[family].video_budget == "video":  # the budget bounds frames x height x width
        video_size = {"shortest_edge": size["shortest_edge"] * 2, "longest_edge": size["longest_edge"] * TINY_FRAMES}
    image_processor = transformers.Qwen2VLImageProcessor(size=size, patch_size=patch, merge_size=MERGE,
                                                         temporal_patch_size=2)
    video_processor = getattr(transformers, video_class)(size=video_size, patch_size=patch, merge_size=MERGE,
                                                         temporal_patch_size=2, cap_pixels_per_frame=False)
    return getattr(transformers, processor_class)(image_processor=image_processor, tokenizer=_train_tokenizer(),
                                                  video_processor=video_processor, chat_template=template)


def write_tiny_model(out_dir, seed: int = 0, family: str = DEFAULT_FAMILY) -> Path:
    """Write a tiny random model of ``family`` and its processor to ``out_dir`` (created); return the path."""
    # lazy: see LAZY
    import torch
    import transformers
    from transformers import GenerationConfig

    model_class = _tiny(family)[1]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MevqaError(f"{out_dir}: exists and is a file; expected a folder for the model")
    # The model replaces out_dir whole (a finished folder renamed into place), so out_dir may be empty or hold an
    # earlier model (its config.json), never other files, which the replacement would remove.
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "config.json").is_file():
        raise MevqaError(f"{out_dir}: holds files but no model (config.json); the model replaces the folder whole: "
                         "choose a new or empty folder")
    # An existing folder must be writable like any output folder, though the model replaces it rather than adding to it.
    ensure_dir(out_dir if out_dir.is_dir() else out_dir.parent, "output folder" if out_dir.is_dir() else
               "folder of --out")
    processor = build_tiny_processor(family)
    tokenizer = processor.tokenizer
    token_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    config = tiny_config(len(tokenizer), token_ids, family)
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config).eval()
    # Greedy by default; Qwen's stop tokens (end of turn, end of text).
    model.generation_config = GenerationConfig(
        bos_token_id=token_ids["<|endoftext|>"], pad_token_id=token_ids["<|endoftext|>"],
        eos_token_id=[token_ids["<|im_end|>"], token_ids["<|endoftext|>"]], do_sample=False)
    # Written to a temporary sibling folder first, so a failure never leaves a half-written model behind.
    try:
        with atomic_folder(out_dir) as tmp:
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
    except Exception as exc:  # safetensors reports a full disk with its own exception type
        if not is_disk_full(exc):
            raise
        raise MevqaError(f"{out_dir}: no space left on the device while writing the model; nothing was written, "
                         "free space and run again") from None
    n_params = sum(p.numel() for p in model.parameters())
    log.info("wrote a tiny random %s (%d parameters, vocabulary %d) to %s", FAMILIES[family].name, n_params,
             len(tokenizer), out_dir)
    return out_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="folder to write the model and processor into")
    parser.add_argument("--seed", type=seed_type, default=0, help="seed of the random weights")
    parser.add_argument("--family", default=DEFAULT_FAMILY, choices=TINY_FAMILIES,
                        help=f"model family (config.model_type) of the tiny model (default: {DEFAULT_FAMILY})")


def run(args: argparse.Namespace) -> int:
    path = write_tiny_model(args.out, seed=args.seed, family=args.family)
    print(path)
    return 0
