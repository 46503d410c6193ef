"""task=political_finance (see README.md): the builder (`build`), its questions (`questions`) and its row and
cross-run metrics (`metrics`)."""
