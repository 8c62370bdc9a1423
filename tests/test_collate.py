"""Rows -> batches: answer-only labels, every processor output kept, true video fps, padding sides, max length."""

from __future__ import annotations

import pytest
import torch

from mevqa.collate import IGNORE_INDEX, Collator, QADataset, encode
from mevqa.errors import MevqaError
from mevqa.messages import INPUT_MODES
from mevqa.rows import read_rows
from qa_rows import write_qa_file



@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return read_rows(write_qa_file(tmp_path_factory.mktemp("qa"), clips=2))


@pytest.mark.parametrize("mode", list(INPUT_MODES))
def test_labels_are_exactly_the_answer_and_its_end_token(tiny, rows, mode):
    model, processor = tiny
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
def test_every_processor_output_reaches_the_batch_and_the_loss_is_finite(tiny, rows, mode):
    model, processor = tiny
    batch = encode(processor, [QADataset(rows, mode)[i] for i in (0, 1)], train=True)
    expected = {"input_ids", "attention_mask", "mm_token_type_ids", "labels"}
    expected |= ({"pixel_values_videos", "video_grid_thw", "second_per_grid_ts"} if mode == "video"
                 else {"pixel_values", "image_grid_thw"})
    assert set(batch.keys()) == expected
    # mm_token_type_ids marks exactly the vision placeholders (1 image, 2 video): 3-D M-RoPE depends on it.
    types = batch["mm_token_type_ids"]
    ids = batch["input_ids"]
    assert torch.equal(types == 1, ids == model.config.image_token_id)
    assert torch.equal(types == 2, ids == model.config.video_token_id)
    position_ids, _ = model.model.get_rope_index(ids, batch["mm_token_type_ids"], batch.get("image_grid_thw"),
                                                 batch.get("video_grid_thw"), batch.get("second_per_grid_ts"),
                                                 batch["attention_mask"])
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
