"""mevqa: micro-expression visual question answering with Qwen VLMs (Qwen2-VL, Qwen2.5-VL, Qwen3-VL).

Layout of the installed package (the repository keeps some folders at its top level):
``mevqa.data_builders`` <- ``data_builders/``, ``mevqa.eval`` <- ``eval/``, ``mevqa.recipes`` <- ``recipes/``.
One folder per stage: ``media`` (a clip's inputs), ``models`` (the model), ``answering`` (answers and predictions),
``longvideo`` (ME-STR and ME-LVQA), ``train`` (training, export, inspect), ``experiments`` (splits, cross-validation);
the modules at the top are what every stage shares. docs/design.md ("Package map") lists them.
"""

__version__ = "0.1.0"
