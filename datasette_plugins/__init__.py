"""Datasette plugins that `flowgate start` loads for its log browser (--plugins-dir)."""
