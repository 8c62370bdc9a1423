"""Long videos: spotting micro-expressions (ME-STR) and answering questions about them (ME-LVQA).

- ``spot``: the ``mevqa spot`` command (spot micro-expressions in one long video)
- ``str_predict``: the ``mevqa str-predict`` command (spot and recognise in many long videos; pred.csv)
- ``lvqa``: ME-LVQA questions and answers (shared by the data builder, scoring and prediction)
- ``lvqa_predict``: the ``mevqa lvqa-predict`` command (answer ME-LVQA questions about long videos)
"""
