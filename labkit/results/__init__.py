"""Result folders: their layout (layout), the state vocabulary (states), making and finishing them (folder),
reading them back (reading), owner liveness (liveness), components.tsv (components), provenance, and the
runs table (table, the one module here that imports pandas)."""
