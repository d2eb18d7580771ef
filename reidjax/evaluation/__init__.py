"""Evaluation: `eval.py`'s work (`eval_lib`), features of a dataset's tracklets (`features`,
`evaluator`), the retrieval metrics (`metrics`), same-person thresholds (`thresholds`), the
report and its pictures (`report`, `visualize`, `tsne`)."""
