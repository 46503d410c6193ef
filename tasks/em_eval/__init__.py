"""The emergent-misalignment tasks' shared code: the builder (`build.build_em_task`) and the EM row functions
(`metrics`), used by task=insecure_code, secure_code, educational_code and bad_medical_advice."""
