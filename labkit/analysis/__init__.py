"""The analysis of one recording: reading it (recording), the ICA steps (ica), component labels
(labels), the MNE report section (report), the preprocessing cache (cache) and the demo data
with known ground truth (datasets). It writes into a result folder (:mod:`labkit.results`) and
knows nothing of where it runs."""
