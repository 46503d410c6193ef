"""The embedded model organism (`task=toy_rude`), see README.md: the builder is `build.build_rude`."""
