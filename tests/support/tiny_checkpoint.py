"""A tiny random-weight Qwen2.5-VL checkpoint built locally, for tests.

The folder has the same files as the real OctoMed-7B snapshot (flat ``config.json``,
``generation_config.json``, sharded safetensors with an index, a byte-level BPE
``tokenizer.json`` with Qwen's special tokens, ``preprocessor_config.json`` and
``chat_template.json``), so it loads through the engine's real code path. It is about
0.5 MB and builds in well under a second once torch is imported.

The random model never ends its output by itself (its end tokens' output rows are zero),
so it writes exactly ``max_new_tokens`` tokens of byte soup, which never parses.

``scripted=True`` builds a deterministic model instead of a random one: every text
layer's output projections are zero, so the next token depends only on the current one,
and the embeddings and ``lm_head`` encode a short script. After the generation prompt it
writes ``<think>`` and then ``~`` forever; after ``</think>`` it writes ``<|im_end|>``.
Only a thinking budget (or the token cap, or cancellation) ends its thinking.

:func:`train_tiny_answerer` builds the random checkpoint and then trains it for a few
seconds on the CPU, on the exact inputs the engine builds (its prompt, the checkpoint's
chat template and processor, images of several sizes), until greedy decoding writes
:data:`TRAINED_OUTPUT` (reasoning in think tags, then a valid JSON answer, then
``<|im_end|>``) for any image, at ``max_pixels=TRAINED_MAX_PIXELS`` (16 image tokens at
most). Its vision tower runs but hands on zeros, so the answer depends on the image's
patch grid and the modality hint, never on its pixels. It checks the saved folder
through the real ``InferenceEngine``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

#: Qwen2.5's added tokens, in Qwen's order, then the reasoning tags OctoMed writes.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
PLAIN_ADDED_TOKENS = ["<tool_call>", "</tool_call>", "<think>", "</think>"]

#: Qwen2.5-VL-7B-Instruct's chat template.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
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

_CORPUS = [
    "You are a helpful assistant. You are an expert ophthalmologist reading retinal images.",
    "Think step by step inside <think> and </think>, then answer with one JSON object.",
    '{"classification": "Normal", "confidence": 85, "findings": ["Foveal contour preserved"],',
    '"recommendation": "Routine follow-up in 12 months.", "explanation": "No fluid."}',
    "Diabetic Macular Edema with intraretinal cysts and subretinal fluid; drusen in AMD.",
    "Glaucoma suspect: enlarged cup-to-disc ratio, thin RNFL. OCT, OCTA, fundus photograph.",
    "The image shows the macula, the optic disc, vessels and the choroid. 0123456789 %",
]


def build_tiny_tokenizer(path: Path, *, think_tokens: bool = True) -> dict[str, int]:
    """Train a small byte-level BPE with Qwen2's pre-tokenizer and save it as Qwen's files.

    Args:
        path: Folder to write ``tokenizer.json`` and ``tokenizer_config.json`` into.
        think_tokens: Add ``<think>``/``</think>`` as single tokens (as Qwen3 has them);
            without, they are spelled with several tokens (as in Qwen2.5's vocabulary).

    Returns:
        The vocabulary, token to id.
    """
    path.mkdir(parents=True, exist_ok=True)
    plain_added = PLAIN_ADDED_TOKENS if think_tokens else PLAIN_ADDED_TOKENS[:2]
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, trainers
    from tokenizers import pre_tokenizers as pre

    qwen_split = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
        r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre.Sequence(
        [
            pre.Split(Regex(qwen_split), behavior="isolated", invert=False),
            pre.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(_CORPUS, trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False) for t in plain_added])
    tokenizer.save(str(path / "tokenizer.json"))

    vocab = tokenizer.get_vocab(with_added_tokens=True)
    added = {
        str(vocab[t]): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": t in SPECIAL_TOKENS,
        }
        for t in SPECIAL_TOKENS + plain_added
    }
    tokenizer_config = {
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    _write_json(path / "tokenizer_config.json", tokenizer_config)
    return vocab


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _script_weights(model: object, vocab: dict[str, int]) -> None:
    """Turn the random model into the bigram script described in the module docstring."""
    import torch

    text = model.model.language_model  # type: ignore[attr-defined]
    lm_head = model.lm_head.weight  # type: ignore[attr-defined]
    script = [("\u010a", "<think>"), ("<think>", "~"), ("~", "~"), ("</think>", "<|im_end|>")]
    with torch.no_grad():
        for layer in text.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        hidden = lm_head.shape[1]
        for index, (current, following) in enumerate(script):
            direction = torch.zeros(hidden)
            direction[index] = 1.0
            text.embed_tokens.weight[vocab[current]] = direction
            # After RMSNorm the hidden state is sqrt(hidden) * direction; random rows give
            # logits near 0.02 * sqrt(hidden), far below this one.
            lm_head[vocab[following]] += direction


def build_tiny_qwen25vl(path: Path, *, scripted: bool = False) -> Path:
    """Build a tiny Qwen2.5-VL checkpoint folder at ``path`` and return it.

    Args:
        path: Folder to create (may exist and be empty).
        scripted: Build the deterministic thinking-loop model instead of random weights.
    """
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    path.mkdir(parents=True, exist_ok=True)
    vocab = build_tiny_tokenizer(path)
    vocab_size = (max(vocab.values()) // 64 + 1) * 64  # padded like Qwen's 152064

    # The hub's config.json is flat (text fields at the top), as in the real snapshot.
    config_dict = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "attention_dropout": 0.0,
        "bos_token_id": vocab["<|endoftext|>"],
        "eos_token_id": vocab["<|im_end|>"],
        "pad_token_id": vocab["<|endoftext|>"],
        "vision_start_token_id": vocab["<|vision_start|>"],
        "vision_end_token_id": vocab["<|vision_end|>"],
        "vision_token_id": vocab["<|vision_pad|>"],
        "image_token_id": vocab["<|image_pad|>"],
        "video_token_id": vocab["<|video_pad|>"],
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 4096,
        "max_window_layers": 2,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "rope_theta": 1000000.0,
        "sliding_window": 4096,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size,
        "vision_config": {
            "depth": 2,
            "hidden_act": "silu",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "in_chans": 3,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "spatial_patch_size": 14,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
            "temporal_patch_size": 2,
        },
    }

    torch.manual_seed(0)
    config = Qwen2_5_VLConfig(**config_dict)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16).eval()
    with torch.no_grad():
        # An end token's logit is then exactly 0 while the best of the ~400 random logits
        # is positive: the model writes until the token cap instead of stopping at random.
        for token in ("<|im_end|>", "<|endoftext|>"):
            model.lm_head.weight[vocab[token]] = 0.0
    if scripted:
        _script_weights(model, vocab)
    # Two shards, so the index file (``metadata.total_size``) is exercised as for the real model.
    model.save_pretrained(path, max_shard_size="400KB")
    _write_json(path / "config.json", config_dict)
    _write_json(
        path / "generation_config.json",
        {
            "bos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
            "do_sample": True,
            "eos_token_id": [vocab["<|im_end|>"], vocab["<|endoftext|>"]],
            "repetition_penalty": 1.05,
            "temperature": 0.1,
            "top_k": 1,
            "top_p": 0.001,
        },
    )
    _write_json(
        path / "preprocessor_config.json",
        {
            "min_pixels": 3136,
            "max_pixels": 12845056,
            "patch_size": 14,
            "temporal_patch_size": 2,
            "merge_size": 2,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711],
            "image_processor_type": "Qwen2VLImageProcessor",
            "processor_class": "Qwen2_5_VLProcessor",
        },
    )
    _write_json(path / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    return path


#: What the trained tiny model answers for every image (see :func:`train_tiny_answerer`).
TRAINED_REASONING = "Cystoid spaces and fluid in the macula."
TRAINED_ANSWER = {
    "classification": "Diabetic Macular Edema",
    "confidence": 87,
    "findings": ["intraretinal fluid"],
    "recommendation": "Refer to retina clinic",
    "explanation": "Cystoid spaces in the macula.",
}
TRAINED_ANSWER_TEXT = json.dumps(TRAINED_ANSWER)
TRAINED_OUTPUT = f"<think>{TRAINED_REASONING}</think>{TRAINED_ANSWER_TEXT}"

#: Image sizes trained on; the check uses sizes outside this list.
_TRAIN_SIZES = [(32, 24), (64, 48), (200, 160), (96, 300), (640, 480)]
_TRAIN_MODALITIES = [None, "OCT", "fundus", "OCTA"]
_CHECK_SIZES = [(48, 64), (150, 110), (512, 496)]


def _engine_check_image() -> Any:
    """The flat image the saved checkpoint is finally checked with."""
    from PIL import Image

    return Image.new("RGB", (300, 220), (90, 120, 30))


def _random_image(size: tuple[int, int], generator: Any) -> Any:
    import torch
    from PIL import Image

    kind = int(torch.randint(0, 3, (1,), generator=generator))
    if kind == 0:  # noise
        data = torch.randint(0, 256, (size[1], size[0], 3), generator=generator)
        return Image.fromarray(data.to(torch.uint8).numpy(), "RGB")
    if kind == 1:  # one flat colour
        colour = tuple(int(c) for c in torch.randint(0, 256, (3,), generator=generator))
        return Image.new("RGB", size, colour)
    data = torch.randint(0, 256, (size[1], size[0]), generator=generator)  # grey noise
    return Image.fromarray(data.to(torch.uint8).numpy(), "L")


def _engine_inputs(processor: Any, image: Any, modality: str | None, settings: Any) -> Any:
    """The processor output exactly as ``InferenceEngine._generate`` builds it."""
    from ophthai_desktop.core.inference.preprocess import prepare_image
    from ophthai_desktop.core.inference.prompt import build_messages

    prompt = processor.apply_chat_template(
        build_messages(None, modality), add_generation_prompt=True, tokenize=False
    )
    max_pixels = settings.max_pixels
    min_pixels = min(settings.min_pixels, max_pixels)
    return processor(
        text=[prompt],
        images=[prepare_image(image)],
        return_tensors="pt",
        images_kwargs={"size": {"shortest_edge": min_pixels, "longest_edge": max_pixels}},
    )


#: The image budget the trained model is trained and used with (at most 64 patches, 16
#: image tokens, whatever the image's size), which keeps its training to seconds.
TRAINED_MAX_PIXELS = 112 * 112


def train_tiny_answerer(
    path: Path, *, seconds_budget: float = 300.0, max_pixels: int = TRAINED_MAX_PIXELS
) -> Path:
    """Build the tiny checkpoint at ``path`` and train it to always answer one fixed text.

    The answerer ignores what an image shows: the last layer of the vision tower's patch
    merger is set to zero and the tower frozen, so the tower still runs on every image
    but hands the language model zero vectors. Two images with the same patch grid and
    modality hint are then one and the same input to the language model, and the answer
    cannot hinge on the pixels. (Trained on the pixels, it stopped on its check images on
    this machine but came out garbled for another image on a 16-core host with torch
    2.11.)

    Training is deterministic on one machine: fixed seeds, at most four CPU threads, and
    every step is one full batch of ten engine inputs (five image sizes, noise/flat/grey
    images, four modality hints; AdamW at lr 1e-2). The float results, and so the steps it
    takes, differ with the CPU and the thread count. It stops (after ~120 steps, ~50 s on
    two cores) once teacher-forced greedy predictions win by a logit margin on every
    training input and greedy ``model.generate`` (with the checkpoint's repetition
    penalty) writes :data:`TRAINED_OUTPUT` for three noise images of sizes not trained on
    and for the flat image of the final check. The float32 weights are saved with
    ``save_pretrained``, then the engine loads the folder on the CPU and analyses that
    flat image; a different output raises.

    Args:
        path: Folder to create (may exist and be empty).
        seconds_budget: Give up (``RuntimeError``, saying how far it got) when training
            takes longer.
        max_pixels: ``OPHTHAI_MAX_PIXELS`` to train for; use the same when running it.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from ophthai_desktop.core.inference.processor import load_processor
    from ophthai_desktop.core.settings import Settings

    build_tiny_qwen25vl(path)
    started = time.monotonic()
    side_files = {
        name: (path / name).read_text(encoding="utf-8")
        for name in ("config.json", "generation_config.json")
    }
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    settings = Settings(data_dir=path / "_unused", _env_file=None, max_pixels=max_pixels)
    processor = load_processor(path, "qwen2_5_vl")
    tokenizer = processor.tokenizer
    target_ids = tokenizer(TRAINED_OUTPUT + "<|im_end|>", add_special_tokens=False)["input_ids"]
    if tokenizer.decode(target_ids[:-1], skip_special_tokens=False) != TRAINED_OUTPUT:
        raise RuntimeError("the tiny tokenizer does not round-trip the trained output")
    target = torch.tensor([target_ids])
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(path), dtype=torch.float32)
    _blind(model)

    samples = []
    for index, size in enumerate(_TRAIN_SIZES):
        for repeat in range(2):
            modality = _TRAIN_MODALITIES[(index + repeat) % len(_TRAIN_MODALITIES)]
            image = _random_image(size, generator)
            samples.append(_engine_inputs(processor, image, modality, settings))
    batch, labels = _training_batch(samples, target, tokenizer.pad_token_id)
    checks = [
        _engine_inputs(processor, _random_image(size, generator), "OCT", settings)
        for size in _CHECK_SIZES
    ]
    # The image the saved checkpoint is checked with at the end is a stopping condition too.
    checks.append(_engine_inputs(processor, _engine_check_image(), "OCT", settings))

    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 4))  # tiny tensors: more threads only add overhead
    try:
        _train(model, batch, labels, checks, target, started + seconds_budget)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    for name in [*path.glob("model*.safetensors"), path / "model.safetensors.index.json"]:
        name.unlink(missing_ok=True)
    model.save_pretrained(path, max_shard_size="2MB")
    for name, text in side_files.items():
        (path / name).write_text(text, encoding="utf-8")
    _check_with_engine(path, {"max_pixels": max_pixels})
    return path


def _blind(model: Any) -> None:
    """Zero the vision tower's last layer and freeze the tower: images reach the language
    model as zero vectors, one per image token."""
    import torch

    visual = model.model.visual
    last = visual.merger.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    visual.requires_grad_(False)


def _train(
    model: Any, batch: dict[str, Any], labels: Any, checks: list[Any], target: Any, deadline: float
) -> None:
    """Full-batch AdamW steps until :func:`_learned` and :func:`_generates` hold."""
    import torch

    trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-2, weight_decay=0.0)
    step = 0
    learned = False
    while True:
        model.train()
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        step += 1
        learned = loss.item() < 0.02 and _learned(model, batch, labels)
        if learned and _generates(model, checks, target):
            return
        if time.monotonic() > deadline:
            state = (
                "greedy generation missed a check image"
                if learned
                else "teacher-forced predictions not yet all right by a margin"
            )
            raise RuntimeError(
                f"the tiny answerer did not learn its output in time ({step} steps, "
                f"last loss {loss.item():.4f}, {state})"
            )


def _training_batch(samples: list[Any], target: Any, pad_id: int) -> tuple[dict[str, Any], Any]:
    """Prompt + target for every sample, left-padded into one batch; labels on the target."""
    import torch

    rows = [torch.cat([s["input_ids"][0], target[0]]) for s in samples]
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    token_types = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for index, (row, sample) in enumerate(zip(rows, samples, strict=True)):
        input_ids[index, width - len(row) :] = row
        attention[index, width - len(row) :] = 1
        labels[index, width - target.shape[1] :] = target[0]
        if "mm_token_type_ids" in sample:
            prompt = sample["mm_token_type_ids"][0]
            token_types[index, width - len(row) : width - len(row) + len(prompt)] = prompt
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention,
        "pixel_values": torch.cat([s["pixel_values"] for s in samples]),
        "image_grid_thw": torch.cat([s["image_grid_thw"] for s in samples]),
    }
    if "mm_token_type_ids" in samples[0]:
        batch["mm_token_type_ids"] = token_types
    return batch, labels


def _learned(model: Any, batch: dict[str, Any], labels: Any, margin: float = 1.0) -> bool:
    """Every next target token is the argmax, by ``margin``, on every training input."""
    import torch

    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits[:, :-1]
    want = labels[:, 1:]
    mask = want != -100
    picked = logits[mask]
    wanted = want[mask]
    right = picked.gather(1, wanted[:, None])[:, 0]
    picked[torch.arange(len(wanted)), wanted] = float("-inf")
    gap = right - picked.max(dim=1).values
    return bool((gap >= margin).all())


def _generates(model: Any, checks: list[Any], target: Any) -> bool:
    """Greedy ``generate`` (the checkpoint's repetition penalty) writes the target."""
    import torch

    with torch.no_grad():
        for inputs in checks:
            output = model.generate(
                **inputs,
                do_sample=False,
                max_new_tokens=target.shape[1] + 4,
                repetition_penalty=1.05,
                temperature=1.0,
                top_p=1.0,
                top_k=50,
            )
            written = output[0, inputs["input_ids"].shape[1] :]
            if written.tolist() != target[0].tolist():
                return False
    return True


def _check_with_engine(path: Path, overrides: dict[str, Any]) -> None:
    """Load the saved folder with the real engine and analyse the check image."""
    import tempfile

    from ophthai_desktop.core.inference.engine import InferenceEngine
    from ophthai_desktop.core.settings import Settings

    with tempfile.TemporaryDirectory() as data_dir:
        values: dict[str, Any] = {"model_path": path, "device": "cpu", **overrides}
        settings = Settings(data_dir=Path(data_dir), _env_file=None, **values)
        engine = InferenceEngine(settings)
        engine.load()
        try:
            result = engine.generate(_engine_check_image(), modality="OCT")
        finally:
            engine.unload()
    if result.raw_text != TRAINED_OUTPUT or result.finish_reason != "eos":
        raise RuntimeError(
            f"the trained tiny model wrote {result.raw_text!r} ({result.finish_reason}), "
            f"not {TRAINED_OUTPUT!r}"
        )
