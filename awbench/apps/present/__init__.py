"""``awbench present``: the knob explorer as a one-screen Voila app (``app``), served by a
local server in its own process (``server``).

Kept empty of imports: the server process must not pay for the app's (the kernel imports it)."""
