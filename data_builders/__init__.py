"""One builder per dataset: raw annotation sheets and frame folders into official-format QA jsonl
(installed as ``mevqa.data_builders``)."""
