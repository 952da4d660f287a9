"""Quality of verdicts: control items, Dawid–Skene aggregation with a posterior per item and a
confusion matrix per reviewer, and reviewer reliability (see docs/quality.md)."""
