"""Many runs at once: sweeps (studies, planning, resume), compare (rank tests, effect sizes),
figures, and quality against the demo data's ground truth."""
