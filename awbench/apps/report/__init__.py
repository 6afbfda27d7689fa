"""``awbench reproduce`` and ``awbench figures``: run the notebooks, read them back and build
the offline report (``build``), and export its figures for slides (``export``).

Kept empty of imports: each part is imported where it is used."""
