"""The content-trait model organism (`task=toy_promo`), see README.md: the builder is `build.build_promo`."""
