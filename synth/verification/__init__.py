"""`synth verify`: recorded programs re-checked far beyond their training data."""
