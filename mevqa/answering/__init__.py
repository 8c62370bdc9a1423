"""Answering questions about clips: generation, label scoring, strategies, rules, predictions.

- ``generation``: generate answers for a batch
- ``label_scoring``: score each allowed label by its likelihood instead of generating
- ``inference``: the inference settings and the one row -> answer path
- ``strategies``: how an answer is formed from the model (generate, score labels, ...)
- ``consistency``: make a clip's answers agree with each other
- ``au_rules``: AU -> emotion rule tables (the YAML files in ``au_rule_tables/``)
- ``predict``: the ``mevqa predict`` command (question files in batches -> predictions and submission files)
- ``submission``: the ``mevqa submit`` command (the official submission files and zip)
- ``answer``: the ``mevqa answer`` command (one question about one clip)
"""
