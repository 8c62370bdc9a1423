"""Rows -> batches: answer-only labels, every processor output kept, true video fps, padding sides, max length."""

from __future__ import annotations

import pytest
import torch

import re

from mevqa.errors import MevqaError
from mevqa.messages import INPUT_MODES
from mevqa.models.collate import IGNORE_INDEX, Collator, QADataset, encode
from mevqa.models.families import family_of
from mevqa.rows import read_rows
from qa_rows import write_qa_file


@pytest.fixture(scope="module")
def family_tiny(tiny_family_dir):
    """``(model, processor)`` of each family's tiny model in turn."""
    from mevqa.models.loading import load_model_and_processor

    return load_model_and_processor(tiny_family_dir, device="cpu")


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return read_rows(write_qa_file(tmp_path_factory.mktemp("qa"), clips=2))


@pytest.mark.parametrize("mode", list(INPUT_MODES))
def test_labels_are_exactly_the_answer_and_its_end_token(family_tiny, rows, mode):
    model, processor = family_tiny
    tokenizer = processor.tokenizer
    picked = [rows[0], rows[4], rows[6]]          # coarse, composite (long), fine: different lengths
    dataset = QADataset(picked, mode)
    batch = Collator(processor, train=True)([dataset[i] for i in range(len(dataset))])
    labels, ids, mask = batch["labels"], batch["input_ids"], batch["attention_mask"]
    for i, row in enumerate(picked):
        kept = labels[i][labels[i] != IGNORE_INDEX]
        assert tokenizer.decode(kept) == row["answer"] + "<|im_end|>"
        # Right padding: real tokens first, then pad tokens that never count.
        length = int(mask[i].sum())
        assert mask[i, :length].all() and not mask[i, length:].any()
        assert (ids[i, length:] == tokenizer.pad_token_id).all()
        assert (labels[i, length:] == IGNORE_INDEX).all()
    assert mask[:, -1].any() and not mask.all()      # lengths differ, so padding really happened
    vision_pad = (ids == model.config.image_token_id) | (ids == model.config.video_token_id)
    assert vision_pad.any() and (labels[vision_pad] == IGNORE_INDEX).all()


@pytest.mark.parametrize("mode", list(INPUT_MODES))
def test_every_processor_output_reaches_the_batch_and_the_loss_is_finite(family_tiny, rows, mode):
    model, processor = family_tiny
    batch = encode(processor, [QADataset(rows, mode)[i] for i in (0, 1)], train=True)
    expected = {"input_ids", "attention_mask", "mm_token_type_ids", "labels"}
    grid_seconds = {"second_per_grid_ts"} if family_of(model).video_timing == "second_per_grid_ts" else set()
    expected |= ({"pixel_values_videos", "video_grid_thw", *grid_seconds} if mode == "video"
                 else {"pixel_values", "image_grid_thw"})
    assert set(batch.keys()) == expected
    # mm_token_type_ids marks exactly the vision placeholders (1 image, 2 video): 3-D M-RoPE depends on it.
    types = batch["mm_token_type_ids"]
    ids = batch["input_ids"]
    assert torch.equal(types == 1, ids == model.config.image_token_id)
    assert torch.equal(types == 2, ids == model.config.video_token_id)
    grids = {key: batch[key] for key in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts") if key in batch}
    position_ids, _ = model.model.get_rope_index(ids, batch["mm_token_type_ids"], attention_mask=batch["attention_mask"],
                                                 **grids)
    assert not torch.equal(position_ids[1], position_ids[2])          # height and width positions differ
    model.train()
    try:
        loss = model(**batch).loss
        loss.backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()
    assert torch.isfinite(loss) and loss.item() > 0


def test_video_gets_its_true_fps(tiny, tmp_path):
    _, processor = tiny
    slow = read_rows(write_qa_file(tmp_path / "a", clips=1, step=5, source_fps=200.0))[0]   # 40 fps
    fast = read_rows(write_qa_file(tmp_path / "b", clips=1, step=1, source_fps=30.0))[0]    # 30 fps
    samples = [QADataset([slow, fast], "video")[i] for i in (0, 1)]
    batch = encode(processor, samples, train=True)
    temporal_patch = processor.video_processor.temporal_patch_size
    assert batch["second_per_grid_ts"].tolist() == pytest.approx([temporal_patch / 40.0, temporal_patch / 30.0])
    assert batch["video_grid_thw"][:, 0].tolist() == [4, 4]
    capped = QADataset([slow], "video", max_frames=4)[0]                  # frames 10, 20, 35, 45 at 200 fps
    assert encode(processor, [capped], train=True)["second_per_grid_ts"].tolist() == \
        pytest.approx([temporal_patch / (200.0 * 3 / 35)])


@pytest.mark.parametrize("mode", list(INPUT_MODES))
def test_inputs_equal_the_family_processor_given_the_same_frames_and_metadata(family_tiny, rows, mode):
    """mevqa's batch is exactly what the family's own processor makes of the same chat, images and frames when it
    is told the clip's true timing (metadata built here from the row: the frames' rate and indices)."""
    from transformers.video_utils import VideoMetadata

    _, processor = family_tiny
    samples = [QADataset(rows, mode)[i] for i in (0, 5)]
    ours = encode(processor, samples, train=False)
    texts = [processor.apply_chat_template(s.messages, tokenize=False, add_generation_prompt=True) for s in samples]
    kwargs = {}
    if mode == "video":
        media = [s.row["media"]["video"] for s in samples]
        kwargs = {"videos": [v for s in samples for v in s.vision.videos], "do_sample_frames": False,
                  "video_metadata": [VideoMetadata(total_num_frames=len(m["frames"]), fps=m["sample_fps"],
                                                   frames_indices=list(range(len(m["frames"])))) for m in media]}
    else:
        kwargs = {"images": [i for s in samples for i in s.vision.images]}
    theirs = processor(text=texts, padding=True, padding_side="left", return_tensors="pt", **kwargs)
    assert set(ours.keys()) == set(theirs.keys())
    for key in theirs:
        assert torch.equal(torch.as_tensor(ours[key]), torch.as_tensor(theirs[key])), key


@pytest.mark.parametrize("source_fps, step", [(200.0, 25), (200.0, 9)])
def test_the_encoded_video_carries_the_true_times(family_tiny, tmp_path, source_fps, step):
    """8 frames sampled over onset..offset of a 200 fps (SAMM) clip: the model is told their true times, and gets
    exactly the 8 frames (Qwen3-VL's processor would resample them to its own fps and assume 24 fps without the
    metadata mevqa passes)."""
    model, processor = family_tiny
    fam = family_of(model)
    row = read_rows(write_qa_file(tmp_path, clips=1, step=step, source_fps=source_fps, n_frames=8, first=1000))[0]
    video = row["media"]["video"]
    numbers = video["frame_numbers"]
    true_times = [(n - numbers[0]) / source_fps for n in numbers]          # from the clip's onset
    batch = encode(processor, [QADataset([row], "video")[0]], train=True)
    temporal = processor.video_processor.temporal_patch_size
    assert int(batch["video_grid_thw"][0, 0]) * temporal == len(numbers)   # the same frames, none resampled
    text = processor.tokenizer.decode(batch["input_ids"][0])
    stamps = re.findall(r"<(\d+\.\d) seconds>", text)
    if fam.video_timing == "second_per_grid_ts":
        assert batch["second_per_grid_ts"].tolist() == pytest.approx([temporal / video["sample_fps"]])
        assert temporal / video["sample_fps"] == pytest.approx(true_times[temporal] - true_times[0])
    else:
        assert "second_per_grid_ts" not in batch
    if fam.video_timing == "timestamps":
        pairs = [(true_times[i] + true_times[i + 1]) / 2 for i in range(0, len(true_times), temporal)]
        assert stamps == [f"{t:.1f}" for t in pairs]
        if step == 25:  # 0.125 s apart: the 24 fps the processor assumes without metadata would read 0.0 ... 0.3
            assert stamps == ["0.1", "0.3", "0.6", "0.8"]
    else:
        assert stamps == []


def test_generation_batches_are_left_padded_and_end_with_the_assistant_header(tiny, rows):
    _, processor = tiny
    tokenizer = processor.tokenizer
    samples = [QADataset(rows, "oao", with_answer=False)[i] for i in (0, 4)]
    batch = Collator(processor, train=False)(samples)
    assert "labels" not in batch
    mask = batch["attention_mask"]
    assert mask[:, -1].all() and not mask[:, 0].all()
    header = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    assert batch["input_ids"][:, -len(header):].tolist() == [header, header]


def test_pixel_budgets_from_arguments(tiny, rows):
    _, processor = tiny
    samples = [QADataset(rows, "frames+flow")[0]]
    small = encode(processor, samples, train=True, image_pixels=(28 * 28, 28 * 28))
    assert small["image_grid_thw"][:, 1:].tolist() == [[2, 2]] * 4
    large = encode(processor, samples, train=True, image_pixels=(112 * 112, 112 * 112))
    assert large["image_grid_thw"][:, 1:].tolist() == [[8, 8]] * 4
    # 120x100 frames under at most 56x56 px: 28x56 px, 2x4 patches (Qwen's smart_resize keeps the aspect ratio).
    video = encode(processor, [QADataset(rows, "video")[0]], train=True, video_pixels=(28 * 28, 56 * 56))
    assert video["video_grid_thw"].tolist() == [[4, 2, 4]]
    # The processor's own budget is untouched by a per-call budget.
    assert processor.image_processor.size["longest_edge"] == 112 * 112


def test_over_length_sample_is_an_error_naming_the_row(tiny, rows):
    _, processor = tiny
    samples = [QADataset(rows, "oao")[i] for i in (0, 4)]
    lengths = encode(processor, samples, train=True)["attention_mask"].sum(1).tolist()
    assert lengths[1] > lengths[0]
    fits = encode(processor, samples, train=True, max_length=lengths[1])
    assert fits["input_ids"].shape[1] == lengths[1]                    # nothing truncated
    with pytest.raises(MevqaError, match=rf"row synth_clip0_5: {lengths[1]} tokens .* exceed max_length "
                                         rf"{lengths[1] - 1}"):
        encode(processor, samples, train=True, max_length=lengths[1] - 1)


def test_dataloader_with_the_collator(tiny, rows):
    _, processor = tiny
    loader = torch.utils.data.DataLoader(QADataset(rows, "flow"), batch_size=4,
                                         collate_fn=Collator(processor, train=True, max_length=512))
    batches = list(loader)
    assert [b["input_ids"].shape[0] for b in batches] == [4, 4, 2]
    assert sum(int(b["image_grid_thw"].shape[0]) for b in batches) == len(rows)


def test_true_fps_puts_a_micro_expression_in_one_temporal_position_and_video_fps_spreads_it(tiny, rows):
    model, processor = tiny
    sample = QADataset(rows, "video")[0]                  # 8 frames at 40 fps: 0.175 s
    positions = {}
    for fps in (None, 2.0):
        batch = encode(processor, [sample], train=True, video_fps=fps)
        position_ids, _ = model.model.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"], None,
                                                     batch["video_grid_thw"], batch["second_per_grid_ts"],
                                                     batch["attention_mask"])
        video = batch["input_ids"][0] == model.config.video_token_id
        positions[fps] = position_ids[0, 0][video]       # temporal positions of the video tokens
        expected_fps = 40.0 if fps is None else fps
        assert batch["second_per_grid_ts"].tolist() == pytest.approx([2 / expected_fps])
    assert len(set(positions[None].tolist())) == 1          # 4 temporal patches, one position
    assert len(set(positions[2.0].tolist())) == 4           # 1 s per temporal patch: 2 positions apart
    with pytest.raises(MevqaError, match="video_fps must be positive"):
        encode(processor, [sample], train=True, video_fps=0)


@pytest.mark.parametrize("n_frames", [1, 3])
def test_videos_shorter_than_or_odd_to_the_temporal_patch_keep_their_true_times(family_tiny, tmp_path, n_frames):
    """One frame (which Qwen3-VL's processor refuses: fewer than its temporal patch) and an odd count (the last frame
    repeated to a whole patch, as every family's processor does): both encode, on the frames given, with the true
    times (frames 0.5 s apart here, so Qwen3-VL's one-decimal stamps tell them apart)."""
    model, processor = family_tiny
    fam = family_of(model)
    row = read_rows(write_qa_file(tmp_path, clips=1, step=100, source_fps=200.0, n_frames=n_frames, first=10))[0]
    video = row["media"]["video"]
    assert len(video["frame_numbers"]) == n_frames
    batch = encode(processor, [QADataset([row], "video")[0]], train=True)
    temporal = processor.video_processor.temporal_patch_size
    assert int(batch["video_grid_thw"][0, 0]) == -(-n_frames // temporal)
    times = [(n - video["frame_numbers"][0]) / 200.0 for n in video["frame_numbers"]]
    times += [times[-1]] * (-n_frames % temporal)                       # the last frame, repeated, at its own time
    stamps = re.findall(r"<(\d+\.\d) seconds>", processor.tokenizer.decode(batch["input_ids"][0]))
    if fam.video_timing == "timestamps":
        assert stamps == [f"{(times[i] + times[i + 1]) / 2:.1f}" for i in range(0, len(times), temporal)]
        assert stamps == (["0.0"] if n_frames == 1 else ["0.2", "1.0"])
    elif fam.video_timing == "second_per_grid_ts":
        assert batch["second_per_grid_ts"].tolist() == pytest.approx([temporal / video["sample_fps"]])
    model.train()
    try:
        loss = model(**batch).loss
    finally:
        model.eval()
    assert torch.isfinite(loss)
