"""Clustering a group's answers by meaning (math equivalence, or free-form text with a judge model), the
group analysis the trainer builds once per batch, and semantic entropy."""
