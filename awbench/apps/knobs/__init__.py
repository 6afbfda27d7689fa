"""The knob grid and its views: the precomputed grid (``store/``, package data), its lookups
and comparisons, the one knob explorer (``explorer.py`` + ``explorer.js``) that notebook 08,
present mode and the report all draw, and notebook 08's KnobPanel.

Kept empty of imports: a view imports the module it needs, and the grid alone stays light."""
