"""The model: loading a checkpoint and its adapter, the families it may be, batching, tiny models.

- ``loading``: load a base model or an adapter with its processor and the settings it was trained with
- ``families``: what differs between the supported Qwen VLM families (keyed by ``config.model_type``)
- ``collate``: rows -> a padded batch of model inputs, with the labels masked to the answer
- ``tiny``: the ``mevqa tiny-model`` command (a tiny random model with the real classes and processor)
- ``merge``: the ``mevqa merge`` command (fold an adapter into a standalone checkpoint)
"""
