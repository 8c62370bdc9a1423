"""qwen-vl-utils, Qwen's reference preprocessing, as the check on mevqa's video inputs.

mevqa gives the processor the frames it already sampled, as one uint8 array per video, with
``VideoMetadata(fps=sample_fps)`` and ``do_sample_frames=False`` (``mevqa.models.collate.encode``). For frames whose
sides are multiples of 56 px and the same frame rate, that equals qwen-vl-utils + the processor exactly:
``pixel_values_videos``, ``video_grid_thw`` and ``second_per_grid_ts``.

Why mevqa does not call qwen-vl-utils (0.0.14) instead, each fact reproduced below on the installed versions:

- its frame-list path resizes every frame with a 56 px factor (it passes the 28 px factor where ``fetch_image``
  expects the patch size, and doubles it), so frames whose sides are multiples of 28 but not 56 change size;
- its Qwen2.5-VL-style output, ``fps`` as a list, is rejected by transformers 5.x's processor;
- a scalar ``fps`` is not used for frames given without metadata: transformers takes them as 24 fps, so
  ``second_per_grid_ts`` is 2/24 instead of 2/sample_fps (the temporal positions are wrong);
- its last-resort video reader calls ``torchvision.io.read_video``, which torchvision 0.29 no longer has.

Only ``return_video_metadata=True`` (which drops ``fps`` and returns metadata for the processor) gives the right
timing, and that is the route mevqa takes itself, with the true sampled fps of each clip.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import qwen_vl_utils
import torch
from transformers import AutoProcessor

from mevqa.models.collate import QADataset, encode
from mevqa.rows import read_rows
from qa_rows import write_qa_file


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return AutoProcessor.from_pretrained(tiny_model_dir)


def _video_sample(tmp_path, size, *, max_frames=None):
    """mevqa's sample (messages + loaded vision) for the first row of a synthetic clip with frames of ``size``."""
    path = write_qa_file(tmp_path, clips=1, size=size, n_frames=8, step=5, source_fps=200.0)
    return QADataset(read_rows(path), "video", with_answer=False, max_frames=max_frames)[0]


def _reference(processor, sample, budget, **video_options):
    """The same sample through qwen-vl-utils and the processor, as Qwen's documentation shows for 5.x."""
    item = next(i for i in sample.messages[-1]["content"] if i["type"] == "video")
    element = {"type": "video", "video": item["video"], "sample_fps": item["fps"], "min_pixels": budget[0],
               "max_pixels": budget[1], **video_options}
    messages = [{"role": "user", "content": [element, {"type": "text", "text": "?"}]}]
    _, videos, kwargs = qwen_vl_utils.process_vision_info(messages, return_video_kwargs=True,
                                                          return_video_metadata=True)
    (video, metadata), = videos
    text = processor.apply_chat_template(sample.messages, tokenize=False, add_generation_prompt=True)
    return processor(text=[text], videos=[video], video_metadata=[metadata], return_tensors="pt", **kwargs), item


def _budget(processor, width, height):
    budget = (3136, width * height)  # the frames fit the budget as they are
    processor.video_processor.size = {"shortest_edge": budget[0], "longest_edge": budget[1]}
    return budget


@pytest.mark.parametrize("max_frames", [None, 4])
def test_mevqa_video_inputs_equal_qwen_vl_utils_for_56px_multiples(processor, tmp_path, max_frames):
    width, height = 112, 168
    budget = _budget(processor, width, height)
    sample = _video_sample(tmp_path, (width, height), max_frames=max_frames)
    ours = encode(processor, [sample], train=False)
    reference, item = _reference(processor, sample, budget)

    assert torch.equal(ours["pixel_values_videos"], reference["pixel_values_videos"])
    assert ours["video_grid_thw"].tolist() == reference["video_grid_thw"].tolist()
    frames = 8 if max_frames is None else 4
    assert ours["video_grid_thw"].tolist() == [[frames // 2, height // 14, width // 14]]
    # the true rate of the frames shown: 8 frames 5 source frames apart at 200 fps -> 40 fps; 4 of them -> 17.14
    expected_fps = 200.0 * (frames - 1) / 35
    assert item["fps"] == pytest.approx(expected_fps)
    assert ours["second_per_grid_ts"].tolist() == pytest.approx(reference["second_per_grid_ts"].tolist())
    assert ours["second_per_grid_ts"].tolist() == pytest.approx([2 / expected_fps])
    assert torch.equal(ours["input_ids"], reference["input_ids"])


def test_qwen_vl_utils_frame_lists_snap_to_56px(processor, tmp_path):
    width, height = 84, 140  # multiples of 28, not of 56
    budget = _budget(processor, width, height)
    sample = _video_sample(tmp_path, (width, height))
    ours = encode(processor, [sample], train=False)
    reference, _ = _reference(processor, sample, budget)
    assert ours["video_grid_thw"].tolist() == [[4, height // 14, width // 14]]  # mevqa keeps 84 x 140
    _, grid_h, grid_w = reference["video_grid_thw"][0].tolist()
    assert (grid_h * 14, grid_w * 14) != (height, width)
    assert (grid_h * 14) % 56 == 0 and (grid_w * 14) % 56 == 0


def test_qwen_vl_utils_fps_list_is_rejected_and_a_scalar_fps_gives_24_fps_timing(processor, tmp_path):
    width, height = 112, 112
    budget = _budget(processor, width, height)
    sample = _video_sample(tmp_path, (width, height))
    item = next(i for i in sample.messages[-1]["content"] if i["type"] == "video")
    element = {"type": "video", "video": item["video"], "sample_fps": item["fps"], "min_pixels": budget[0],
               "max_pixels": budget[1]}
    _, videos, kwargs = qwen_vl_utils.process_vision_info(
        [{"role": "user", "content": [element, {"type": "text", "text": "?"}]}], return_video_kwargs=True)
    assert kwargs == {"do_sample_frames": False, "fps": [pytest.approx(40.0)]}
    text = processor.apply_chat_template(sample.messages, tokenize=False, add_generation_prompt=True)
    with pytest.raises(Exception, match="fps"):
        processor(text=[text], videos=videos, return_tensors="pt", **kwargs)
    scalar = processor(text=[text], videos=videos, return_tensors="pt", do_sample_frames=False, fps=item["fps"])
    assert scalar["second_per_grid_ts"].tolist() == pytest.approx([2 / 24])       # not the clip's 2 / 40
    ours = encode(processor, [sample], train=False)
    assert ours["second_per_grid_ts"].tolist() == pytest.approx([2 / 40])


def test_qwen_vl_utils_video_file_fallback_needs_torchvision_read_video(tmp_path):
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 30 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    import torchvision

    if hasattr(torchvision.io, "read_video"):
        pytest.skip(f"torchvision {torchvision.__version__} still has io.read_video")
    with pytest.raises(AttributeError, match="read_video"):
        qwen_vl_utils.vision_process._read_video_torchvision({"video": str(path)})
