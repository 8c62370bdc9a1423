"""mevqa: micro-expression visual question answering with Qwen VLMs (Qwen2-VL, Qwen2.5-VL, Qwen3-VL).

Layout of the installed package (the repository keeps some folders at its top level):
``mevqa.data_builders`` <- ``data_builders/``, ``mevqa.eval`` <- ``eval/``, ``mevqa.recipes`` <- ``recipes/``.
"""

__version__ = "0.1.0"
