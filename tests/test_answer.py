"""``mevqa answer`` on a tiny random Qwen2.5-VL: frame folders and video files, every input mode, base / adapter /
merged models, and the bad-input messages."""

from __future__ import annotations

import copy
import json
import tempfile

import pytest

from inference_clips import write_frame_folder, write_silent_model, write_video
from mevqa.cli import main
from mevqa.messages import INPUT_MODES

QUESTION = "What is the coarse expression class?"
N_FRAMES = 12  # frames 100..111; the synthetic mouth opens most at the 7th frame (106)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return write_frame_folder(tmp_path_factory.mktemp("clip") / "EP01", n_frames=N_FRAMES, first=100,
                              pattern="img{}.jpg")


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", n_frames=N_FRAMES, fps=30.0)


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights on the tiny model, saved by peft, and its merged checkpoint."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    root = tmp_path_factory.mktemp("adapter")
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(1)
    config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(root / "adapter")
    peft_model.merge_and_unload().save_pretrained(root / "merged")
    AutoProcessor.from_pretrained(tiny_model_dir).save_pretrained(root / "merged")
    return root


def answer(capsys, *args) -> dict:
    assert main(["answer", "--question", QUESTION, "--max-new-tokens", "8", "--json", "-", *map(str, args)]) == 0
    return json.loads(capsys.readouterr().out)


def expected_answer(model_dir, clip, mode, fps, adapter=None, **settings) -> str:
    """The answer for the same clip built the way ``mevqa build-data`` builds a dataset clip."""
    from mevqa.answering.generation import generate_answers
    from mevqa.media import MediaSettings, build_media, read_clip, resolve_span
    from mevqa.models.loading import load_model_and_processor
    from mevqa.rows import resolve_media

    with tempfile.TemporaryDirectory() as out:
        clip = read_clip(clip)
        media = build_media(clip, resolve_span(clip), MediaSettings.from_record(settings, modes=INPUT_MODES[mode].needs),
                            out, fps=fps)
        row = resolve_media({"id": "x", "question": QUESTION, "media": copy.deepcopy(media)}, out, "x")
        model, processor = load_model_and_processor(str(model_dir), adapter=adapter)
        return generate_answers(model, processor, [row], mode, batch_size=1, max_new_tokens=8)[0]


@pytest.mark.parametrize("mode", list(INPUT_MODES))
def test_answer_frame_folder_every_mode(capsys, tiny_model_dir, clip_dir, mode):
    report = answer(capsys, "--clip", clip_dir, "--model", tiny_model_dir, "--inputs", mode, "--fps", 200)
    assert report["inputs"] == mode
    clip = report["clip"]
    assert (clip["onset"], clip["apex"], clip["offset"]) == (100, 106, 111)
    assert clip["apex_method"] == "max_diff" and clip["n_frames"] == N_FRAMES
    assert set(report["media"]) == set(INPUT_MODES[mode].needs)
    if "oao" in report["media"]:
        assert report["media"]["oao"]["frame_numbers"] == [100, 106, 111]
    if mode == "video":
        video = report["media"]["video"]
        assert len(video["frame_numbers"]) == 8 and video["frame_numbers"][0] == 100
        span = video["frame_numbers"][-1] - video["frame_numbers"][0]
        assert video["sample_fps"] == pytest.approx(200 * 7 / span, rel=1e-5)
    assert report["device"] == "cpu" and report["dtype"] == "torch.float32"
    assert report["timings"]["load_s"] > 0 and report["timings"]["generate_s"] > 0
    assert isinstance(report["answer"], str)
    assert report["answer"] == expected_answer(tiny_model_dir, clip_dir, mode, 200.0)


@pytest.mark.parametrize("mode", list(INPUT_MODES))
def test_answer_video_file_every_mode(capsys, tiny_model_dir, video_file, mode):
    report = answer(capsys, "--clip", video_file, "--model", tiny_model_dir, "--inputs", mode)
    clip = report["clip"]
    # A video's frames are numbered from 0 and its own rate is used.
    assert (clip["onset"], clip["apex"], clip["offset"]) == (0, 6, 11)
    assert clip["fps"] == pytest.approx(30.0)
    if mode == "video":
        video = report["media"]["video"]
        assert video["source_fps"] == pytest.approx(30.0)
        span = video["frame_numbers"][-1] - video["frame_numbers"][0]
        assert video["sample_fps"] == pytest.approx(30.0 * 7 / span, rel=1e-5)
    assert report["answer"] == expected_answer(tiny_model_dir, video_file, mode, None)


@pytest.mark.parametrize("mode", list(INPUT_MODES))
def test_answer_with_adapter_every_mode(capsys, tiny_model_dir, clip_dir, adapter_dir, mode):
    adapter = adapter_dir / "adapter"
    report = answer(capsys, "--clip", clip_dir, "--model", tiny_model_dir, "--adapter", adapter, "--inputs", mode,
                    "--fps", 200)
    assert report["adapter"] == str(adapter)
    assert report["answer"] == expected_answer(tiny_model_dir, clip_dir, mode, 200.0, adapter=adapter)


def test_adapter_changes_the_answer_and_merged_model_gives_the_same(capsys, tiny_model_dir, clip_dir, adapter_dir):
    base = answer(capsys, "--clip", clip_dir, "--model", tiny_model_dir)["answer"]
    with_adapter = answer(capsys, "--clip", clip_dir, "--model", tiny_model_dir, "--adapter",
                          adapter_dir / "adapter")["answer"]
    merged = answer(capsys, "--clip", clip_dir, "--model", adapter_dir / "merged")["answer"]
    assert with_adapter != base
    assert merged == with_adapter


def test_answer_prints_only_the_answer(capsys, tiny_model_dir, clip_dir):
    assert main(["answer", "--clip", str(clip_dir), "--question", QUESTION, "--model", str(tiny_model_dir),
                 "--max-new-tokens", "8", "--onset", "101", "--apex", "104", "--offset", "110"]) == 0
    captured = capsys.readouterr()
    report = answer(capsys, "--clip", clip_dir, "--model", tiny_model_dir, "--onset", 101, "--apex", 104,
                    "--offset", 110)
    assert captured.out == report["answer"] + "\n"
    assert (report["clip"]["onset"], report["clip"]["apex"], report["clip"]["offset"]) == (101, 104, 110)
    assert report["clip"]["apex_method"] == "annotated"


def run_error(capsys, *args) -> str:
    assert main(["answer", "--question", QUESTION, "--max-new-tokens", "4", *map(str, args)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = [line for line in captured.err.splitlines() if line.startswith("mevqa answer: error:")]
    assert len(lines) == 1, captured.err
    return lines[0]


def test_answer_bad_input(capsys, tmp_path, tiny_model_dir, clip_dir):
    model = ["--model", tiny_model_dir]
    assert "not found" in run_error(capsys, "--clip", tmp_path / "nope", *model)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no frames here")
    assert "no image frames" in run_error(capsys, "--clip", empty, *model)

    broken = write_frame_folder(tmp_path / "broken", n_frames=6, first=1)
    (broken / "img3.jpg").write_bytes(b"not a jpeg")
    assert f"{broken / 'img3.jpg'}: unreadable image" in run_error(capsys, "--clip", broken, *model)

    bad_video = tmp_path / "bad.mp4"
    bad_video.write_bytes(b"\x00" * 1000)
    assert f"{bad_video}: unreadable video" in run_error(capsys, "--clip", bad_video, *model)

    message = run_error(capsys, "--clip", clip_dir, "--inputs", "video", *model)
    assert "--fps" in message and str(clip_dir) in message
    assert "apex 120 outside the clip 100..111" in run_error(capsys, "--clip", clip_dir, "--apex", 120, *model)
    assert "onset 100 is after offset 99" in run_error(capsys, "--clip", clip_dir, "--offset", 99, *model)
    assert f"onset frame 90 missing in {clip_dir}" in run_error(capsys, "--clip", clip_dir, "--onset", 90, *model)
    assert "model folder does not exist" in run_error(capsys, "--clip", clip_dir, "--model", tmp_path / "no-model")
    assert "adapter folder does not exist" in run_error(capsys, "--clip", clip_dir, *model, "--adapter",
                                                        tmp_path / "no-adapter")


def test_answer_adapter_of_another_model(capsys, tmp_path, tiny_model_dir, clip_dir):
    """A LoRA adapter trained on a different architecture (GPT-2 style ``c_attn``) is refused with a clear error."""
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    other = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=100, n_positions=64))
    get_peft_model(other, LoraConfig(r=4, target_modules=["c_attn"])).save_pretrained(tmp_path / "gpt2-adapter")
    message = run_error(capsys, "--clip", clip_dir, "--model", tiny_model_dir, "--adapter", tmp_path / "gpt2-adapter")
    assert "c_attn" in message and "different model" in message


def test_adapter_training_config_sets_the_defaults(capsys, tmp_path, tiny_model_dir, clip_dir, adapter_dir):
    """An adapter saved by mevqa's trainer carries train_config.yaml: its input mode, system prompt and pixel budget
    are used unless a flag says otherwise."""
    import shutil

    adapter = shutil.copytree(adapter_dir / "adapter", tmp_path / "adapter")
    (adapter / "train_config.yaml").write_text("inputs: flow\nsystem_prompt: null\nmax_pixels: 3136\n"
                                               "learning_rate: 0.001\n")
    report = answer(capsys, "--clip", clip_dir, "--model", tiny_model_dir, "--adapter", adapter)
    assert report["inputs"] == "flow" and report["generation"]["system_prompt"] is None
    assert set(report["media"]) == {"flow"} and report["pixels"] == {"max_pixels": 3136}
    explicit = answer(capsys, "--clip", clip_dir, "--model", tiny_model_dir, "--adapter", adapter, "--inputs", "oao",
                      "--system-prompt", "default")
    assert explicit["inputs"] == "oao" and explicit["generation"]["system_prompt"] == "default"
    assert set(explicit["media"]) == {"oao"}


@pytest.mark.parametrize("pattern", ["{:03d}.png", "reg_image{:06d}.bmp", "006_{:05d}.jpg"])
def test_answer_any_numeric_frame_naming(capsys, tmp_path, tiny_model_dir, pattern):
    clip = write_frame_folder(tmp_path / "clip", n_frames=6, first=8, pattern=pattern)
    (clip / "Desktop - Shortcut.lnk").write_text("not a frame")
    report = answer(capsys, "--clip", clip, "--model", tiny_model_dir, "--inputs", "frames+flow")
    assert (report["clip"]["onset"], report["clip"]["offset"], report["clip"]["n_frames"]) == (8, 13, 6)


TIE_LIKE = {"frames": 4, "size": 64, "flow": "farneback", "head_motion": "median", "blend": 0.5, "face_crop": False}


def trained_adapter(adapter_dir, folder, **config):
    """A copy of the adapter with the train_config.yaml mevqa's trainer writes (only the keys inference reads, and
    one it does not)."""
    import shutil

    import yaml

    adapter = shutil.copytree(adapter_dir / "adapter", folder)
    (adapter / "train_config.yaml").write_text(yaml.safe_dump({**config, "learning_rate": 0.001}))
    return adapter


def test_a_model_is_shown_inputs_built_as_it_was_trained(capsys, tmp_path, tiny_model_dir, clip_dir, adapter_dir):
    """The acceptance case: trained on flow with head motion removed by the median and blended 0.5 over the onset
    (TV-L1 needs opencv-contrib), the model answers a raw clip with exactly those settings and no flags."""
    adapter = trained_adapter(adapter_dir, tmp_path / "adapter", inputs="frames+flow", media_settings=TIE_LIKE)
    report = answer(capsys, "--clip", clip_dir, "--model", tiny_model_dir, "--adapter", adapter, "--fps", 200)
    assert report["media_settings"] == TIE_LIKE and report["inputs"] == "frames+flow"
    assert report["media"]["flow"]["head_motion"] == "median"
    assert report["trained_config"] == str(adapter / "train_config.yaml")
    assert report["answer"] == expected_answer(tiny_model_dir, clip_dir, "frames+flow", 200.0, adapter=adapter,
                                               **TIE_LIKE)


def test_a_flag_that_differs_from_training_is_used_with_a_warning(capsys, tmp_path, tiny_model_dir, clip_dir,
                                                                  adapter_dir):
    adapter = trained_adapter(adapter_dir, tmp_path / "adapter", inputs="flow", media_settings=TIE_LIKE)
    assert main(["answer", "--question", QUESTION, "--max-new-tokens", "4", "--json", "-", "--clip", str(clip_dir),
                 "--model", str(tiny_model_dir), "--adapter", str(adapter), "--blend", "0.25", "--inputs",
                 "oao"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["media_settings"] == {**TIE_LIKE, "blend": 0.25} and report["inputs"] == "oao"
    assert "--blend 0.25 differs from the 0.5 the model was trained with" in captured.err
    assert "--inputs oao differs from the flow the model was trained with" in captured.err
    # a flag equal to training is not a difference
    assert main(["answer", "--question", QUESTION, "--max-new-tokens", "4", "--clip", str(clip_dir), "--model",
                 str(tiny_model_dir), "--adapter", str(adapter), "--blend", "0.5"]) == 0
    assert "the model was trained with" not in capsys.readouterr().err


def test_without_a_training_record_the_defaults_are_mevqas(capsys, tiny_model_dir, clip_dir):
    from mevqa.media import MediaSettings

    report = answer(capsys, "--clip", clip_dir, "--model", tiny_model_dir)
    assert report["media_settings"] == MediaSettings().record() and report["trained_config"] is None


@pytest.mark.parametrize("config, message", [
    ({"media_settings": {"flow": "raft"}}, "media_settings: unknown flow method 'raft'"),
    ({"media_settings": {"head_motion": "median", "speed": 2}}, "media_settings: unknown media setting(s) speed"),
    ({"media_settings": {"blend": 7}}, "media_settings: the flow blend weight must be between 0 and 1, got 7"),
    ({"inputs": "audio"}, "inputs 'audio' is not an input mode"),
    ({"max_frames": 0}, "max_frames must be a positive integer, got 0"),
])
def test_a_bad_training_record_is_one_line_naming_the_file(capsys, tmp_path, tiny_model_dir, clip_dir, adapter_dir,
                                                           config, message):
    adapter = trained_adapter(adapter_dir, tmp_path / "adapter", **config)
    error = run_error(capsys, "--clip", clip_dir, "--model", tiny_model_dir, "--adapter", adapter)
    assert f"error: {adapter / 'train_config.yaml'}: {message}" in error


@pytest.fixture(scope="module")
def silent_model_dir(tiny_model_dir, tmp_path_factory):
    return write_silent_model(tiny_model_dir, tmp_path_factory.mktemp("silent") / "model")


def test_an_empty_answer_is_an_error(capsys, silent_model_dir, clip_dir):
    assert f"{clip_dir}: the model gave an empty answer" in run_error(capsys, "--clip", clip_dir, "--model",
                                                                       silent_model_dir)


def test_a_model_trained_on_tvl1_flow(capsys, tmp_path, tiny_model_dir, clip_dir, adapter_dir):
    """TV-L1 needs OpenCV's contrib build: without it the model's own settings cannot be honoured, which is an error
    naming its train_config.yaml; --flow farneback then overrides, with a warning."""
    import cv2

    trained = {**TIE_LIKE, "flow": "tvl1"}
    adapter = trained_adapter(adapter_dir, tmp_path / "adapter", inputs="flow", media_settings=trained)
    if hasattr(cv2, "optflow"):
        assert answer(capsys, "--clip", clip_dir, "--model", tiny_model_dir, "--adapter", adapter)[
            "media_settings"] == trained
    else:
        error = run_error(capsys, "--clip", clip_dir, "--model", tiny_model_dir, "--adapter", adapter)
        assert f"{adapter / 'train_config.yaml'}: media_settings: TV-L1 flow needs OpenCV's contrib build" in error
    assert main(["answer", "--question", QUESTION, "--max-new-tokens", "4", "--json", "-", "--clip", str(clip_dir),
                 "--model", str(tiny_model_dir), "--adapter", str(adapter), "--flow", "farneback"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["media_settings"] == {**trained, "flow": "farneback"}
    assert "--flow farneback differs from the tvl1 the model was trained with" in captured.err
