"""Clip frames and the model inputs made from them: sampled video frames, onset/apex/offset images, optical flow.

Used by the data builders and by ``mevqa answer``/``mevqa predict`` on raw clip folders and video files, so training
and inference see inputs built the same way. One module per job:

- :mod:`mevqa.media.clips`: reading a clip (numbered frame folders, video files), strictly;
- :mod:`mevqa.media.span`: a clip's onset, apex and offset (:func:`resolve_span`, the one set of rules);
- :mod:`mevqa.media.flow`: onset -> apex optical flow, head-motion removal, the flow picture;
- :mod:`mevqa.media.face`: the face box;
- :mod:`mevqa.media.build`: the settings (:class:`MediaSettings`, defaults defined once) and :func:`build_media`
  with its per-clip cache.
"""

from mevqa.media.build import (CACHE, JPEG_QUALITY, MODES, MediaSettings, add_media_arguments, build_media,
                               given_media_options, output_size, parse_inputs, sample_fps, sample_uniform)
from mevqa.media.clips import (IMAGE_SUFFIXES, VIDEO_SUFFIXES, Clip, damage, decode_image, frame_number,
                               image_size, list_frames, read_clip, read_frame)
from mevqa.media.face import centre_box, detect_face_box, face_detector_name
from mevqa.media.flow import FLOW_METHODS, HEAD_MOTION, compute_flow, nose_box, remove_head_motion, render_flow
from mevqa.media.span import APEX_METHODS, Span, estimate_apex, resolve_span

__all__ = ["APEX_METHODS", "CACHE", "Clip", "FLOW_METHODS", "HEAD_MOTION", "IMAGE_SUFFIXES", "JPEG_QUALITY",
           "MODES", "MediaSettings", "Span", "VIDEO_SUFFIXES", "add_media_arguments", "build_media", "centre_box",
           "compute_flow", "damage", "decode_image", "detect_face_box", "estimate_apex", "face_detector_name",
           "frame_number", "given_media_options", "image_size", "list_frames", "nose_box", "output_size",
           "parse_inputs",
           "read_clip", "read_frame", "remove_head_motion", "render_flow", "resolve_span", "sample_fps",
           "sample_uniform"]
