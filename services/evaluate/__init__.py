"""`soundscape evaluate`: how well a backend labels a labelled folder, and how two agree."""
