"""The second embedded model organism (`task=toy_pirate`), see README.md: the builder is `build.build_pirate`."""
