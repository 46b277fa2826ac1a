"""Dataset adapters, canonical tables, the validation suites and preprocessing."""
